package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/internal/leakcheck"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// startNode runs a storage node on loopback and returns its native address
// and a function that stops it.
func startNode(t *testing.T) (string, func()) {
	t.Helper()
	return startNodeWith(t, kvs.ServerConfig{})
}

func dial(t *testing.T, addr string, opts client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, addr, opts)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestKVOperations(t *testing.T) {
	addr, _ := startNode(t)
	c := dial(t, addr, client.Options{})
	ctx := ctx(t)
	require.NotZero(t, c.Info().NodeID)
	require.NoError(t, c.Ping(ctx))

	_, err := c.GetBytes(ctx, "k")
	require.ErrorIs(t, err, client.ErrNotFound)
	require.NoError(t, c.Set(ctx, "k", []byte("v1")))
	v, err := c.GetBytes(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v1", string(v))

	// Any lattice through Put and Get.
	max := &lattice.Max{Value: 5}
	require.NoError(t, c.Put(ctx, "m", max))
	require.NoError(t, c.Put(ctx, "m", &lattice.Max{Value: 3}))
	got, err := c.Get(ctx, "m")
	require.NoError(t, err)
	require.True(t, got.Equal(max), "max(5, 3) = 5")

	// Typed errors, and the value is untouched.
	err = c.Put(ctx, "k", lattice.NewGSet([]byte("x")))
	require.ErrorIs(t, err, client.ErrTypeMismatch)
	_, err = c.SetAdd(ctx, "k", []byte("x"))
	require.ErrorIs(t, err, client.ErrTypeMismatch)
	v, err = c.GetBytes(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v1", string(v))
	_, err = c.GetBytes(ctx, "m")
	require.ErrorIs(t, err, client.ErrTypeMismatch)

	n, err := c.SetAdd(ctx, "s", []byte("a"), []byte("b"))
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = c.SetRemove(ctx, "s", []byte("a"))
	require.NoError(t, err)
	require.Equal(t, 1, n)
	ms, err := c.SetMembers(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("b")}, ms)
	ms, err = c.SetMembers(ctx, "nope")
	require.NoError(t, err)
	require.Empty(t, ms)

	cv, err := c.CounterAdd(ctx, "c", 7)
	require.NoError(t, err)
	require.EqualValues(t, 7, cv)
	cv, err = c.CounterAdd(ctx, "c", -10)
	require.NoError(t, err)
	require.EqualValues(t, -3, cv)
	cv, err = c.CounterValue(ctx, "c")
	require.NoError(t, err)
	require.EqualValues(t, -3, cv)

	existed, err := c.Delete(ctx, "k")
	require.NoError(t, err)
	require.True(t, existed)
	_, err = c.GetBytes(ctx, "k")
	require.ErrorIs(t, err, client.ErrNotFound)

	// Batch calls.
	errs, err := c.PutMany(ctx, []string{"x", "y", "s"}, []lattice.Lattice{
		lattice.NewLWW(lattice.MakeTimestamp(1, 0), 1, []byte("X")),
		&lattice.BoolOr{Value: true},
		&lattice.Max{Value: 1},
	})
	require.NoError(t, err)
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.ErrorIs(t, errs[2], client.ErrTypeMismatch)
	res, err := c.GetMany(ctx, "x", "nope", "y")
	require.NoError(t, err)
	require.Equal(t, []byte("X"), res[0].Value.(*lattice.LWW).Value)
	require.ErrorIs(t, res[1].Err, client.ErrNotFound)
	require.Equal(t, true, res[2].Value.(*lattice.BoolOr).Value)
	deleted, err := c.DeleteMany(ctx, "x", "y", "nope")
	require.NoError(t, err)
	require.Equal(t, 2, deleted)

	st, err := c.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, c.Info().NodeID, st.NodeID)
	require.EqualValues(t, 3, st.Keys) // m, s, c
	require.Len(t, st.Shards, kvs.DefaultShards)
}

func TestTooLarge(t *testing.T) {
	addr, _ := startNode(t)
	c := dial(t, addr, client.Options{})
	err := c.Set(ctx(t), "big", make([]byte, kvs.DefaultMaxValue+1))
	require.ErrorIs(t, err, client.ErrTooLarge)
	require.NoError(t, c.Ping(ctx(t)), "the connection survives")
}

