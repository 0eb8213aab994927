package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/internal/wiretest"
	"github.com/trellisdb/trellis/wire"
)

// answerAll answers HELLO and PING with nil, every other request with the
// integer 1.
func answerAll(req *wire.Request) []byte {
	if req.Op == wire.OpHello || req.Op == wire.OpPing {
		return wire.AppendNilResult(nil, req.ID)
	}
	return wire.AppendIntResult(nil, req.ID, 1)
}

// outcome is what a Start callback received.
type outcome struct {
	code wire.Code
	err  error
}

// start calls tr.Start and returns a channel that receives its outcome.
func start(tr *cluster.TCPTransport, addr string, req *wire.Request, timeout time.Duration) <-chan outcome {
	ch := make(chan outcome, 2) // 2: a second call of done would show
	tr.Start(addr, req, timeout, func(r *wire.Response, err error) {
		if err != nil {
			ch <- outcome{err: err}
			return
		}
		ch <- outcome{code: r.Code}
	})
	return ch
}

// await returns the outcome on ch, failing the test if none comes in time.
func await(t *testing.T, ch <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-ch:
		return o
	case <-time.After(10 * time.Second):
		t.Fatal("no outcome")
		return outcome{}
	}
}

func TestTCPTransportStartPipelines(t *testing.T) {
	peer := wiretest.NewPeer(t, answerAll)
	tr := cluster.NewTCPTransport(client.Options{Name: "test"})
	defer tr.Close()

	const callers, calls = 8, 200
	var wg sync.WaitGroup
	var done atomic.Int32
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				req := wire.Request{Op: wire.OpReplicate, Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte("cell")}
				o := await(t, start(tr, peer.Addr(), &req, 5*time.Second))
				if o.err != nil || o.code != wire.CodeOK {
					t.Errorf("call %d: %+v", i, o)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	require.EqualValues(t, callers*calls, done.Load())
	require.EqualValues(t, 1, peer.Accepts.Load(), "every call on one stream")
}

func TestTCPTransportStartServerError(t *testing.T) {
	peer := wiretest.NewPeer(t, func(req *wire.Request) []byte {
		if req.Op == wire.OpReplicate {
			return wire.AppendError(nil, req.ID, &wire.Error{Code: wire.CodeWrongOwner, Msg: "newer", Epoch: 9})
		}
		return answerAll(req)
	})
	tr := cluster.NewTCPTransport(client.Options{})
	defer tr.Close()
	o := await(t, start(tr, peer.Addr(), &wire.Request{Op: wire.OpReplicate, Key: []byte("k")}, 5*time.Second))
	require.NoError(t, o.err)
	require.Equal(t, wire.CodeWrongOwner, o.code, "a server error is a response, not a transport error")
}

func TestTCPTransportStartTimesOut(t *testing.T) {
	silent := atomic.Bool{}
	silent.Store(true)
	peer := wiretest.NewPeer(t, func(req *wire.Request) []byte {
		if req.Op == wire.OpReplicate && silent.Load() {
			return nil
		}
		return answerAll(req)
	})
	tr := cluster.NewTCPTransport(client.Options{})
	defer tr.Close()
	req := wire.Request{Op: wire.OpReplicate, Key: []byte("k")}
	began := time.Now()
	o := await(t, start(tr, peer.Addr(), &req, 100*time.Millisecond))
	require.ErrorIs(t, o.err, wire.ErrTimeout)
	require.GreaterOrEqual(t, time.Since(began), 100*time.Millisecond)

	// The stream that timed out is gone: the next call dials a new one.
	silent.Store(false)
	o = await(t, start(tr, peer.Addr(), &req, 5*time.Second))
	require.NoError(t, o.err)
	require.EqualValues(t, 2, peer.Accepts.Load())
}

func TestTCPTransportStartSurvivesIdleDeadline(t *testing.T) {
	peer := wiretest.NewPeer(t, answerAll)
	tr := cluster.NewTCPTransport(client.Options{})
	defer tr.Close()
	req := wire.Request{Op: wire.OpReplicate, Key: []byte("k")}
	const timeout = 50 * time.Millisecond
	for range 3 {
		o := await(t, start(tr, peer.Addr(), &req, timeout))
		require.NoError(t, o.err)
		// Idle past the deadline armed by the call that answered: the
		// stream clears it rather than failing (and hanging up).
		require.Never(t, func() bool { return peer.Hangups.Load() > 0 }, 2*timeout, timeout/10)
	}
	require.EqualValues(t, 1, peer.Accepts.Load(), "an idle stream is kept")
}

func TestTCPTransportStartConnectionLost(t *testing.T) {
	silent := atomic.Bool{}
	peer := wiretest.NewPeer(t, func(req *wire.Request) []byte {
		if req.Op == wire.OpReplicate && silent.Load() {
			return nil
		}
		return answerAll(req)
	})
	tr := cluster.NewTCPTransport(client.Options{})
	defer tr.Close()
	req := wire.Request{Op: wire.OpReplicate, Key: []byte("k")}
	require.NoError(t, await(t, start(tr, peer.Addr(), &req, 5*time.Second)).err)

	silent.Store(true)
	pending := start(tr, peer.Addr(), &req, time.Minute)
	peer.DropConns()
	require.ErrorIs(t, await(t, pending).err, client.ErrConnLost)

	// The lost stream has left the transport: the next call dials anew.
	silent.Store(false)
	require.NoError(t, await(t, start(tr, peer.Addr(), &req, 5*time.Second)).err)
	require.EqualValues(t, 2, peer.Accepts.Load())
}

func TestTCPTransportStartUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	tr := cluster.NewTCPTransport(client.Options{})
	defer tr.Close()
	o := await(t, start(tr, addr, &wire.Request{Op: wire.OpReplicate, Key: []byte("k")}, 5*time.Second))
	require.ErrorIs(t, o.err, wire.ErrUnavailable)
}

