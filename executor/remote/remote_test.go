package remote_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/executor/remote"
	"github.com/trellisdb/trellis/internal/leakcheck"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/wire"
	"github.com/trellisdb/trellis/wireserver"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

const token = "test-token"

// cluster is a storage node, a coordinator and executors, each served on a
// loopback port of its own and reaching the others over TCP, as separate
// processes do.
type cluster struct {
	t       *testing.T
	kvsAddr string
	coord   *role
	execs   []*role
}

// role is a coordinator or an executor with its server.
type role struct {
	addr   string
	cancel context.CancelFunc
	done   chan struct{}
	coord  *executor.Coordinator
	exec   *executor.Executor
}

// stop stops the role's server, its loops and its connections, as a killed
// process's would end.
func (r *role) stop() {
	r.cancel()
	<-r.done
}

func newCluster(t *testing.T, regs ...*executor.Registry) *cluster {
	t.Helper()
	store, err := kvs.NewStore(kvs.StoreConfig{NodeID: 1})
	require.NoError(t, err)
	srv, err := kvs.NewServer(store, kvs.ServerConfig{Addr: "127.0.0.1:0", RESPAddr: kvs.AddrOff,
		Reserved: executor.Reserved, SystemToken: token})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	<-srv.Ready()
	c := &cluster{t: t, kvsAddr: srv.Addr()}
	c.coord = c.start(func(addr string, _ remote.Store, cl *client.Client, net executor.Network) (*executor.Coordinator, *executor.Executor, func(context.Context) error) {
		co, err := executor.NewCoordinator(executor.CoordinatorConfig{
			Addr: addr, ID: 2, KV: remote.ClientKV(cl), Network: net,
			ExecutorExpiry: 300 * time.Millisecond, Placement: executor.Placement{RandomShare: -1},
		})
		require.NoError(t, err)
		return co, nil, co.Run
	}, token)
	for i, reg := range regs {
		r := c.start(func(addr string, _ remote.Store, cl *client.Client, net executor.Network) (*executor.Coordinator, *executor.Executor, func(context.Context) error) {
			wkv := &remote.WatchedKV{KV: remote.ClientKV(cl), Nodes: func() []string { return []string{c.kvsAddr} },
				Dial: func(ctx context.Context, addr string) (*client.Watcher, error) {
					return client.DialWatcher(ctx, addr, client.Options{})
				}}
			e, err := executor.New(executor.Config{
				Addr: addr, ID: uint64(10 + i), KV: wkv, Network: net, Natives: reg,
				Coordinators: []string{c.coord.addr}, ReportEvery: 20 * time.Millisecond, Workers: 2,
				RefreshEvery: 10 * time.Millisecond,
			})
			require.NoError(t, err)
			return nil, e, func(ctx context.Context) error {
				defer wkv.Close()
				return e.Run(ctx)
			}
		}, "")
		c.execs = append(c.execs, r)
	}
	require.Eventually(t, func() bool { return c.coord.coord.Stats().Executors == len(regs) }, 5*time.Second, 5*time.Millisecond)
	return c
}

type build func(addr string, _ remote.Store, cl *client.Client, net executor.Network) (*executor.Coordinator, *executor.Executor, func(context.Context) error)

