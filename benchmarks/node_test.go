package benchmarks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/kvs"
)

// node is a storage node served in this process on loopback ports.
type node struct {
	store        *kvs.Store
	native, resp string
}

// startNode runs a node until the test ends. It makes the test parallel.
func startNode(t *testing.T) node {
	t.Helper()
	t.Parallel() // stopping a node takes a second (gnet polls for shutdown)
	store, err := kvs.NewStore(kvs.StoreConfig{})
	require.NoError(t, err)
	srv, err := kvs.NewServer(store, kvs.ServerConfig{
		Addr: "127.0.0.1:0", RESPAddr: "127.0.0.1:0", Loops: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-errc)
	})
	select {
	case <-srv.Ready():
	case err := <-errc:
		errc <- err
		t.Fatalf("node did not start: %v", err)
	}
	return node{store: store, native: srv.Addr(), resp: srv.RESPAddr()}
}

func TestRunKVSRunsExactlyTheRequests(t *testing.T) {
	n := startNode(t)
	var (
		mu    sync.Mutex
		calls []Progress
	)
	cfg := KVSConfig{Addr: n.native, Conns: 4, Pipeline: 8, Requests: 5_003, Keys: 500, Seed: 5}
	res, err := RunKVS(context.Background(), cfg, func(p Progress) {
		mu.Lock()
		calls = append(calls, p)
		mu.Unlock()
	})
	require.NoError(t, err)
	require.Equal(t, int64(5_003), res.Ops)
	require.Equal(t, res.Ops, res.Gets+res.Sets)
	require.Equal(t, uint64(res.Ops), res.Latency.Count())
	require.Zero(t, res.Errors)
	require.Zero(t, res.Misses, "every key was preloaded")
	require.Positive(t, res.Gets)
	require.Positive(t, res.Sets)
	require.InDelta(t, 0.5, float64(res.Gets)/float64(res.Ops), 0.05)
	require.Positive(t, res.PreloadSeconds)
	require.Positive(t, res.OpsPerSec)
	require.Positive(t, res.P50us)
	require.LessOrEqual(t, res.P50us, res.P90us)
	require.LessOrEqual(t, res.P90us, res.P99us)
	require.LessOrEqual(t, res.P99us, res.P999us)
	require.LessOrEqual(t, res.P999us, res.MaxUs)
	require.Equal(t, cfg.WithDefaults(), res.Config)
	require.Equal(t, 500, n.store.Len(), "preload wrote every key")

	mu.Lock()
	defer mu.Unlock()
	last := map[string]int64{}
	for _, p := range calls {
		require.Contains(t, []string{PhasePreload, PhaseRun}, p.Phase)
		require.GreaterOrEqual(t, p.Done, last[p.Phase], "progress never goes back")
		last[p.Phase] = p.Done
	}
}

func TestRunKVSCountsMissesAndErrorsByKind(t *testing.T) {
	n := startNode(t)
	// Without preload every get misses; that is not an error.
	res, err := RunKVS(context.Background(), KVSConfig{
		Addr: n.native, Conns: 2, Pipeline: 4, Requests: 1000, Keys: 100_000_000_000,
		Distribution: Zipfian, GetRatio: 1, SkipPreload: true,
	}, nil)
	require.NoError(t, err)
	require.Equal(t, int64(1000), res.Gets)
	require.Zero(t, res.Errors)
	require.Positive(t, res.Misses)

	// key:000000000000 holds a set: an LWW write to it is a type mismatch.
	_, err = n.store.SetAdd([]byte("key:000000000000"), [][]byte{[]byte("m")})
	require.NoError(t, err)
	res, err = RunKVS(context.Background(), KVSConfig{
		Addr: n.native, Conns: 2, Pipeline: 4, Requests: 400, Keys: 1, GetRatio: NoGets, SkipPreload: true,
	}, nil)
	require.NoError(t, err)
	require.Equal(t, int64(400), res.Sets)
	require.Equal(t, int64(400), res.Errors)
	require.Equal(t, map[string]int64{"lattice_type_mismatch": 400}, res.ErrorKinds)

	// Preloading over it fails, naming the key.
	_, err = RunKVS(context.Background(), KVSConfig{Addr: n.native, Conns: 2, Requests: 10, Keys: 10}, nil)
	require.ErrorIs(t, err, client.ErrTypeMismatch)
	require.ErrorContains(t, err, "key:000000000000")
}