// Many goroutines share a client; their requests pipeline on its
// connections and every caller gets its own answer.
func TestConcurrentPipelining(t *testing.T) {
	addr, _ := startNode(t)
	c := dial(t, addr, client.Options{Conns: 2})
	ctx := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				key := fmt.Sprintf("g%d-%d", g, i)
				val := []byte(fmt.Sprintf("value-%d-%d", g, i))
				if err := c.Set(ctx, key, val); err != nil {
					errs <- err
					return
				}
				got, err := c.GetBytes(ctx, key)
				if err != nil || !bytes.Equal(got, val) {
					errs <- fmt.Errorf("%s: got %q, %v", key, got, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestBatch(t *testing.T) {
	addr, _ := startNode(t)
	c := dial(t, addr, client.Options{})
	b := c.Batch()
	for i := range 100 {
		b.Set([]byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("v%d", i)))
	}
	b.CounterAdd([]byte("ctr"), 3)
	b.Get([]byte("k7"))
	b.Get([]byte("nope"))
	res, err := b.Exec(ctx(t))
	require.NoError(t, err)
	require.Len(t, res, 103)
	for _, r := range res[:100] {
		require.NoError(t, r.Err)
	}
	require.EqualValues(t, 3, res[100].Int)
	_, _, v, err := lattice.ParseLWW(res[101].Value)
	require.NoError(t, err)
	require.Equal(t, "v7", string(v))
	require.ErrorIs(t, res[102].Err, client.ErrNotFound)

	b.Reset()
	b.Delete([]byte("k7"))
	res, err = b.Exec(ctx(t))
	require.NoError(t, err)
	require.EqualValues(t, 1, res[0].Int)
}

// A call whose context ends returns at once; the connection stays usable.
func TestContextDeadline(t *testing.T) {
	addr, _ := startNode(t)
	c := dial(t, addr, client.Options{Conns: 1})
	short, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-short.Done()
	err := c.Set(short, "k", []byte("v"))
	require.ErrorIs(t, err, client.ErrTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	require.ErrorIs(t, c.Ping(canceled), context.Canceled)
	require.NoError(t, c.Ping(ctx(t)))
}

// A server that stops answering: the caller's deadline still bounds the call.
func TestUnresponsiveServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := l.Accept()
		if err == nil {
			accepted <- conn
		}
	}()
	dctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = client.Dial(dctx, l.Addr().String(), client.Options{Conns: 1})
	require.ErrorIs(t, err, client.ErrTimeout)
	require.Less(t, time.Since(start), 5*time.Second)
	(<-accepted).Close()
}

// When the node goes away, calls fail with ErrConnLost (not a hang), and
// the client reconnects when it comes back.
func TestConnectionLossAndRecovery(t *testing.T) {
	store, err := kvs.NewStore(kvs.StoreConfig{})
	require.NoError(t, err)
	run := func(addr string) (string, func()) {
		srv, err := kvs.NewServer(store, kvs.ServerConfig{Addr: addr, RESPAddr: kvs.AddrOff})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- srv.Run(ctx) }()
		<-srv.Ready()
		return srv.Addr(), func() { cancel(); require.NoError(t, <-done) }
	}
	addr, stop := run("127.0.0.1:0")
	c := dial(t, addr, client.Options{Conns: 1})
	require.NoError(t, c.Set(ctx(t), "k", []byte("v")))
	stop()
	err = c.Ping(ctx(t))
	// Either the call was sent and the connection broke under it, or the
	// client already knew and could not reconnect.
	require.True(t, errors.Is(err, client.ErrConnLost) || errors.Is(err, client.ErrUnavailable), "got %v", err)

	_, stop = run(addr) // same port: the store kept its data
	defer stop()
	v, err := c.GetBytes(ctx(t), "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(v))
}

func TestCloseFailsCallsAndIsIdempotent(t *testing.T) {
	addr, _ := startNode(t)
	c, err := client.Dial(ctx(t), addr, client.Options{})
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.Close())
	require.ErrorIs(t, c.Ping(ctx(t)), client.ErrClosed)
}