// start serves one role on a free port.
func (c *cluster) start(b build, tok string) *role {
	t := c.t
	cl, err := client.Dial(context.Background(), c.kvsAddr, client.Options{Token: tok})
	require.NoError(t, err)
	h := &remote.Handler{Version: "test"}
	srv, err := wireserver.New(wireserver.Config{Addr: "127.0.0.1:0", Concurrency: 64}, h)
	require.NoError(t, err)
	net := remote.NewNetwork(client.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	r := &role{cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	<-srv.Ready()
	r.addr = srv.Addr()
	var run func(context.Context) error
	r.coord, r.exec, run = b(r.addr, cl, cl, net)
	h.Set(r.coord, r.exec)
	wg.Go(func() { _ = run(ctx) })
	go func() {
		wg.Wait()
		_ = net.Close()
		_ = cl.Close()
		close(r.done)
	}()
	t.Cleanup(r.stop)
	return r
}

// caller returns a client of the coordinator.
func (c *cluster) caller() *client.Client {
	cl, err := client.Dial(context.Background(), c.coord.addr, client.Options{})
	require.NoError(c.t, err)
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func TestChainAcrossProcesses(t *testing.T) {
	c := newCluster(t, executor.Builtins(), executor.Builtins())
	cl := c.caller()
	ctx := context.Background()
	require.NoError(t, cl.RegisterDAG(ctx, executor.Chain("chain", "native/increment", "native/square")))
	for i := range 20 {
		res, err := cl.CallDAG(ctx, "chain", executor.Call{Args: map[string][]executor.Arg{"": {executor.Value(fmt.Append(nil, i))}}}).Get(ctx)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint((i+1)*(i+1)), string(res))
	}
	// The definition is in the storage node, in the reserved namespace.
	kv, err := client.Dial(ctx, c.kvsAddr, client.Options{})
	require.NoError(t, err)
	defer kv.Close()
	_, err = kv.Get(ctx, string(executor.DAGKey("chain")))
	require.NoError(t, err)
	err = kv.Set(ctx, string(executor.DAGKey("chain")), []byte("x"))
	require.ErrorIs(t, err, wire.ErrUnauthorized, "a client without the token cannot overwrite a definition")

}

// TestCallsOfOneConnectionRunAtOnce: calls pipelined on one client
// connection to the coordinator run concurrently. Each call's function
// waits until two of them run (the executor's two workers): were the calls
// run one at a time, none would ever return.
func TestCallsOfOneConnectionRunAtOnce(t *testing.T) {
	const together = 2
	var in atomic.Int32
	all := make(chan struct{})
	meet := func() *executor.Registry {
		r := executor.NewRegistry()
		require.NoError(t, r.Register("meet", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
			if in.Add(1) == together {
				close(all)
			}
			select {
			case <-all:
				return args[0], nil
			case <-c.Context().Done():
				return nil, c.Context().Err()
			}
		}))
		return r
	}
	c := newCluster(t, meet()) // an executor of two workers
	cl, err := client.Dial(context.Background(), c.coord.addr, client.Options{Conns: 1})
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cl.RegisterDAG(ctx, executor.Chain("meet", "native/meet")))
	var futures []*client.Future
	for i := range together {
		futures = append(futures, cl.CallDAG(ctx, "meet", executor.Call{Args: map[string][]executor.Arg{"": {executor.Value(fmt.Append(nil, i))}}}))
	}
	for i, f := range futures {
		res, err := f.Get(ctx)
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(i), string(res))
	}
}

// TestExecutorKilledMidDAG stops the executor running a call's first
// function while it runs: the coordinator notices (the executor stops
// reporting) and re-runs the call on the other executor.
func TestExecutorKilledMidDAG(t *testing.T) {
	var first atomic.Bool
	entered := make(chan int, 2)
	reg := func(i int) *executor.Registry {
		r := executor.Builtins()
		require.NoError(t, r.Register("hold", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
			entered <- i
			if first.CompareAndSwap(false, true) {
				<-c.Context().Done() // the first run hangs until its executor dies
				return nil, c.Context().Err()
			}
			return args[0], nil
		}))
		return r
	}
	c := newCluster(t, reg(0), reg(1))
	cl := c.caller()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, cl.RegisterDAG(ctx, executor.Chain("held", "native/hold", "native/square")))
	f := cl.CallDAG(ctx, "held", executor.Call{Args: map[string][]executor.Arg{"": {executor.Value([]byte("7"))}}})
	victim := <-entered
	c.execs[victim].stop()
	res, err := f.Get(ctx)
	require.NoError(t, err)
	assert.Equal(t, "49", string(res))
	assert.Equal(t, 1-victim, <-entered, "the re-run went to the survivor")
	assert.GreaterOrEqual(t, c.coord.coord.Stats().Retries, uint64(1))
}

// TestCacheFreshAcrossProcesses: an executor's cache holds a key; a write
// by another client reaches it through the storage node's watch.
func TestCacheFreshAcrossProcesses(t *testing.T) {
	r := executor.Builtins()
	require.NoError(t, r.Register("read", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		v, ok, err := c.Get(string(args[0]))
		if err != nil || !ok {
			return nil, errors.Join(err, errors.New("no value"))
		}
		return v, nil
	}))
	c := newCluster(t, r)
	ctx := context.Background()
	kv, err := client.Dial(ctx, c.kvsAddr, client.Options{})
	require.NoError(t, err)
	defer kv.Close()
	require.NoError(t, kv.Set(ctx, "k", []byte("v1")))
	cl := c.caller()
	read := func() string {
		res, err := cl.Call(ctx, "native/read", executor.Value([]byte("k")))
		require.NoError(t, err)
		return string(res)
	}
	require.Equal(t, "v1", read())
	require.Equal(t, "v1", read())
	hits := c.execs[0].exec.Cache().Stats().Hits
	require.GreaterOrEqual(t, hits, uint64(1), "the second read came from the cache")

	require.NoError(t, kv.Set(ctx, "k", []byte("v2")))
	start := time.Now()
	require.Eventually(t, func() bool { return read() == "v2" }, 5*time.Second, 2*time.Millisecond)
	t.Logf("the cache saw the write after %v", time.Since(start))
}

