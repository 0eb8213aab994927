package clusterclient

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// Each key goes to the first member of its responsible set, with the epoch
// the client routes by and the acknowledgement its view asks for; no other
// node hears of it. (Quorum writes by fan-out: TestFanOut.)
func TestRoutesToFirstReplica(t *testing.T) {
	f := newFakeCluster(t, 3)
	st := f.state(5, 2, 1, 2, 3)
	f.publish(st)
	c := f.dial(Options{NoFanOut: true})
	ctx := testCtx(t)
	require.Equal(t, uint64(5), c.Epoch())
	require.Len(t, c.State().Members, 3)

	for i := range 20 {
		key := fmt.Sprintf("key-%d", i)
		reps := c.Replicas(key)
		require.Len(t, reps, 2)
		require.NoError(t, c.Set(ctx, key, []byte("v")))
		v, err := c.GetBytes(ctx, key)
		require.NoError(t, err)
		require.Equal(t, "v", string(v))
		require.NoError(t, c.WithAck(client.AckLocal).Set(ctx, key, []byte("w")))
		require.Equal(t, map[uint64][]seenReq{reps[0].ID: {
			{op: wire.OpSet, key: key, epoch: 5, ack: wire.AckQuorum}, // the cluster default, asked explicitly
			{op: wire.OpGet, key: key, epoch: 5},
			{op: wire.OpSet, key: key, epoch: 5, ack: wire.AckLocal},
		}}, f.takeAll(), "key %s", key)
	}
	require.Zero(t, c.Stats().Retries)
}

// A client routing by an old state (here: before node 4 joined) sends a key
// to its old owner, gets wrong owner with the newer epoch, fetches the
// state and sends the key to its new owner: the caller sees a success.
func TestWrongOwnerRefreshesAndRetries(t *testing.T) {
	f := newFakeCluster(t, 4)
	old := f.state(5, 1, 1, 2, 3)
	f.publish(old)
	c := f.dial(Options{NoFanOut: true})
	cur := f.state(6, 1, 1, 2, 3, 4)
	f.publish(cur)

	oldTab, _ := newTable(old, route.DefaultVnodes)
	newTab, _ := newTable(cur, route.DefaultVnodes)
	key := keyWhere(t, func(k string) bool { return newTab.replicas([]byte(k), nil)[0].ID == 4 })
	was := oldTab.replicas([]byte(key), nil)[0].ID

	require.NoError(t, c.Set(testCtx(t), key, []byte("v")))
	require.Equal(t, map[uint64][]seenReq{
		was: {{op: wire.OpSet, key: key, epoch: 5, ack: wire.AckQuorum}},
		4:   {{op: wire.OpSet, key: key, epoch: 6, ack: wire.AckQuorum}},
	}, f.takeAll())
	require.Equal(t, uint64(6), c.Epoch())
	require.Equal(t, Stats{Refreshes: 1, WrongOwner: 1, Retries: 1}, c.Stats())
	require.EqualValues(t, 2, f.router.rings.Load(), "one fetch at Dial, one after the wrong owner")

	v, err := f.nodes[4].store.GetString([]byte(key), nil)
	require.NoError(t, err)
	require.Equal(t, "v", string(v), "the value is at its new owner")
}

// Many calls that meet wrong-owner answers at once share one fetch of the
// routing state.
func TestConcurrentWrongOwnersShareOneFetch(t *testing.T) {
	f := newFakeCluster(t, 4)
	f.publish(f.state(5, 1, 1, 2, 3))
	c := f.dial(Options{})
	cur := f.state(6, 1, 1, 2, 3, 4)
	f.router.delay = 100 * time.Millisecond // every caller gets its answer while the fetch is in flight
	f.publish(cur)
	newTab, _ := newTable(cur, route.DefaultVnodes)

	var keys []string
	for i := 0; len(keys) < 32; i++ {
		if k := fmt.Sprintf("k%d", i); newTab.replicas([]byte(k), nil)[0].ID == 4 {
			keys = append(keys, k)
		}
	}
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, len(keys))
	for i, k := range keys {
		wg.Go(func() { errs[i] = c.Set(ctx, k, []byte("v")) })
	}
	wg.Wait()
	for i := range keys {
		require.NoError(t, errs[i], keys[i])
	}
	require.EqualValues(t, 2, f.router.rings.Load(), "one fetch at Dial, one for all the wrong owners")
	require.Len(t, f.nodes[4].take(), len(keys))
}

