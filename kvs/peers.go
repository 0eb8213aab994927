package kvs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/trellisdb/trellis/wire"
)

// Loop is one event loop of a storage node's server, as a Cluster sees it
// while it serves a write there (Cluster.ServeOnLoop, ReplicateOnLoop).
// It reaches
// other storage nodes over connections that belong to the loop, so their
// answers are handled on it, with no goroutine in between. Send is called
// on the loop only; Execute from any goroutine.
type Loop interface {
	// Send sends req (which it does not keep) to the storage node at addr
	// over the loop's connection to it, opened on first use (and again
	// after one failed), and calls done on the loop, once: with the
	// response, valid until done returns, or with an error: wire.ErrTimeout
	// when no response came within timeout, ErrPeerLost when the connection
	// broke, wire.ErrUnavailable when it could not be opened or holds too
	// many calls. A connection that fails fails every call it holds. done
	// may run before Send returns. The request is written once the event
	// the loop is handling has been handled, together with the others sent
	// meanwhile.
	Send(addr string, req *wire.Request, timeout time.Duration, done func(*wire.Response, error))
	// Execute runs fn on the loop, later. fn does not run if the server
	// stops first.
	Execute(fn func())
}

// Bounds of one peer connection: a call beyond them fails at once with
// wire.ErrUnavailable (a peer that stopped reading must not make the node
// buffer without end).
var (
	maxPeerCalls = 1 << 16  // calls awaiting their responses
	maxPeerBytes = 64 << 20 // request bytes not yet written to the socket
)

// Sweep periods of the peer calls' deadlines: a tenth of the shortest call
// timeout seen, within these bounds (the idle period before any call).
const (
	minPeerSweep = time.Millisecond
	maxPeerSweep = 100 * time.Millisecond
)

// peerLoops is the server's event loops that may hold peer connections
// (those of either port). Its methods are safe for concurrent use.
type peerLoops struct {
	srv   *Server
	every atomic.Int64 // the sweep period (ns); 0 before any call

	mu    sync.Mutex // guards loops and list
	loops map[gnet.EventLoop]*loopPeers
	list  []*loopPeers // append-only
}

// of returns el's peer connections.
func (pl *peerLoops) of(el gnet.EventLoop) *loopPeers {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if lp := pl.loops[el]; lp != nil {
		return lp
	}
	if pl.loops == nil {
		pl.loops = map[gnet.EventLoop]*loopPeers{}
	}
	lp := &loopPeers{pl: pl, el: el, conns: map[string]*peerConn{}}
	pl.loops[el] = lp
	pl.list = append(pl.list, lp)
	return lp
}

// peerEvents is how a handler of either port hands the events of its
// loops' peer connections on: each method reports whether c is one.
type peerEvents struct{ srv *Server }

func (pe peerEvents) onOpen(c gnet.Conn) ([]byte, gnet.Action, bool) {
	pc, ok := c.Context().(*peerConn)
	if !ok {
		return nil, gnet.None, false
	}
	out, action := pc.opened(c)
	return out, action, true
}

func (pe peerEvents) onTraffic(c gnet.Conn) (gnet.Action, bool) {
	pc, ok := c.Context().(*peerConn)
	if !ok {
		return gnet.None, false
	}
	return pc.traffic(c, pe.srv.cfg.MaxFrame), true
}

func (pe peerEvents) onClose(c gnet.Conn, err error) bool {
	pc, ok := c.Context().(*peerConn)
	if ok {
		pc.closed(err)
	}
	return ok
}

// onTick has the loops sweep the deadlines of their calls to peers (the
// ticker is on for one engine of a cluster member).
func (pe peerEvents) onTick() (time.Duration, gnet.Action) {
	return pe.srv.peers.tick(), gnet.None
}

// tick runs on gnet's ticker goroutine: it has every loop with calls in
// flight sweep their deadlines, and returns the delay until the next tick.
func (pl *peerLoops) tick() time.Duration {
	pl.mu.Lock()
	list := pl.list
	pl.mu.Unlock()
	for _, lp := range list {
		if lp.inflight.Load() > 0 {
			lp.Execute(lp.sweep)
		}
	}
	if d := time.Duration(pl.every.Load()); d > 0 {
		return d
	}
	return maxPeerSweep
}

