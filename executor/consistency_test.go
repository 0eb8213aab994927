package executor_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

func value(v string) map[string][]executor.Arg {
	return map[string][]executor.Arg{"": {executor.Value([]byte(v))}}
}

// TestRepeatableReadAcrossFunctions: the first function of a chain finds
// key k absent; k is then written by another client; the second function
// reads k. Under repeatable read it finds it absent too (the call's
// version); under lww it finds the new value.
func TestRepeatableReadAcrossFunctions(t *testing.T) {
	r := executor.NewRegistry()
	var w *world
	read := func(c *executor.Ctx, key string) string {
		v, ok, err := c.Get(key)
		require.NoError(t, err)
		if !ok {
			return "absent"
		}
		return string(v)
	}
	require.NoError(t, r.Register("first", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		got := read(c, "k")
		require.NoError(t, w.store.SetLWW([]byte("k"), []byte("v1"))) // another writer
		return []byte(got), nil
	}))
	require.NoError(t, r.Register("second", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		key := "k"
		if len(args) == 2 {
			key = string(args[0]) // its own argument names the key
		}
		return []byte(string(args[len(args)-1]) + "," + read(c, key)), nil
	}))
	require.NoError(t, r.Register("write", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		return nil, c.Put("w", []byte("mine"))
	}))
	w = newWorld(t, r)
	ctx := ctxT(t)
	require.NoError(t, w.coord.RegisterDAG(ctx, executor.Chain("pair", "native/first", "native/second")))

	res, err := w.coord.CallDAG(ctx, "pair", executor.Call{Consistency: "repeatable-read", Args: value("x")})
	require.NoError(t, err)
	assert.Equal(t, "absent,absent", string(res))

	_, err = w.store.Delete([]byte("k"))
	require.NoError(t, err)
	res, err = w.coord.CallDAG(ctx, "pair", executor.Call{Consistency: "lww", Args: value("x")})
	require.NoError(t, err)
	assert.Equal(t, "absent,v1", string(res))

	// A call's own write is what its later functions read.
	require.NoError(t, w.coord.RegisterDAG(ctx, executor.Chain("own", "native/write", "native/second")))
	res, err = w.coord.CallDAG(ctx, "own", executor.Call{Consistency: "repeatable-read", Args: map[string][]executor.Arg{
		"native/write": {executor.Value([]byte("x"))}, "native/second": {executor.Value([]byte("w"))}}})
	require.NoError(t, err)
	assert.Equal(t, ",mine", string(res))

	for _, bad := range []string{"serializable", "Causal"} {
		_, err = w.coord.CallDAG(ctx, "pair", executor.Call{Consistency: bad})
		require.ErrorIs(t, err, wire.ErrBadRequest, bad)
	}
}

// TestRepeatableReadConflictReruns: two branches of a call read k; a write
// lands between their reads, so they read two versions; the join fails
// with a conflict and the coordinator runs the call again, which then
// succeeds.
func TestRepeatableReadConflictReruns(t *testing.T) {
	r := executor.NewRegistry()
	var w *world
	var runs atomic.Int32
	leftRead := make(chan struct{})
	rightMayRead := make(chan struct{})
	get := func(c *executor.Ctx) []byte {
		v, _, err := c.Get("k")
		require.NoError(t, err)
		return v
	}
	require.NoError(t, r.Register("src", func(c *executor.Ctx, args [][]byte) ([]byte, error) { return args[0], nil }))
	require.NoError(t, r.Register("left", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		v := get(c)
		if runs.Add(1) == 1 {
			close(leftRead)
		}
		return v, nil
	}))
	require.NoError(t, r.Register("right", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		select {
		case <-rightMayRead:
		case <-c.Context().Done():
			return nil, c.Context().Err()
		}
		return get(c), nil
	}))
	require.NoError(t, r.Register("join", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		return []byte(string(args[0]) + "=" + string(args[1])), nil
	}))
	w = newWorld(t, r)
	ctx := ctxT(t)
	require.NoError(t, w.store.SetLWW([]byte("k"), []byte("v1")))
	d := executor.DAG{Name: "diamond", Functions: []string{"native/src", "native/left", "native/right", "native/join"},
		Edges: [][2]string{{"native/src", "native/left"}, {"native/src", "native/right"}, {"native/left", "native/join"}, {"native/right", "native/join"}}}
	require.NoError(t, w.coord.RegisterDAG(ctx, d))

	go func() {
		<-leftRead
		// Another client writes k, and the executor's cache learns it.
		_ = w.store.SetLWW([]byte("k"), []byte("v2"))
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for !cached(w.execs[0], "k", "v2") {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
		close(rightMayRead)
	}()
	before := w.coord.Stats().Retries
	res, err := w.coord.CallDAG(ctx, "diamond", executor.Call{Consistency: "repeatable-read", Args: value("x")})
	require.NoError(t, err)
	assert.Equal(t, "v2=v2", string(res))
	assert.Equal(t, int32(2), runs.Load(), "left ran twice: the first run's call conflicted")
	assert.Equal(t, before+1, w.coord.Stats().Retries)
}

// cached reports whether e's cache holds want in key's register.
func cached(e *executor.Executor, key, want string) bool {
	enc, ok := e.Cache().Peek([]byte(key))
	if !ok {
		return false
	}
	_, _, v, err := lattice.ParseLWW(enc)
	return err == nil && string(v) == want
}