// A node that answers wrong owner with an epoch no newer than the client's
// is behind: the client tries the key's next replica without fetching the
// state.
func TestStaleNodeTriesNextReplica(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 2, 1, 2, 3))
	c := f.dial(Options{NoFanOut: true})
	key := "user:42"
	reps := c.Replicas(key)
	f.nodes[reps[0].ID].setFault(func(*wire.Request) error {
		return &wire.Error{Code: wire.CodeWrongOwner, Msg: "behind", Epoch: 4}
	})
	require.NoError(t, c.Set(testCtx(t), key, []byte("v")))
	n, err := c.CounterAdd(testCtx(t), "counter-"+key, 1) // also for a non-idempotent write: nothing was applied
	if err == nil {
		require.EqualValues(t, 1, n)
	}
	require.NoError(t, err)
	got := f.takeAll()
	require.Equal(t, []seenReq{{op: wire.OpSet, key: key, epoch: 5, ack: wire.AckQuorum}}, got[reps[1].ID])
	require.EqualValues(t, 1, f.router.rings.Load(), "no fetch")
	require.GreaterOrEqual(t, c.Stats().WrongOwner, uint64(1))
}

// countingDialer counts dials per address and the connections open.
type countingDialer struct {
	mu    sync.Mutex
	dials map[string]int
	open  map[string]*atomic.Int64
}

func newCountingDialer() *countingDialer {
	return &countingDialer{dials: map[string]int{}, open: map[string]*atomic.Int64{}}
}

func (d *countingDialer) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.dials[addr]++
	open := d.open[addr]
	if open == nil {
		open = &atomic.Int64{}
		d.open[addr] = open
	}
	d.mu.Unlock()
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	open.Add(1)
	return &countedConn{Conn: nc, open: open}, nil
}

func (d *countingDialer) count(addr string) (dials int, open int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if o := d.open[addr]; o != nil {
		open = o.Load()
	}
	return d.dials[addr], open
}

type countedConn struct {
	net.Conn
	once sync.Once
	open *atomic.Int64
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// fakeClock is a settable clock for the suspect marks.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// A node that cannot be reached: the call is served by the key's next
// replica, and for SuspectFor the node is tried last (not dialled again
// while the others answer); then it is first again.
func TestUnreachableNodeFailsOver(t *testing.T) {
	f := newFakeCluster(t, 3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	st := f.state(5, 2, 1, 2, 3)
	st.Members[0].Addr = dead // node 1 is gone
	f.publish(st)
	d := newCountingDialer()
	c := f.dial(Options{NoFanOut: true, Client: client.Options{Dial: d.Dial}})
	clock := &fakeClock{ns: atomic.Int64{}}
	clock.ns.Store(time.Now().UnixNano())
	c.now = clock.now

	key := keyWhere(t, func(k string) bool { return c.Replicas(k)[0].ID == 1 })
	second := c.Replicas(key)[1].ID
	ctx := testCtx(t)
	require.NoError(t, c.Set(ctx, key, []byte("v")))
	dials, _ := d.count(dead)
	require.Equal(t, 1, dials)
	require.Equal(t, []uint64{second, 1}, ids(c.Replicas(key)), "node 1 is suspect: tried last")

	for range 5 {
		v, err := c.GetBytes(ctx, key)
		require.NoError(t, err)
		require.Equal(t, "v", string(v))
	}
	dials, _ = d.count(dead)
	require.Equal(t, 1, dials, "not dialled again while suspect")
	require.Equal(t, uint64(1), c.Stats().Failovers)

	clock.advance(DefaultSuspectFor + time.Millisecond)
	require.Equal(t, uint64(1), c.Replicas(key)[0].ID, "suspicion expires")
	_, err = c.GetBytes(ctx, key)
	require.NoError(t, err)
	dials, _ = d.count(dead)
	require.Equal(t, 2, dials)
}

// Retrying cannot change a type mismatch, a missing key or a bad request:
// each is returned after one attempt.
func TestFinalErrorsAreNotRetried(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 2, 1, 2, 3))
	c := f.dial(Options{NoFanOut: true})
	ctx := testCtx(t)

	_, err := c.CounterAdd(ctx, "n", 3)
	require.NoError(t, err)
	f.takeAll()
	require.ErrorIs(t, c.Set(ctx, "n", []byte("v")), ErrTypeMismatch)
	_, err = c.GetBytes(ctx, "n")
	require.ErrorIs(t, err, ErrTypeMismatch, "found by the client: the value is a counter")
	_, err = c.Get(ctx, "missing")
	require.ErrorIs(t, err, ErrNotFound)
	members, err := c.SetMembers(ctx, "missing")
	require.NoError(t, err)
	require.Empty(t, members)
	n := 0
	for _, reqs := range f.takeAll() {
		n += len(reqs)
	}
	require.Equal(t, 4, n, "one request per call")
	require.Zero(t, c.Stats().Retries)
	require.Zero(t, c.Stats().Failovers)
}