// noteTimeout makes the sweep period fit a call timeout of d.
func (pl *peerLoops) noteTimeout(d time.Duration) {
	d = min(max(d/10, minPeerSweep), maxPeerSweep)
	for {
		cur := pl.every.Load()
		if cur != 0 && time.Duration(cur) <= d {
			return
		}
		if pl.every.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// failAll fails the calls still held once the loops have stopped (those of
// connections still being opened: the open ones failed as they closed).
func (pl *peerLoops) failAll() {
	pl.mu.Lock()
	list := pl.list
	pl.mu.Unlock()
	err := fmt.Errorf("%w: the server is stopping", wire.ErrUnavailable)
	for _, lp := range list {
		for _, pc := range lp.conns {
			pc.fail(err)
		}
	}
}

// loopPeers is one event loop's connections to peers (Loop). Everything
// but inflight is owned by the loop.
type loopPeers struct {
	pl       *peerLoops
	el       gnet.EventLoop
	conns    map[string]*peerConn // by address: open, or being opened
	dirty    []*peerConn          // connections with frames to write
	spare    []*peerConn          // dirty's other buffer
	replies  []queuedReplies      // client connections with replies made ready
	flushing bool                 // in flush (which a failed write can reenter)
	inflight atomic.Int64         // calls awaiting responses, read by tick
}

// queuedReplies is a client connection whose reply queue has replies made
// ready since the loop last flushed.
type queuedReplies struct {
	c gnet.Conn
	q *replyQueue
}

var _ Loop = (*loopPeers)(nil)

// peerConn is a connection to a peer that belongs to one event loop, and
// the calls awaiting its responses, which come in request order.
type peerConn struct {
	lp     *loopPeers
	addr   string
	c      gnet.Conn  // nil while being opened
	out    []byte     // frames not yet written
	calls  []peerCall // calls[head:] await their responses, oldest first
	head   int
	nextID uint64
	need   int   // bytes needed before the next response is complete
	dirty  bool  // in lp.dirty
	err    error // set once failed; then it has left lp.conns
}

// peerCall is a call awaiting its response.
type peerCall struct {
	id       uint64
	deadline time.Time
	done     func(*wire.Response, error)
}

// Send implements Loop.
func (lp *loopPeers) Send(addr string, req *wire.Request, timeout time.Duration, done func(*wire.Response, error)) {
	pc := lp.conns[addr]
	if pc == nil {
		pc = lp.dial(addr, timeout)
	}
	pc.send(req, timeout, done)
}

// send queues req's frame on the connection (see Loop.Send).
func (pc *peerConn) send(req *wire.Request, timeout time.Duration, done func(*wire.Response, error)) {
	lp, addr := pc.lp, pc.addr
	pending := len(pc.out)
	if pc.c != nil {
		pending += pc.c.OutboundBuffered()
	}
	if len(pc.calls)-pc.head >= maxPeerCalls || pending >= maxPeerBytes {
		done(nil, fmt.Errorf("%w: the connection to %s holds %d calls and %d unsent bytes", wire.ErrUnavailable, addr, len(pc.calls)-pc.head, pending))
		return
	}
	lp.pl.noteTimeout(timeout)
	r := *req
	pc.nextID++
	r.ID = pc.nextID
	pc.out = r.AppendFrame(pc.out)
	pc.calls = append(pc.calls, peerCall{id: r.ID, deadline: time.Now().Add(timeout), done: done})
	lp.inflight.Add(1)
	if pc.c != nil && !pc.dirty {
		pc.dirty = true
		lp.dirty = append(lp.dirty, pc)
	}
}

// Execute implements Loop.
func (lp *loopPeers) Execute(fn func()) {
	_ = lp.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		fn()
		lp.flush()
		return nil
	}))
}