func TestTCPTransportCloseFailsCalls(t *testing.T) {
	peer := wiretest.NewPeer(t, func(req *wire.Request) []byte {
		if req.Op == wire.OpReplicate {
			return nil
		}
		return answerAll(req)
	})
	tr := cluster.NewTCPTransport(client.Options{})
	req := wire.Request{Op: wire.OpReplicate, Key: []byte("k")}
	pending := start(tr, peer.Addr(), &req, time.Minute)
	require.NoError(t, tr.Close())
	require.ErrorIs(t, await(t, pending).err, client.ErrClosed)
	require.ErrorIs(t, await(t, start(tr, peer.Addr(), &req, time.Minute)).err, client.ErrClosed)
	_, err := tr.Call(context.Background(), peer.Addr(), &req)
	require.True(t, errors.Is(err, client.ErrClosed))
}

// TestQuorumWriteOverTCP writes with a quorum acknowledgement through real
// servers and transports: the write is acknowledged, and the replicas that
// acknowledged hold it at once.
func TestQuorumWriteOverTCP(t *testing.T) {
	nodes := startTCPCluster(t, 3)
	ctx := context.Background()
	c, err := client.Dial(ctx, nodes[0].srv.Addr(), client.Options{Conns: 1})
	require.NoError(t, err)
	defer c.Close()
	quorum := c.WithAck(client.AckQuorum)
	for i := range 100 {
		key := fmt.Sprintf("key:%d", i)
		require.NoError(t, quorum.Set(ctx, key, []byte(key)))
		held := 0
		for _, n := range nodes {
			if _, ok := n.store.Cell([]byte(key), nil); ok {
				held++
			}
		}
		require.GreaterOrEqual(t, held, 2, "key %s", key)
	}
	for _, n := range nodes {
		n.node.Wait()
	}
	for _, n := range nodes {
		require.Equal(t, 100, n.store.Len(), "node %d holds every key once the calls in flight are done", n.id)
	}
}