// An unavailable answer (a write that reached too few replicas) moves an
// idempotent write to the next replica; a counter increment, which may have
// been applied, is not repeated: its caller gets the error.
func TestAmbiguousFailures(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 2, 1, 2, 3))
	c := f.dial(Options{})
	ctx := testCtx(t)
	key := "k"
	first := c.Replicas(key)[0].ID
	f.nodes[first].setFault(func(*wire.Request) error {
		return wire.Errorf(wire.CodeUnavailable, "write not acknowledged by enough replicas")
	})

	require.NoError(t, c.Set(ctx, key, []byte("v")))
	require.Len(t, f.takeAll(), 2, "tried at the first replica, served by the second")

	_, err := c.CounterAdd(ctx, key+"-n", 1)
	require.ErrorIs(t, err, ErrUnavailable)
	require.NotErrorIs(t, err, ErrTimeout)
	cfirst := c.Replicas(key + "-n")[0].ID
	got := f.takeAll()
	require.Len(t, got, 1, "one attempt only")
	require.Len(t, got[cfirst], 1)
}

// When no replica can take a request, the call retries until its deadline
// (the context's, or Options.Timeout without one) and then reports the
// timeout with the last failure.
func TestDeadlineBoundsRetries(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 2, 1, 2, 3))
	for _, n := range f.nodes {
		n.setFault(func(*wire.Request) error { return wire.Errorf(wire.CodeUnavailable, "overloaded") })
	}
	c := f.dial(Options{Timeout: 300 * time.Millisecond})

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Set(ctx, "k", []byte("v"))
	require.ErrorIs(t, err, ErrTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, ErrUnavailable, "the last failure")
	require.Less(t, time.Since(start), 2*time.Second)
	require.Greater(t, len(f.nodes[c.Replicas("k")[0].ID].take()), 2, "retried")

	start = time.Now()
	err = c.Set(context.Background(), "k", []byte("v"))
	require.ErrorIs(t, err, ErrTimeout)
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "Options.Timeout bounds a call without deadline")
	require.Less(t, time.Since(start), 2*time.Second)

	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	require.ErrorIs(t, c.Set(canceled, "k", []byte("v")), context.Canceled)
}

// A cluster with no active storage node yet: calls wait (within their
// deadline) for one to appear in the routing state.
func TestWaitsForActiveNodes(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(route.State{Epoch: 1})
	c := f.dial(Options{})
	ctx := testCtx(t)
	done := make(chan error, 1)
	go func() { done <- c.Set(ctx, "k", []byte("v")) }()
	require.Eventually(t, func() bool { return f.router.rings.Load() >= 2 }, 5*time.Second, time.Millisecond,
		"the call fetches the state again")
	f.publish(f.state(2, 2, 1, 2, 3))
	require.NoError(t, <-done)
	require.Equal(t, uint64(2), c.Epoch())
}

// The background refresh brings the state in without any request.
func TestBackgroundRefresh(t *testing.T) {
	f := newFakeCluster(t, 4)
	f.publish(f.state(5, 2, 1, 2, 3))
	c := f.dial(Options{RefreshEvery: 10 * time.Millisecond})
	f.publish(f.state(6, 2, 1, 2, 3, 4))
	require.Eventually(t, func() bool { return c.Epoch() == 6 }, 5*time.Second, time.Millisecond)
	require.Len(t, c.State().Members, 4)
}

// A node that leaves the ring has its connections closed; one that comes
// back is dialled again.
func TestLeavingNodeClosesItsPool(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 3, 1, 2, 3))
	d := newCountingDialer()
	c := f.dial(Options{Client: client.Options{Dial: d.Dial, Conns: 2}})
	ctx := testCtx(t)
	key := keyWhere(t, func(k string) bool { return c.Replicas(k)[0].ID == 3 })
	require.NoError(t, c.Set(ctx, key, []byte("v")))
	_, open := d.count(f.nodes[3].addr)
	require.EqualValues(t, 2, open)

	st := f.state(6, 3, 1, 2, 3)
	st.Members[2].State = route.Down
	f.publish(st)
	require.NoError(t, c.Refresh(ctx))
	require.Equal(t, uint64(6), c.Epoch())
	_, open = d.count(f.nodes[3].addr)
	require.Zero(t, open, "node 3 left the ring: its pool is closed")
	require.NoError(t, c.Set(ctx, key, []byte("w")), "served by the others")

	f.publish(f.state(7, 3, 1, 2, 3))
	require.NoError(t, c.Refresh(ctx))
	require.NoError(t, c.Set(ctx, key, []byte("x")))
	dials, open := d.count(f.nodes[3].addr)
	require.EqualValues(t, 2, open)
	require.Equal(t, 4, dials)
}

