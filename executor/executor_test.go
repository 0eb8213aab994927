package executor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/internal/leakcheck"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/wire"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// world is a coordinator and executors in one process over a LocalNetwork
// and one store.
type world struct {
	t     *testing.T
	store *kvs.Store
	net   *executor.LocalNetwork
	coord *executor.Coordinator
	execs []*executor.Executor
	stops []context.CancelFunc
	wg    sync.WaitGroup
}

// newWorld starts a coordinator and one executor per registry.
func newWorld(t *testing.T, regs ...*executor.Registry) *world {
	t.Helper()
	st, err := kvs.NewStore(kvs.StoreConfig{NodeID: 1})
	require.NoError(t, err)
	w := &world{t: t, store: st, net: executor.NewLocalNetwork()}
	w.coord, err = executor.NewCoordinator(executor.CoordinatorConfig{
		Addr: "coord", ID: 2, KV: kvs.Direct{Store: st}, Network: w.net,
		ExecutorExpiry: 300 * time.Millisecond,
		Placement:      executor.Placement{RandomShare: -1},
	})
	require.NoError(t, err)
	w.net.AddCoordinator(w.coord)
	w.start(w.coord.Run)
	for i, r := range regs {
		e, err := executor.New(executor.Config{
			Addr: fmt.Sprintf("exec%d", i), ID: uint64(10 + i), KV: kvs.Direct{Store: st}, Network: w.net,
			Natives: r, Coordinators: []string{"coord"}, ReportEvery: 20 * time.Millisecond, Workers: 1,
		})
		require.NoError(t, err)
		w.net.AddExecutor(e)
		w.execs = append(w.execs, e)
		w.start(e.Run)
	}
	require.Eventually(t, func() bool { return w.coord.Stats().Executors == len(regs) }, 5*time.Second, 5*time.Millisecond)
	t.Cleanup(w.stop)
	return w
}

func (w *world) start(run func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	w.stops = append(w.stops, cancel)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		_ = run(ctx)
	}()
}

func (w *world) stop() {
	for _, s := range w.stops {
		s()
	}
	w.wg.Wait()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestChainOfNativeFunctions(t *testing.T) {
	w := newWorld(t, executor.Builtins())
	ctx := ctxT(t)
	require.NoError(t, w.coord.RegisterDAG(ctx, executor.Chain("chain", "native/increment", "native/square")))
	res, err := w.coord.CallDAG(ctx, "chain", executor.Call{Args: map[string][]executor.Arg{"": {executor.Value([]byte("3"))}}})
	require.NoError(t, err)
	assert.Equal(t, "16", string(res))

	res, err = w.coord.Call(ctx, "native/square", []executor.Arg{executor.Value([]byte("-7"))})
	require.NoError(t, err)
	assert.Equal(t, "49", string(res))

	names, err := w.coord.DAGs(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"chain"}, names)
	fns, err := w.coord.Functions(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"native/increment", "native/sleep", "native/square"}, fns)

	existed, err := w.coord.DeleteDAG(ctx, "chain")
	require.NoError(t, err)
	assert.True(t, existed)
	_, err = w.coord.CallDAG(ctx, "chain", executor.Call{})
	require.ErrorIs(t, err, executor.ErrDAGNotFound)
	require.ErrorIs(t, err, wire.ErrNotFound)
	names, err = w.coord.DAGs(ctx)
	require.NoError(t, err)
	assert.Empty(t, names)
}

func TestRegisterDAGValidates(t *testing.T) {
	w := newWorld(t, executor.Builtins())
	ctx := ctxT(t)
	for name, d := range map[string]executor.DAG{
		"cycle": {Name: "c", Functions: []string{"native/increment", "native/square"},
			Edges: [][2]string{{"native/increment", "native/square"}, {"native/square", "native/increment"}}},
		"unknown function": executor.Chain("u", "native/increment", "nosuch"),
		"unknown native":   executor.Chain("u", "native/nosuch"),
		"two sinks":        {Name: "s", Functions: []string{"native/increment", "native/square"}},
		"empty":            {Name: "e"},
		"bad name":         executor.Chain("a b", "native/increment"),
		"edge outside":     {Name: "o", Functions: []string{"native/increment"}, Edges: [][2]string{{"native/increment", "x"}}},
		"duplicate":        {Name: "d", Functions: []string{"native/increment", "native/increment"}},
	} {
		err := w.coord.RegisterDAG(ctx, d)
		require.Error(t, err, name)
		assert.ErrorIs(t, err, wire.ErrBadRequest, name)
	}
	_, err := w.coord.Call(ctx, "nosuch", nil)
	require.ErrorIs(t, err, executor.ErrFunctionNotFound)
}