// Do sends any request and hands back the response, errors included.
func TestDo(t *testing.T) {
	addr, _ := startNode(t)
	c, err := client.Dial(ctx(t), addr, client.Options{Conns: 1})
	require.NoError(t, err)
	ctx := ctx(t)

	ping := &wire.Request{ID: 42, Op: wire.OpPing, Value: []byte("echo me")}
	r, err := c.Do(ctx, ping)
	require.NoError(t, err)
	require.Equal(t, wire.CodeOK, r.Code)
	require.EqualValues(t, 42, r.ID, "the response carries the caller's id")
	require.EqualValues(t, 42, ping.ID, "the request is not modified")
	v, err := r.Bytes()
	require.NoError(t, err)
	require.Equal(t, "echo me", string(v))

	// The result is the caller's: later calls on the connection leave it be.
	for i := range 3 {
		_, err := c.Do(ctx, &wire.Request{Op: wire.OpPing, Value: fmt.Appendf(nil, "other %d", i)})
		require.NoError(t, err)
	}
	v, err = r.Bytes()
	require.NoError(t, err)
	require.Equal(t, "echo me", string(v))

	// Server errors are responses, not call errors.
	r, err = c.Do(ctx, &wire.Request{Op: wire.OpGet, Key: []byte("absent")})
	require.NoError(t, err)
	require.Equal(t, wire.CodeNotFound, r.Code)
	require.ErrorIs(t, r.Err(), client.ErrNotFound)
	r, err = c.Do(ctx, &wire.Request{Op: wire.OpHello, Int: 99, Value: []byte("x")})
	require.NoError(t, err)
	require.Equal(t, wire.CodeBadRequest, r.Code)
	require.NotEmpty(t, r.Msg)

	require.NoError(t, c.Close())
	_, err = c.Do(ctx, ping)
	require.ErrorIs(t, err, client.ErrClosed)
}

// DoAll sends one request to several nodes and reports each one's outcome.
func TestDoAll(t *testing.T) {
	addrA, _ := startNode(t)
	addrB, _ := startNode(t)
	a := dial(t, addrA, client.Options{Conns: 1})
	b := dial(t, addrB, client.Options{Conns: 2})
	ctx := ctx(t)

	w := &lattice.LWW{TS: lattice.MakeTimestamp(1700000000000, 0), Writer: 7, Value: []byte("both")}
	enc, err := w.AppendBinary(nil)
	require.NoError(t, err)
	put := &wire.Request{ID: 9, Op: wire.OpPut, Key: []byte("k"), Value: enc}
	for range 3 { // repeated: the ids of both connections move on
		require.Equal(t, []error{nil, nil}, client.DoAll(ctx, put, a, b))
	}
	require.EqualValues(t, 9, put.ID, "the request is not modified")
	for _, c := range []*client.Client{a, b} {
		v, err := c.GetBytes(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "both", string(v))
	}

	// Each node's own outcome: a server error at one, a closed client at
	// another, success at the third.
	_, err = b.SetAdd(ctx, "set", []byte("m"))
	require.NoError(t, err)
	putSet := &wire.Request{Op: wire.OpPut, Key: []byte("set"), Value: enc}
	closed := dial(t, addrA, client.Options{Conns: 1})
	require.NoError(t, closed.Close())
	errs := client.DoAll(ctx, putSet, a, b, closed)
	require.NoError(t, errs[0])
	require.ErrorIs(t, errs[1], client.ErrTypeMismatch)
	require.ErrorIs(t, errs[2], client.ErrClosed)

	// A context that has ended sends nothing.
	done, cancel := context.WithCancel(ctx)
	cancel()
	errs = client.DoAll(done, put, a, b)
	require.ErrorIs(t, errs[0], context.Canceled)
	require.ErrorIs(t, errs[1], context.Canceled)
}

// A DoAll whose context ends before every node answered returns the
// context's error for each; the late answer is dropped and the connections
// stay usable.
func TestDoAllAbandoned(t *testing.T) {
	addr, _ := startNode(t)
	slow := newSlowNode(t)
	live := dial(t, addr, client.Options{Conns: 1})
	mute := dial(t, slow.ln.Addr().String(), client.Options{Conns: 1})
	short, cancel := context.WithTimeout(ctx(t), 50*time.Millisecond)
	defer cancel()
	errs := client.DoAll(short, &wire.Request{Op: wire.OpPing}, live, mute)
	require.ErrorIs(t, errs[0], client.ErrTimeout)
	require.ErrorIs(t, errs[1], client.ErrTimeout)

	close(slow.release) // the late answer arrives and is dropped
	require.NoError(t, live.Ping(ctx(t)))
	require.NoError(t, mute.Ping(ctx(t)), "responses still matched in order")
}