// A batch is split by node: each node gets the requests of the keys it
// serves, results come back in the order of the requests, and each request
// is retried on its own (here: keys that moved to a node that joined).
func TestBatchSplitsByNode(t *testing.T) {
	f := newFakeCluster(t, 4)
	f.publish(f.state(5, 1, 1, 2, 3))
	c := f.dial(Options{})
	ctx := testCtx(t)

	const n = 40
	b := c.Batch()
	for i := range n {
		b.Set([]byte(fmt.Sprintf("key-%d", i)), []byte(fmt.Sprintf("v%d", i)))
	}
	b.CounterAdd([]byte("counter"), 5)
	require.Equal(t, n+1, b.Len())
	res, err := b.Exec(ctx)
	require.NoError(t, err)
	require.Len(t, res, n+1)
	for i := range n {
		require.NoError(t, res[i].Err)
	}
	require.EqualValues(t, 5, res[n].Int)
	for id, reqs := range f.takeAll() {
		for _, r := range reqs {
			require.Equal(t, id, c.Replicas(r.key)[0].ID, "key %s at node %d", r.key, id)
			require.Equal(t, uint64(5), r.epoch)
		}
	}

	// Node 4 joins; the client does not know yet.
	cur := f.state(6, 1, 1, 2, 3, 4)
	f.publish(cur)
	newTab, _ := newTable(cur, route.DefaultVnodes)
	b.Reset()
	moved := 0
	for i := range n {
		k := []byte(fmt.Sprintf("key-%d", i))
		b.Get(k)
		if newTab.replicas(k, nil)[0].ID == 4 {
			moved++
		}
	}
	require.NotZero(t, moved)
	b.Get([]byte("missing"))
	if newTab.replicas([]byte("missing"), nil)[0].ID == 4 {
		moved++
	}
	res, err = b.Exec(ctx)
	require.NoError(t, err)
	require.Len(t, res, n+1)
	got := f.takeAll()
	for i := range n {
		k := fmt.Sprintf("key-%d", i)
		if newTab.replicas([]byte(k), nil)[0].ID == 4 {
			// Nobody copied the value to its new owner here (a real
			// cluster hands it off before node 4 serves).
			require.ErrorIs(t, res[i].Err, ErrNotFound, k)
			continue
		}
		require.NoError(t, res[i].Err, k)
		v, err := lattice.Decode(res[i].Value)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("v%d", i), string(v.(*lattice.LWW).Value), k)
	}
	require.ErrorIs(t, res[n].Err, ErrNotFound)
	require.Len(t, got[4], moved, "the moved keys, retried at node 4")
	for _, r := range got[4] {
		require.Equal(t, uint64(6), r.epoch)
	}
	require.Equal(t, uint64(6), c.Epoch())
	require.EqualValues(t, 2, f.router.rings.Load(), "one fetch for the whole batch")
}

// A batch whose requests cannot be served reports the deadline for those,
// and the others' outcomes.
func TestBatchDeadline(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 1, 1, 2, 3))
	c := f.dial(Options{})
	bad := keyWhere(t, func(k string) bool { return c.Replicas(k)[0].ID == 1 })
	good := keyWhere(t, func(k string) bool { return c.Replicas(k)[0].ID == 2 })
	f.nodes[1].setFault(func(*wire.Request) error { return wire.Errorf(wire.CodeUnavailable, "down") })
	b := c.Batch()
	b.Set([]byte(bad), []byte("v"))
	b.Set([]byte(good), []byte("v"))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	res, err := b.Exec(ctx)
	require.ErrorIs(t, err, ErrTimeout)
	require.Len(t, res, 2)
	require.ErrorIs(t, res[0].Err, ErrTimeout)
	require.ErrorIs(t, res[0].Err, ErrUnavailable)
	require.NoError(t, res[1].Err)
}

// Close stops the background refresh and every connection; later calls
// return ErrClosed; nothing is left running.
func TestCloseLeavesNothing(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 2, 1, 2, 3))
	// The fakes' servers are not the client's: their goroutines (some of
	// which start after Ready) stay.
	before := []goleak.Option{goleak.IgnoreCurrent(),
		goleak.IgnoreAnyFunction("github.com/trellisdb/trellis/wireserver.(*Server).Run.func1")}
	c := f.dial(Options{RefreshEvery: 5 * time.Millisecond})
	ctx := testCtx(t)
	for i := range 10 {
		require.NoError(t, c.Set(ctx, fmt.Sprintf("k%d", i), []byte("v")))
	}
	require.NoError(t, c.Close())
	require.NoError(t, c.Close(), "idempotent")
	require.ErrorIs(t, c.Set(ctx, "k0", []byte("v")), ErrClosed)
	_, err := c.WithAck(client.AckLocal).Get(ctx, "k0")
	require.ErrorIs(t, err, ErrClosed)
	_, err = c.Batch().Exec(ctx)
	require.NoError(t, err, "an empty batch sends nothing")
	b := c.Batch()
	b.Get([]byte("k0"))
	_, err = b.Exec(ctx)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, c.Refresh(ctx), ErrClosed)
	goleak.VerifyNone(t, before...)
}