func TestJoinKeysAndResultKey(t *testing.T) {
	reg := executor.NewRegistry()
	require.NoError(t, reg.Register("a", func(_ *executor.Ctx, args [][]byte) ([]byte, error) { return []byte("A" + string(args[0])), nil }))
	require.NoError(t, reg.Register("b", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		// args[0] is a key reference resolved by the executor.
		if err := c.Put("b-wrote", args[0]); err != nil {
			return nil, err
		}
		return []byte("B" + string(args[0])), nil
	}))
	require.NoError(t, reg.Register("join", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		v, ok, err := c.Get("b-wrote")
		if err != nil || !ok {
			return nil, fmt.Errorf("get: %v %v", ok, err)
		}
		out := string(v)
		for _, a := range args {
			out += "|" + string(a)
		}
		return []byte(out), nil
	}))
	w := newWorld(t, reg)
	ctx := ctxT(t)
	require.NoError(t, w.store.SetLWW([]byte("in"), []byte("x")))
	d := executor.DAG{Name: "j", Functions: []string{"native/a", "native/b", "native/join"},
		Edges: [][2]string{{"native/b", "native/join"}, {"native/a", "native/join"}}}
	require.NoError(t, w.coord.RegisterDAG(ctx, d))
	call := executor.Call{Args: map[string][]executor.Arg{
		"native/a":    {executor.Value([]byte("1"))},
		"native/b":    {executor.Ref("in")},
		"native/join": {executor.Value([]byte("own"))},
	}}
	res, err := w.coord.CallDAG(ctx, "j", call)
	require.NoError(t, err)
	assert.Equal(t, "x|own|Bx|A1", string(res), "own arguments, then predecessors in edge order")

	call.ResultKey = "out"
	res, err = w.coord.CallDAG(ctx, "j", call)
	require.NoError(t, err)
	assert.Nil(t, res)
	v, err := w.store.GetString([]byte("out"), nil)
	require.NoError(t, err)
	assert.Equal(t, "x|own|Bx|A1", string(v))

	call.Args["native/b"] = []executor.Arg{executor.Ref("missing")}
	_, err = w.coord.CallDAG(ctx, "j", call)
	require.ErrorIs(t, err, wire.ErrBadRequest)
}

func TestFunctionErrorsAreTyped(t *testing.T) {
	reg := executor.NewRegistry()
	require.NoError(t, reg.Register("fail", func(*executor.Ctx, [][]byte) ([]byte, error) { return nil, errors.New("boom") }))
	require.NoError(t, reg.Register("spin", func(c *executor.Ctx, _ [][]byte) ([]byte, error) {
		<-c.Context().Done()
		return nil, c.Context().Err()
	}))
	require.NoError(t, reg.Register("reserved", func(c *executor.Ctx, _ [][]byte) ([]byte, error) {
		return nil, c.Put(executor.Reserved+"fn/evil", []byte("x"))
	}))
	w := newWorld(t, reg)
	ctx := ctxT(t)

	_, err := w.coord.Call(ctx, "native/fail", nil)
	require.ErrorIs(t, err, wire.ErrFunction)
	assert.Contains(t, err.Error(), "boom")

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = w.coord.Call(short, "native/spin", nil)
	require.ErrorIs(t, err, wire.ErrTimeout)

	_, err = w.coord.Call(ctx, "native/reserved", nil)
	require.ErrorIs(t, err, wire.ErrUnauthorized)

	// The executor still serves.
	_, err = w.coord.Call(ctx, "native/fail", nil)
	require.ErrorIs(t, err, wire.ErrFunction)

	_, err = w.coord.Call(ctx, "native/fail", make([]executor.Arg, executor.MaxArgs+1))
	require.ErrorIs(t, err, wire.ErrBadRequest)
	_, err = w.coord.Call(ctx, "native/fail", []executor.Arg{executor.Value(make([]byte, 2<<20))})
	require.ErrorIs(t, err, wire.ErrTooLarge)
}

