package kvs

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/internal/wiretest"
	"github.com/trellisdb/trellis/wire"
)

// Tests of the event loops' connections to peers (Loop), through a fake
// cluster whose ServeOnLoop sends each write's key to a peer as a PING and
// answers what the peer answered.

// peerStub is a fake peer that echoes each request's value (a PING's; a
// HELLO's client name) while answering is on, and otherwise reads and never
// answers; received gets one value per request read.
type peerStub struct {
	*wiretest.Peer
	answering atomic.Bool
	received  chan struct{}
}

func newPeerStub(t *testing.T, answering bool) *peerStub {
	p := &peerStub{received: make(chan struct{}, 1<<12)}
	p.answering.Store(answering)
	p.Peer = wiretest.NewPeer(t, func(req *wire.Request) []byte {
		p.received <- struct{}{}
		if !p.answering.Load() {
			return nil
		}
		return wire.AppendBytesResult(nil, req.ID, req.Value)
	})
	return p
}

// startPingCluster starts a cluster node whose writes are served on the
// loop: each write is applied, then its key sent to addr as a PING with
// timeout; the write answers the store's response if the PING's echo came
// back, else the error.
func startPingCluster(t *testing.T, addr string, timeout time.Duration) *testNode {
	store, err := NewStore(StoreConfig{})
	require.NoError(t, err)
	fc := &fakeCluster{store: store}
	fc.onLoop = func(req *wire.Request, loop Loop, complete func([]byte)) bool {
		if !req.Op.IsWrite() {
			return false
		}
		frame, _ := store.Exec(req, nil)
		id, key := req.ID, string(req.Key)
		loop.Send(addr, &wire.Request{Op: wire.OpPing, Value: req.Key}, timeout, func(r *wire.Response, err error) {
			if err == nil {
				var echo []byte
				if echo, err = r.Bytes(); err == nil && string(echo) != key {
					err = fmt.Errorf("echo %q for %q", echo, key)
				}
			}
			if err != nil {
				frame = wire.AppendError(nil, id, err)
			}
			complete(frame)
		})
		return true
	}
	srv, err := NewServer(store, ServerConfig{Addr: "127.0.0.1:0", RESPAddr: AddrOff, Cluster: fc})
	require.NoError(t, err)
	return runServer(t, srv)
}

// sendSets writes n pipelined SETs of mine:0 ... with ids 1 to n, each
// followed by a PING with id 1000+i (answered at once, in its turn).
func sendSets(t *testing.T, c net.Conn, n int) {
	var b []byte
	for i := range n {
		key := []byte(fmt.Sprintf("mine:%d", i))
		b = (&wire.Request{ID: uint64(i + 1), Op: wire.OpSet, Key: key, Value: key}).AppendFrame(b)
		b = (&wire.Request{ID: uint64(1000 + i), Op: wire.OpPing}).AppendFrame(b)
	}
	_, err := c.Write(b)
	require.NoError(t, err)
}

func TestLoopPeerCallsInOrder(t *testing.T) {
	peer := newPeerStub(t, true)
	n := startPingCluster(t, peer.Addr(), 10*time.Second)
	c := dialNative(t, n.srv.Addr())
	const sets = 200
	sendSets(t, c, sets)
	for i := range sets {
		r := readResponse(t, c)
		require.EqualValues(t, i+1, r.ID)
		require.NoError(t, r.Err())
		r = readResponse(t, c)
		require.EqualValues(t, 1000+i, r.ID)
	}
	require.EqualValues(t, 1, peer.Accepts.Load(), "one connection per loop and peer")
}

func TestLoopPeerTimeoutAndBacklog(t *testing.T) {
	// The connection's HELLO and two calls; restored after the server's
	// cleanup (registered later, run earlier).
	old := maxPeerCalls
	t.Cleanup(func() { maxPeerCalls = old })
	maxPeerCalls = 3
	peer := newPeerStub(t, false)
	const timeout = 200 * time.Millisecond
	n := startPingCluster(t, peer.Addr(), timeout)
	c := dialNative(t, n.srv.Addr())
	began := time.Now()
	sendSets(t, c, 4)
	// The first two wait for a response that never comes; the other two
	// find the connection full and fail at once, but answer in their turn.
	for i, want := range []error{wire.ErrTimeout, wire.ErrTimeout, wire.ErrUnavailable, wire.ErrUnavailable} {
		r := readResponse(t, c)
		require.EqualValues(t, i+1, r.ID)
		require.ErrorIs(t, r.Err(), want, "write %d", i+1)
		require.EqualValues(t, 1000+i, readResponse(t, c).ID)
	}
	require.GreaterOrEqual(t, time.Since(began), timeout)

	// The connection that timed out was closed: the next call opens
	// another, which the peer now answers.
	peer.answering.Store(true)
	sendSets(t, c, 1)
	require.NoError(t, readResponse(t, c).Err())
	require.EqualValues(t, 2, peer.Accepts.Load())
}

func TestLoopPeerConnectionLost(t *testing.T) {
	peer := newPeerStub(t, false)
	n := startPingCluster(t, peer.Addr(), time.Minute)
	c := dialNative(t, n.srv.Addr())
	sendSets(t, c, 3)
	for range 1 + 3 { // the HELLO, the calls
		select {
		case <-peer.received:
		case <-time.After(10 * time.Second):
			t.Fatal("the peer got no call")
		}
	}
	peer.DropConns()
	for i := range 3 {
		r := readResponse(t, c)
		require.EqualValues(t, i+1, r.ID)
		require.ErrorContains(t, r.Err(), ErrPeerLost.Error())
		readResponse(t, c)
	}
}

func TestLoopPeerUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	n := startPingCluster(t, addr, time.Minute)
	c := dialNative(t, n.srv.Addr())
	sendSets(t, c, 2)
	for i := range 2 {
		r := readResponse(t, c)
		require.EqualValues(t, i+1, r.ID)
		require.ErrorIs(t, r.Err(), wire.ErrUnavailable)
		readResponse(t, c)
	}
}

// A completion that comes from another goroutine through Execute takes its
// turn among the loop's replies.
func TestLoopExecuteCompletes(t *testing.T) {
	store, err := NewStore(StoreConfig{})
	require.NoError(t, err)
	fc := &fakeCluster{store: store}
	var wg sync.WaitGroup
	defer wg.Wait()
	fc.onLoop = func(req *wire.Request, loop Loop, complete func([]byte)) bool {
		frame, _ := store.Exec(req, nil)
		wg.Go(func() { loop.Execute(func() { complete(frame) }) })
		return true
	}
	srv, err := NewServer(store, ServerConfig{Addr: "127.0.0.1:0", RESPAddr: AddrOff, Cluster: fc})
	require.NoError(t, err)
	n := runServer(t, srv)
	c := dialNative(t, n.srv.Addr())
	sendSets(t, c, 50)
	for i := range 50 {
		r := readResponse(t, c)
		require.EqualValues(t, i+1, r.ID)
		require.NoError(t, r.Err())
		require.EqualValues(t, 1000+i, readResponse(t, c).ID)
	}
}
