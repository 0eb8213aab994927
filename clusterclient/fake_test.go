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

	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
	"github.com/trellisdb/trellis/wireserver"
)

// The fakes below speak the native protocol on loopback (wireserver), so
// the Client under test runs unchanged, but their behaviour is scripted:
// a fake routing node hands out whatever state the test sets, and a fake
// storage node answers from a kvs.Store for the keys it is told it owns,
// wrong owner (with the epoch it is told) for the others, and any error a
// fault function picks. Each records what it received.

// seenReq is a request a fake storage node received.
type seenReq struct {
	op    wire.Op
	key   string
	epoch uint64
	ack   wire.Ack
}

type fakeNode struct {
	id    uint64
	store *kvs.Store
	addr  string

	mu    sync.Mutex
	epoch uint64
	owns  func(key []byte) bool         // nil: every key
	fault func(req *wire.Request) error // a non-nil result is answered instead
	reqs  []seenReq
}

func (n *fakeNode) Serve(_ context.Context, _ net.Addr, req *wire.Request, out []byte) []byte {
	switch req.Op {
	case wire.OpHello:
		out, start := wire.BeginResult(out, req.ID)
		out = pack.AppendMapHeader(out, 1)
		out = pack.AppendUint(pack.AppendString(out, "node"), n.id)
		return wire.EndFrame(out, start)
	case wire.OpPing:
		return wire.AppendNilResult(out, req.ID)
	}
	n.mu.Lock()
	n.reqs = append(n.reqs, seenReq{op: req.Op, key: string(req.Key), epoch: req.Opts.Epoch, ack: req.Opts.Ack})
	owns, fault, epoch := n.owns, n.fault, n.epoch
	n.mu.Unlock()
	if fault != nil {
		if err := fault(req); err != nil {
			return wire.AppendError(out, req.ID, err)
		}
	}
	if owns != nil && !owns(req.Key) {
		return wire.AppendError(out, req.ID, &wire.Error{Code: wire.CodeWrongOwner, Msg: "not mine", Epoch: epoch})
	}
	out, ok := n.store.Exec(req, out)
	if !ok {
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest, "op %s", req.Op))
	}
	return out
}

// take returns the requests received since the last take.
func (n *fakeNode) take() []seenReq {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.reqs
	n.reqs = nil
	return out
}

func (n *fakeNode) setFault(f func(req *wire.Request) error) {
	n.mu.Lock()
	n.fault = f
	n.mu.Unlock()
}

type fakeRouter struct {
	mu    sync.Mutex
	st    route.State
	delay time.Duration // before each RING answer
	rings atomic.Int64  // RING requests answered
}

func (r *fakeRouter) Serve(ctx context.Context, _ net.Addr, req *wire.Request, out []byte) []byte {
	switch req.Op {
	case wire.OpHello:
		out, start := wire.BeginResult(out, req.ID)
		out = pack.AppendMapHeader(out, 0)
		return wire.EndFrame(out, start)
	case wire.OpRing:
		r.mu.Lock()
		st, delay := r.st, r.delay
		r.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-ctx.Done():
			}
		}
		r.rings.Add(1)
		b, err := st.AppendBinary(nil)
		if err != nil {
			return wire.AppendError(out, req.ID, err)
		}
		return wire.AppendBytesResult(out, req.ID, b)
	}
	return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest, "op %s", req.Op))
}

// fakeCluster is a fake routing node and fake storage nodes with ids 1..n.
type fakeCluster struct {
	t      *testing.T
	router *fakeRouter
	raddr  string
	nodes  map[uint64]*fakeNode
}

func newFakeCluster(t *testing.T, n int) *fakeCluster {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	serve := func(h wireserver.Handler) string {
		srv, err := wireserver.New(wireserver.Config{Addr: "127.0.0.1:0"}, h)
		require.NoError(t, err)
		wg.Go(func() { _ = srv.Run(ctx) })
		<-srv.Ready()
		return srv.Addr()
	}
	f := &fakeCluster{t: t, router: &fakeRouter{}, nodes: map[uint64]*fakeNode{}}
	f.raddr = serve(f.router)
	for i := range n {
		id := uint64(i + 1)
		store, err := kvs.NewStore(kvs.StoreConfig{NodeID: id})
		require.NoError(t, err)
		fn := &fakeNode{id: id, store: store}
		fn.addr = serve(fn)
		f.nodes[id] = fn
	}
	return f
}

// state returns a state of the given epoch and factor with the given nodes
// active (the others absent).
func (f *fakeCluster) state(epoch uint64, rf int, active ...uint64) route.State {
	st := route.State{Epoch: epoch, DefaultRF: rf}
	for _, id := range active {
		st.Members = append(st.Members, route.Member{ID: id, Addr: f.nodes[id].addr, State: route.Active})
	}
	return st
}

// publish makes st the routing node's state and makes every storage node
// own the keys st gives it, answering wrong owner with st's epoch.
func (f *fakeCluster) publish(st route.State) {
	f.router.mu.Lock()
	f.router.st = st
	f.router.mu.Unlock()
	tab, err := newTable(st, route.DefaultVnodes)
	require.NoError(f.t, err)
	for _, n := range f.nodes {
		id := n.id
		n.mu.Lock()
		n.epoch = st.Epoch
		n.owns = func(key []byte) bool {
			for _, m := range tab.replicas(key, nil) {
				if m.ID == id {
					return true
				}
			}
			return false
		}
		n.mu.Unlock()
	}
}

func (f *fakeCluster) takeAll() map[uint64][]seenReq {
	out := map[uint64][]seenReq{}
	for id, n := range f.nodes {
		if r := n.take(); len(r) > 0 {
			out[id] = r
		}
	}
	return out
}

// dial returns a Client of f with test timings and no background refresh
// (unless opts says otherwise), closed when the test ends.
func (f *fakeCluster) dial(opts Options) *Client {
	f.t.Helper()
	opts.Route = []string{f.raddr}
	if opts.RefreshEvery == 0 {
		opts.RefreshEvery = -1
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 20 * time.Millisecond
	}
	c, err := Dial(testCtx(f.t), opts)
	require.NoError(f.t, err)
	f.t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// keyWhere returns the first key "k0", "k1", ... for which ok holds.
func keyWhere(t *testing.T, ok func(key string) bool) string {
	t.Helper()
	for i := range 100000 {
		if k := fmt.Sprintf("k%d", i); ok(k) {
			return k
		}
	}
	t.Fatal("no such key")
	return ""
}

func ids(ms []route.Member) []uint64 {
	var out []uint64
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}