// ackKV records the acknowledgement of each write.
type ackKV struct {
	kvs.Direct
	mu   sync.Mutex
	acks map[string]wire.Ack
}

func (a *ackKV) Put(ctx context.Context, key, enc []byte) error {
	return a.PutAck(ctx, key, enc, wire.AckDefault)
}

func (a *ackKV) PutAck(ctx context.Context, key, enc []byte, ack wire.Ack) error {
	a.mu.Lock()
	a.acks[string(key)] = ack
	a.mu.Unlock()
	return a.Direct.Put(ctx, key, enc)
}

// TestCallAckReachesWrites: the acknowledgement a call asks for is the one
// its functions' writes, and its result key's, wait for.
func TestCallAckReachesWrites(t *testing.T) {
	st, err := kvs.NewStore(kvs.StoreConfig{NodeID: 1})
	require.NoError(t, err)
	kv := &ackKV{Direct: kvs.Direct{Store: st}, acks: make(map[string]wire.Ack)}
	r := executor.Builtins()
	require.NoError(t, r.Register("write", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		return args[0], c.Put(string(args[0]), []byte("x"))
	}))
	net := executor.NewLocalNetwork()
	coord, err := executor.NewCoordinator(executor.CoordinatorConfig{Addr: "c", ID: 2, KV: kv, Network: net, Natives: r.Names()})
	require.NoError(t, err)
	exec, err := executor.New(executor.Config{Addr: "e", ID: 3, KV: kv, Network: net, Natives: r, Coordinators: []string{"c"}})
	require.NoError(t, err)
	net.AddCoordinator(coord)
	net.AddExecutor(exec)
	ctx, cancel := context.WithCancel(ctxT(t))
	var wg sync.WaitGroup
	wg.Go(func() { _ = coord.Run(ctx) })
	wg.Go(func() { _ = exec.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	require.NoError(t, coord.RegisterDAG(ctx, executor.Chain("w", "native/write")))
	for key, ack := range map[string]wire.Ack{"a": wire.AckDefault, "b": wire.AckQuorum, "c": wire.AckDurable} {
		_, err := coord.CallDAG(ctx, "w", executor.Call{Args: value(key), Ack: ack, ResultKey: "result-" + key})
		require.NoError(t, err)
		kv.mu.Lock()
		assert.Equal(t, ack, kv.acks[key], "the function's write of %s", key)
		assert.Equal(t, ack, kv.acks["result-"+key], "the result key of %s", key)
		kv.mu.Unlock()
	}
}

// TestCausalCalls: under causal consistency a function's writes are causal
// versions that depend on what the call read, a later function of the call
// reads them, and a read respects the dependencies of the versions read
// before it (a value written after another is never seen without it).
func TestCausalCalls(t *testing.T) {
	r := executor.NewRegistry()
	get := func(c *executor.Ctx, key string) string {
		v, ok, err := c.Get(key)
		require.NoError(t, err)
		if !ok {
			return "absent"
		}
		return string(v)
	}
	// post writes the message, then the index that points at it: a reader
	// that sees the index must see the message.
	require.NoError(t, r.Register("post", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		if err := c.Put("msg", args[0]); err != nil {
			return nil, err
		}
		get(c, "msg")
		return nil, c.Put("index", []byte("msg"))
	}))
	require.NoError(t, r.Register("read", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		idx := get(c, string(args[0])) // the index's key
		if idx == "absent" {
			return []byte("nothing"), nil
		}
		return []byte(get(c, idx)), nil
	}))
	w := newWorld(t, r)
	ctx := ctxT(t)
	require.NoError(t, w.coord.RegisterDAG(ctx, executor.Chain("post", "native/post")))
	require.NoError(t, w.coord.RegisterDAG(ctx, executor.Chain("read", "native/read")))
	causal := func(dag, arg string) string {
		res, err := w.coord.CallDAG(ctx, dag, executor.Call{Consistency: "causal", Args: value(arg)})
		require.NoError(t, err)
		return string(res)
	}
	assert.Equal(t, "nothing", causal("read", "index"))
	causal("post", "hello")
	assert.Equal(t, "hello", causal("read", "index"))

	// The index holds a causal version that depends on the message's.
	enc, err := w.store.Get([]byte("index"), nil)
	require.NoError(t, err)
	l, err := lattice.Decode(enc)
	require.NoError(t, err)
	m, ok := l.(*lattice.MultiCausal)
	require.True(t, ok, "index holds a %s", l.Type())
	assert.Contains(t, m.Deps(), "msg")

	// Another writer (actor 99) replaces the message past the executor's
	// cache, which still holds "hello", and writes a second index that
	// depends on the new message: a causal read of that index gets the
	// message it needs (from the KVS), not the cached one. (A read of the
	// old, cached index may still return "hello": stale, but a causal cut.)
	next := lattice.NewVClock(map[uint64]uint64{10: 1, 99: 1}) // after the executor's {10:1}
	require.NoError(t, w.store.PutEncoded([]byte("msg"), lattice.Encode(lattice.NewMultiCausal(next, nil, []byte("second")))))
	require.NoError(t, w.store.PutEncoded([]byte("index2"), lattice.Encode(lattice.NewMultiCausal(
		lattice.NewVClock(map[uint64]uint64{99: 2}), map[string]lattice.VClock{"msg": *next}, []byte("msg")))))
	assert.Equal(t, "second", causal("read", "index2"))
}
