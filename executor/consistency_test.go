package executor_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/executor"
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

	for _, bad := range []string{"causal", "serializable"} {
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