// dial starts opening a connection to addr, within timeout, that belongs
// to the loop; calls queue on it meanwhile.
func (lp *loopPeers) dial(addr string, timeout time.Duration) *peerConn {
	pc := &peerConn{lp: lp, addr: addr}
	lp.conns[addr] = pc
	// Greet the peer first, as clients should.
	pc.send(&wire.Request{Op: wire.OpHello, Int: ProtocolVersion, Value: []byte("trellis-peer")}, timeout, pc.helloDone)
	lp.pl.srv.goAsync(func(ctx context.Context) {
		if err := lp.open(ctx, pc, timeout); err != nil {
			lp.Execute(func() { pc.fail(err) })
		}
	})
	return pc
}

// open dials pc's address and hands the connection to the loop, which
// opens it (OnOpen: peerConn.opened). It runs on a goroutine of its own.
func (lp *loopPeers) open(ctx context.Context, pc *peerConn, timeout time.Duration) error {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", pc.addr)
	if err != nil {
		return fmt.Errorf("%w: dial %s: %w", wire.ErrUnavailable, pc.addr, err)
	}
	// Enroll duplicates the socket into the loop and closes nc.
	ch, err := lp.el.Enroll(gnet.NewContext(context.Background(), pc), nc)
	if err != nil {
		_ = nc.Close()
		return fmt.Errorf("%w: connecting to %s: %w", wire.ErrUnavailable, pc.addr, err)
	}
	select {
	case res := <-ch:
		if res.Err != nil {
			return fmt.Errorf("%w: connecting to %s: %w", wire.ErrUnavailable, pc.addr, res.Err)
		}
	case <-ctx.Done():
	}
	return nil
}

// ready makes the pending reply p of c's queue q ready with data, on the
// loop; the loop's next flush writes it (with the other replies that became
// ready meanwhile: the completions of a peer's batch of responses cost one
// write per client, not one each).
func (lp *loopPeers) ready(c gnet.Conn, q *replyQueue, p *reply, data []byte) {
	if q.closed {
		return
	}
	p.data, p.ready = data, true
	if !q.flushed {
		q.flushed = true
		lp.replies = append(lp.replies, queuedReplies{c, q})
	}
}

// flush writes the frames sent since the last flush, one write per
// connection, then the replies made ready.
func (lp *loopPeers) flush() {
	if lp.flushing {
		return // the flush under way writes what was added
	}
	lp.flushing = true
	defer func() { lp.flushing = false }()
	lp.flushPeers()
	for i := 0; i < len(lp.replies); i++ { // (a write that fails may queue more)
		r := lp.replies[i]
		lp.replies[i] = queuedReplies{}
		r.q.flushed = false
		if !r.q.closed {
			r.q.flush(r.c)
		}
	}
	lp.replies = lp.replies[:0]
}

func (lp *loopPeers) flushPeers() {
	for len(lp.dirty) > 0 {
		dirty := lp.dirty
		lp.dirty = lp.spare[:0]
		for i, pc := range dirty {
			dirty[i] = nil
			pc.dirty = false
			if pc.err != nil || len(pc.out) == 0 {
				continue
			}
			out := pc.out
			pc.out = out[:0]
			_, _ = pc.c.Write(out) // copies what the socket does not take; a failure closes c (OnClose)
			if cap(out) > maxPooledOut {
				pc.out = nil
			}
		}
		lp.spare = dirty[:0]
	}
}

// sweep fails each connection holding a call past its deadline.
func (lp *loopPeers) sweep() {
	now := time.Now()
	for _, pc := range lp.conns {
		for _, cl := range pc.calls[pc.head:] {
			if !now.Before(cl.deadline) {
				pc.fail(fmt.Errorf("%w: no response from %s in time", wire.ErrTimeout, pc.addr))
				break
			}
		}
	}
}

// opened is the connection's OnOpen: what was sent while it was being
// opened goes out first.
func (pc *peerConn) opened(c gnet.Conn) ([]byte, gnet.Action) {
	if pc.err != nil {
		return nil, gnet.Close // failed meanwhile (a deadline passed)
	}
	pc.c = c
	out := pc.out
	pc.out = nil
	if len(out) == 0 {
		return nil, gnet.None
	}
	return out, gnet.None
}