func TestSendRecvBetweenFunctions(t *testing.T) {
	reg := executor.NewRegistry()
	require.NoError(t, reg.Register("ping", func(c *executor.Ctx, _ [][]byte) ([]byte, error) {
		return []byte("sent"), c.Send("native/pong", []byte("hello"))
	}))
	require.NoError(t, reg.Register("pong", func(c *executor.Ctx, args [][]byte) ([]byte, error) {
		m, err := c.Recv()
		return []byte(string(args[0]) + ":" + string(m)), err
	}))
	w := newWorld(t, reg)
	ctx := ctxT(t)
	require.NoError(t, w.coord.RegisterDAG(ctx, executor.Chain("pp", "native/ping", "native/pong")))
	res, err := w.coord.CallDAG(ctx, "pp", executor.Call{})
	require.NoError(t, err)
	assert.Equal(t, "sent:hello", string(res))
}

// An executor that dies in the middle of a call (stops answering and
// reporting) makes the coordinator re-run the call on another one.
func TestCallSurvivesExecutorFailure(t *testing.T) {
	started := make(chan string, 4)
	release := make(chan struct{})
	defer close(release)
	slow := func(name string) *executor.Registry {
		r := executor.NewRegistry()
		require.NoError(t, r.Register("work", func(c *executor.Ctx, _ [][]byte) ([]byte, error) {
			started <- name
			if name == "exec0" {
				select { // hangs: the executor is "dead"
				case <-release:
				case <-c.Context().Done():
				}
				return nil, errors.New("should not be seen")
			}
			return []byte("done by " + name), nil
		}))
		return r
	}
	w := newWorld(t, slow("exec0"), slow("exec1"))
	ctx := ctxT(t)
	done := make(chan error, 1)
	var res []byte
	go func() {
		var err error
		// Deterministic first choice: equal load and keys pick the first
		// executor in address order, exec0.
		res, err = w.coord.Call(ctx, "native/work", nil)
		done <- err
	}()
	require.Equal(t, "exec0", <-started)
	w.net.SetDown("exec0", true) // its reports and results no longer arrive
	require.NoError(t, <-done)
	assert.Equal(t, "done by exec1", string(res))
	assert.Equal(t, "exec1", <-started)
	assert.GreaterOrEqual(t, w.coord.Stats().Retries, uint64(1))
}

// Many calls at once on few workers: a worker passing a result on never
// waits for a worker (they once all did, and every call hung).
func TestConcurrentCallsOnFewWorkers(t *testing.T) {
	w := newWorld(t, executor.Builtins())
	ctx := ctxT(t)
	require.NoError(t, w.coord.RegisterDAG(ctx, executor.Chain("chain", "native/increment", "native/square")))
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := w.coord.CallDAG(ctx, "chain", executor.Call{Args: map[string][]executor.Arg{"": {executor.Value(fmt.Appendf(nil, "%d", i))}}})
			if assert.NoError(t, err) {
				assert.Equal(t, fmt.Sprint((i+1)*(i+1)), string(res))
			}
		}()
	}
	wg.Wait()
}

// A write to a key the executor's cache holds, made by someone else (a
// client of the store), reaches the cache within a refresh period.
func TestCacheSeesOtherWriters(t *testing.T) {
	reg := executor.NewRegistry()
	require.NoError(t, reg.Register("read", func(c *executor.Ctx, _ [][]byte) ([]byte, error) {
		v, _, err := c.Get("k")
		return v, err
	}))
	w := newWorld(t, reg)
	ctx := ctxT(t)
	require.NoError(t, w.store.SetLWW([]byte("k"), []byte("v1")))
	res, err := w.coord.Call(ctx, "native/read", nil)
	require.NoError(t, err)
	require.Equal(t, "v1", string(res))
	require.NoError(t, w.store.SetLWW([]byte("k"), []byte("v2")))
	require.Eventually(t, func() bool {
		res, err := w.coord.Call(ctx, "native/read", nil)
		return err == nil && string(res) == "v2"
	}, 5*time.Second, 5*time.Millisecond)
	st := w.execs[0].Cache().Stats()
	assert.Equal(t, uint64(1), st.Misses, "the new value was pushed, not fetched on a miss")

	_, err = w.store.Delete([]byte("k"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		res, err := w.coord.Call(ctx, "native/read", nil)
		return err == nil && len(res) == 0
	}, 5*time.Second, 5*time.Millisecond)
}