func TestRunKVSStopsAfterItsDuration(t *testing.T) {
	n := startNode(t)
	res, err := RunKVS(context.Background(), KVSConfig{
		Addr: n.native, Conns: 3, Pipeline: 2, Duration: 100 * time.Millisecond, Keys: 100, SkipPreload: true,
	}, nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, res.Seconds, 0.1)
	require.Less(t, res.Seconds, 5.0)
	require.Positive(t, res.Ops)
	require.Zero(t, res.PreloadSeconds)
}

func TestRunKVSReturnsPromptlyWhenCancelled(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	var once sync.Once
	res, err := RunKVS(ctx, KVSConfig{Addr: n.native, Conns: 8, Duration: time.Hour, Keys: 1000}, func(p Progress) {
		if p.Phase == PhaseRun && p.Done > 0 {
			once.Do(func() { cancelled = time.Now(); cancel() })
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, cancelled.IsZero())
	require.Less(t, time.Since(cancelled), time.Second, "returns promptly")
	require.Positive(t, res.Ops, "figures so far are returned")
	require.Positive(t, res.OpsPerSec)
}

func TestRunKVSFailsOnAnUnreachableNode(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = RunKVS(context.Background(), KVSConfig{Addr: addr, Requests: 1}, nil)
	require.Error(t, err)
	_, err = RunKVS(context.Background(), KVSConfig{Conns: -1}, nil)
	require.ErrorIs(t, err, ErrInvalidConfig)
}

func TestFillRESPWritesExactlyNKeys(t *testing.T) {
	n := startNode(t)
	ctx := context.Background()
	size, err := DBSize(ctx, n.resp)
	require.NoError(t, err)
	require.Zero(t, size)

	require.NoError(t, FillRESP(ctx, n.resp, 2*FillBatch+7, 33, nil))
	size, err = DBSize(ctx, n.resp)
	require.NoError(t, err)
	require.Equal(t, int64(2*FillBatch+7), size)

	c, err := client.Dial(ctx, n.native, client.Options{Conns: 1})
	require.NoError(t, err)
	defer c.Close()
	for _, k := range []int{0, FillBatch, 2*FillBatch + 6} {
		v, err := c.GetBytes(ctx, fmt.Sprintf("key:%012d", k))
		require.NoError(t, err)
		require.Equal(t, bytes.Repeat([]byte("x"), 33), v)
	}
	_, err = c.GetBytes(ctx, fmt.Sprintf("key:%012d", 2*FillBatch+7))
	require.ErrorIs(t, err, client.ErrNotFound)

	require.ErrorIs(t, FillRESP(ctx, n.resp, -1, 1, nil), ErrInvalidConfig)
}

func TestFillRESPReturnsPromptlyWhenCancelled(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var cancelled time.Time
	var once sync.Once
	err := FillRESP(ctx, n.resp, 100_000_000, 10, func(p Progress) {
		require.Equal(t, PhaseFill, p.Phase)
		if p.Done > 0 {
			once.Do(func() { cancelled = time.Now(); cancel() })
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, cancelled.IsZero())
	require.Less(t, time.Since(cancelled), time.Second)
}

// TestFillRESPFailsOnAnErrorReply talks to a fake server that refuses every
// command.
func TestFillRESPFailsOnAnErrorReply(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err == nil {
			_, _ = c.Write([]byte("-ERR no writes today\r\n"))
		}
		_, _ = io.Copy(io.Discard, c) // until the client hangs up
	}()
	err = FillRESP(context.Background(), ln.Addr().String(), 10, 5, nil)
	require.ErrorIs(t, err, ErrReply)
	require.ErrorContains(t, err, "key:000000000000")
	require.ErrorContains(t, err, "no writes today")
	require.NoError(t, ln.Close())
	<-done
}

func TestMeasureMemoryOfThisProcess(t *testing.T) {
	n := startNode(t)
	res, err := MeasureMemory(context.Background(), MemoryConfig{
		Target: n.resp, Keys: 5000, ValueSize: 100, Settle: time.Millisecond,
	}, nil)
	require.NoError(t, err)
	require.Equal(t, os.Getpid(), res.PID, "the listener is this process")
	require.Equal(t, int64(0), res.DBSizeBefore)
	require.Equal(t, int64(5000), res.DBSize)
	require.Positive(t, res.RSS)
	require.Positive(t, res.RSSBefore)
	require.InDelta(t, float64(res.RSS)/5000, res.BytesPerKey, 1e-9)
	require.Positive(t, res.FillSeconds)

	_, err = MeasureMemory(context.Background(), MemoryConfig{Target: "nohostport"}, nil)
	require.ErrorIs(t, err, ErrInvalidConfig)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = MeasureMemory(context.Background(), MemoryConfig{Target: addr}, nil)
	require.True(t, errors.Is(err, ErrNoPID), "%v", err)
}