// traffic is the connection's OnTraffic: it completes the calls whose
// responses are in.
func (pc *peerConn) traffic(c gnet.Conn, maxFrame int) gnet.Action {
	if pc.err != nil {
		return gnet.Close // failed (a deadline passed): its close is on its way
	}
	if pc.need > c.InboundBuffered() {
		return gnet.None
	}
	buf, _ := c.Peek(-1)
	lim := wire.Limits{MaxFrame: maxFrame}
	off := 0
	pc.need = 0
	var err error
	for pc.err == nil {
		body, size, serr := wire.SplitFrame(buf[off:], lim)
		if errors.Is(serr, wire.ErrIncomplete) {
			pc.need = size
			break
		}
		if serr != nil {
			err = fmt.Errorf("%w: from %s: %w", ErrPeerLost, pc.addr, serr)
			break
		}
		off += size
		if err = pc.complete(body, lim); err != nil {
			break
		}
	}
	if off > 0 {
		_, _ = c.Discard(off)
	}
	if err != nil {
		pc.fail(err)
	}
	pc.lp.flush() // what the completed calls sent and answered
	if err != nil {
		return gnet.Close
	}
	return gnet.None
}

// complete hands the response in body to the oldest call.
func (pc *peerConn) complete(body []byte, lim wire.Limits) error {
	var r wire.Response
	decodeErr := r.Decode(body, lim)
	if pc.head == len(pc.calls) {
		return fmt.Errorf("%w: unsolicited response from %s (code %s: %s)", ErrPeerLost, pc.addr, r.Code, r.Msg)
	}
	cl := pc.calls[pc.head]
	pc.calls[pc.head] = peerCall{}
	pc.head++
	switch {
	case pc.head == len(pc.calls):
		pc.calls, pc.head = pc.calls[:0], 0
	case pc.head >= 1024 && 2*pc.head >= len(pc.calls):
		// Responses keep pace with requests, so the queue never empties:
		// move what is left to the front.
		n := copy(pc.calls, pc.calls[pc.head:])
		clear(pc.calls[n:])
		pc.calls, pc.head = pc.calls[:n], 0
	}
	pc.lp.inflight.Add(-1)
	var err error
	switch {
	case decodeErr != nil:
		err = fmt.Errorf("%w: bad response from %s: %w", ErrPeerLost, pc.addr, decodeErr)
	case r.ID != cl.id:
		err = fmt.Errorf("%w: response id %d from %s, want %d", ErrPeerLost, r.ID, pc.addr, cl.id)
	}
	if err != nil {
		cl.done(nil, err)
		return err
	}
	cl.done(&r, nil)
	return nil
}

// fail marks the connection failed with err, takes it out of its loop's
// set (the next call opens a new one), closes it and fails every call it
// holds. Safe to call more than once.
func (pc *peerConn) fail(err error) {
	if pc.err != nil {
		return
	}
	pc.err = err
	lp := pc.lp
	if lp.conns[pc.addr] == pc {
		delete(lp.conns, pc.addr)
	}
	calls := pc.calls[pc.head:]
	pc.calls, pc.head, pc.out = nil, 0, nil
	lp.inflight.Add(-int64(len(calls)))
	if pc.c != nil {
		_ = pc.c.Close() // later, on the loop; a no-op once it is closed
	}
	for _, cl := range calls {
		cl.done(nil, err)
	}
}

// helloDone checks the answer to the connection's HELLO.
func (pc *peerConn) helloDone(r *wire.Response, err error) {
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		pc.fail(fmt.Errorf("%w: hello to %s: %w", ErrPeerLost, pc.addr, err))
	}
}

// closed is the connection's OnClose.
func (pc *peerConn) closed(err error) {
	if err == nil {
		err = errors.New("closed")
	}
	pc.fail(fmt.Errorf("%w: %s: %w", ErrPeerLost, pc.addr, err))
	pc.lp.flush() // the replies its failed calls completed
}
