package memnet_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/trellisdb/trellis/memnet"
	"github.com/trellisdb/trellis/wire"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echo answers PING with its payload and counts what it served.
type echo struct{ served atomic.Int64 }

func (e *echo) Serve(_ context.Context, _ string, req *wire.Request, out []byte) []byte {
	e.served.Add(1)
	return wire.AppendBytesResult(out, req.ID, req.Value)
}

func ping(t *testing.T, ep *memnet.Endpoint, to, payload string) (*wire.Response, error) {
	t.Helper()
	return ep.Call(context.Background(), to, &wire.Request{ID: 1, Op: wire.OpPing, Value: []byte(payload)})
}

func TestCallAndIsolation(t *testing.T) {
	n := memnet.New(1)
	var got []byte
	n.Attach("b", memnet.HandlerFunc(func(_ context.Context, from string, req *wire.Request, out []byte) []byte {
		require.Equal(t, "a", from)
		got = req.Value // must not alias the caller's buffer
		return wire.AppendBytesResult(out, req.ID, req.Value)
	}))
	payload := []byte("hello")
	r, err := n.Endpoint("a").Call(context.Background(), "b", &wire.Request{ID: 5, Op: wire.OpPing, Value: payload})
	require.NoError(t, err)
	require.EqualValues(t, 5, r.ID)
	v, err := r.Bytes()
	require.NoError(t, err)
	require.Equal(t, "hello", string(v))
	copy(payload, "XXXXX")
	require.Equal(t, "hello", string(got), "the callee has its own copy")

	_, err = ping(t, n.Endpoint("a"), "nobody", "x")
	require.ErrorIs(t, err, memnet.ErrNoHandler)
}

func TestPartitionAndHeal(t *testing.T) {
	n := memnet.New(1)
	for _, a := range []string{"a", "b", "c"} {
		n.Attach(a, &echo{})
	}
	n.Partition([]string{"a"}, []string{"b", "c"})
	_, err := ping(t, n.Endpoint("a"), "b", "x")
	require.ErrorIs(t, err, memnet.ErrUnreachable)
	_, err = ping(t, n.Endpoint("b"), "c", "x")
	require.NoError(t, err)
	_, err = ping(t, n.Endpoint("client"), "a", "x")
	require.NoError(t, err, "an address in no group reaches everyone")
	n.Heal()
	_, err = ping(t, n.Endpoint("a"), "b", "x")
	require.NoError(t, err)
	n.Detach("c")
	_, err = ping(t, n.Endpoint("a"), "c", "x")
	require.ErrorIs(t, err, memnet.ErrNoHandler)
}

// Faults follow the seed: the same calls see the same faults, and the rates
// are about those asked for.
func TestSeededFaults(t *testing.T) {
	run := func(seed uint64) ([]bool, memnet.Stats, int64) {
		n := memnet.New(seed)
		e := &echo{}
		n.Attach("b", e)
		n.SetFaults(memnet.Faults{DropRequest: 0.1, DropResponse: 0.1, Duplicate: 0.1})
		var oks []bool
		for range 2000 {
			_, err := ping(t, n.Endpoint("a"), "b", "x")
			oks = append(oks, err == nil)
		}
		return oks, n.Stats(), e.served.Load()
	}
	a, sa, served := run(7)
	b, sb, _ := run(7)
	require.Equal(t, a, b, "same seed, same faults")
	require.Equal(t, sa, sb)
	c, _, _ := run(8)
	require.NotEqual(t, a, c)
	require.InDelta(t, 200, sa.DroppedRequests, 60)
	require.InDelta(t, 180, sa.DroppedResponses, 60)
	require.InDelta(t, 180, sa.Duplicated, 60)
	// The callee saw every request not lost, duplicates twice.
	require.EqualValues(t, 2000-sa.DroppedRequests+sa.Duplicated, served)
}

// Held calls are delivered only on Release, in a shuffled order; a held
// call whose context ends gives up without blocking Release.
func TestHoldAndRelease(t *testing.T) {
	n := memnet.New(3)
	var mu sync.Mutex
	var order []string
	n.Attach("b", memnet.HandlerFunc(func(_ context.Context, _ string, req *wire.Request, out []byte) []byte {
		mu.Lock()
		order = append(order, string(req.Value))
		mu.Unlock()
		return wire.AppendNilResult(out, req.ID)
	}))
	n.Hold("b")
	var wg sync.WaitGroup
	payloads := []string{"1", "2", "3", "4", "5", "6", "7", "8"}
	for _, p := range payloads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := ping(t, n.Endpoint("a"), "b", p)
			require.NoError(t, err)
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := n.Endpoint("a").Call(ctx, "b", &wire.Request{ID: 9, Op: wire.OpPing, Value: []byte("quitter")})
		gaveUp <- err
	}()
	wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer wcancel()
	require.NoError(t, n.WaitHeld(wctx, "b", len(payloads)+1), "calls did not reach the hold")
	mu.Lock()
	require.Empty(t, order, "nothing delivered while held")
	mu.Unlock()
	cancel()
	require.True(t, errors.Is(<-gaveUp, context.Canceled))
	n.Release("b")
	wg.Wait()
	require.ElementsMatch(t, payloads, order)
	require.NotEqual(t, payloads, order, "shuffled (seed 3)")
}