func TestHandlerRefusesStrangers(t *testing.T) {
	c := newCluster(t, executor.Builtins())
	cl, err := client.Dial(context.Background(), c.execs[0].addr, client.Options{})
	require.NoError(t, err)
	defer cl.Close()
	ctx := context.Background()
	tr := &executor.Trigger{DAG: &executor.DAG{Name: "d", Functions: []string{"native/square"}}, Call: &executor.Call{}, Fn: "native/square"}
	resp, err := cl.Do(ctx, &wire.Request{Op: wire.OpExTrigger, Key: []byte("127.0.0.1:1"), Value: tr.AppendBinary(nil)})
	require.NoError(t, err)
	require.ErrorIs(t, resp.Err(), wire.ErrUnavailable, "a trigger for another address")
	resp, err = cl.Do(ctx, &wire.Request{Op: wire.OpExTrigger, Key: []byte(c.execs[0].addr), Value: []byte{0x93, 1, 2}})
	require.NoError(t, err)
	require.ErrorIs(t, resp.Err(), wire.ErrBadRequest, "a trigger that does not decode")
	resp, err = cl.Do(ctx, &wire.Request{Op: wire.OpDagCall, Key: []byte("x"), Value: nil})
	require.NoError(t, err)
	require.ErrorIs(t, resp.Err(), wire.ErrUnavailable, "an executor runs no coordinator")
}

// TestWatchedKVFallsBackToPolling: while a node cannot be watched, every
// cached key counts as changed at each refresh (the cache re-reads them);
// once it can, only written keys do.
func TestWatchedKVFallsBackToPolling(t *testing.T) {
	store, err := kvs.NewStore(kvs.StoreConfig{NodeID: 1})
	require.NoError(t, err)
	srv, err := kvs.NewServer(store, kvs.ServerConfig{Addr: "127.0.0.1:0", RESPAddr: kvs.AddrOff})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-srv.Ready()

	var reachable atomic.Bool
	k := &remote.WatchedKV{
		Nodes: func() []string { return []string{srv.Addr()} },
		Dial: func(ctx context.Context, addr string) (*client.Watcher, error) {
			if !reachable.Load() {
				return nil, wire.ErrUnavailable
			}
			return client.DialWatcher(ctx, addr, client.Options{})
		},
	}
	defer k.Close()
	k.Watch([]byte("a"))
	k.Watch([]byte("b"))
	assert.ElementsMatch(t, []string{"a", "b"}, k.TakeChanged(nil), "no connection: everything")
	assert.ElementsMatch(t, []string{"a", "b"}, k.TakeChanged(nil), "still none")
	reachable.Store(true)
	assert.ElementsMatch(t, []string{"a", "b"}, k.TakeChanged(nil), "connected now: everything once more")
	assert.Empty(t, k.TakeChanged(nil))

	kv, err := client.Dial(ctx, srv.Addr(), client.Options{})
	require.NoError(t, err)
	defer kv.Close()
	require.NoError(t, kv.Set(ctx, "b", []byte("1")))
	require.NoError(t, kv.Set(ctx, "c", []byte("1")))
	assert.Equal(t, []string{"b"}, k.TakeChanged(nil))
	k.Watch([]byte("c")) // sent with the next call
	k.Unwatch([]byte("b"))
	assert.Empty(t, k.TakeChanged(nil))
	require.NoError(t, kv.Set(ctx, "b", []byte("2")))
	require.NoError(t, kv.Set(ctx, "c", []byte("2")))
	assert.Equal(t, []string{"c"}, k.TakeChanged(nil))

	// Many keys go in several requests; a write of the last is seen.
	for i := range 3000 {
		k.Watch(fmt.Appendf(nil, "many:%d", i))
	}
	assert.Empty(t, k.TakeChanged(nil))
	require.NoError(t, kv.Set(ctx, "many:2999", []byte("x")))
	assert.Equal(t, []string{"many:2999"}, k.TakeChanged(nil))
}
