package client

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/wire"
)

// conn is one pipelined connection. Callers append requests to buf under mu;
// the first caller to find no flush in progress writes everything buffered
// (its own request and any that arrive meanwhile), so concurrent requests
// share system calls without a writer goroutine. One reader goroutine matches
// responses to calls in order (the protocol answers in request order).
type conn struct {
	nc           net.Conn
	lim          wire.Limits
	writeTimeout time.Duration

	mu       sync.Mutex
	buf      []byte // frames not yet written
	spare    []byte // the previous write's buffer, reused
	flushing bool
	pending  callQueue // calls waiting for their response, in request order
	nextID   uint64
	err      error // first failure; the connection is unusable once set

	readerDone chan struct{}
}

// call is one request awaiting its response.
type call struct {
	id   uint64
	g    *group        // the group the call belongs to
	resp wire.Response // Result aliases buf
	buf  []byte
	err  error // transport error (the response is then meaningless)
}

// group is the calls one caller waits for together (one for a single call,
// all of a Batch's): the reader signals the group once, when its last call
// completes, so a pipelined batch costs its caller one wakeup, not one per
// request.
type group struct {
	calls   []*call
	pending atomic.Int32  // calls not yet completed
	state   atomic.Uint32 // groupWaiting, groupDone or groupAbandoned
	done    chan struct{} // receives once, when state becomes groupDone
}

const (
	groupWaiting uint32 = iota
	groupDone
	groupAbandoned
)

var (
	callPool  = sync.Pool{New: func() any { return &call{} }}
	groupPool = sync.Pool{New: func() any { return &group{done: make(chan struct{}, 1)} }}
)

// newGroup returns a waiting group of n fresh calls.
func newGroup(n int) *group {
	g := groupPool.Get().(*group)
	g.state.Store(groupWaiting)
	g.pending.Store(int32(n))
	for range n {
		cl := callPool.Get().(*call)
		cl.g, cl.err, cl.resp = g, nil, wire.Response{}
		g.calls = append(g.calls, cl)
	}
	return g
}

// release returns g and its calls to their pools. Only the group's owner
// calls it: its caller once it has read the results, or the reader for an
// abandoned group.
func (g *group) release() {
	for i, cl := range g.calls {
		if cap(cl.buf) > 64<<10 {
			cl.buf = nil
		}
		cl.g = nil
		callPool.Put(cl)
		g.calls[i] = nil
	}
	g.calls = g.calls[:0]
	groupPool.Put(g)
}

// release releases the single-call group cl belongs to (see group.release).
func (cl *call) release() { cl.g.release() }

// complete records that cl's response (or error) is in; the last call of a
// group signals it, or releases it if its caller gave up.
func (cl *call) complete() {
	g := cl.g
	if g.pending.Add(-1) != 0 {
		return
	}
	if g.state.CompareAndSwap(groupWaiting, groupDone) {
		g.done <- struct{}{}
		return
	}
	g.release() // abandoned by its caller
}

func newConn(nc net.Conn, lim wire.Limits, writeTimeout time.Duration) *conn {
	cn := &conn{nc: nc, lim: lim, writeTimeout: writeTimeout, readerDone: make(chan struct{})}
	go cn.readLoop()
	return cn
}

// send queues frames built by appendReqs (which receives the first request
// id to use and must use consecutive ids, one per call) and writes them.
// The calls are a group's, all of them or (DoAll) some.
func (cn *conn) send(ctx context.Context, calls []*call, appendReqs func(b []byte, firstID uint64) []byte) error {
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return err
	}
	first := cn.nextID
	for _, cl := range calls {
		cl.id = cn.nextID
		cn.nextID++
		cn.pending.push(cl)
	}
	cn.buf = appendReqs(cn.buf, first)
	if cn.flushing {
		cn.mu.Unlock()
		return nil // the flushing caller will write our frames too
	}
	cn.flushing = true
	cn.mu.Unlock()
	cn.flush(ctx)
	return nil
}

// sendReq sends req alone as the one call of calls (a single request, or
// one node's part of DoAll); req gets its wire id, and req.Opts are sent as
// they are.
func (cn *conn) sendReq(ctx context.Context, calls []*call, req *wire.Request) error {
	return cn.send(ctx, calls, func(b []byte, id uint64) []byte {
		req.ID = id
		return req.AppendFrame(b)
	})
}

// flush writes buffered frames until none are left. Only one caller flushes
// at a time. A write error breaks the connection: every pending call fails.
func (cn *conn) flush(ctx context.Context) {
	for {
		cn.mu.Lock()
		if len(cn.buf) == 0 || cn.err != nil {
			cn.flushing = false
			cn.mu.Unlock()
			return
		}
		out := cn.buf
		cn.buf = cn.spare[:0]
		cn.mu.Unlock()

		deadline := time.Now().Add(cn.writeTimeout)
		if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
		_ = cn.nc.SetWriteDeadline(deadline)
		_, err := cn.nc.Write(out)

		cn.mu.Lock()
		cn.spare = out[:0]
		cn.mu.Unlock()
		if err != nil {
			cn.fail(fmt.Errorf("%w: write: %w", ErrConnLost, err))
		}
	}
}

// wait blocks until every call of g has completed or ctx ends. If ctx ends
// first the group is abandoned (abandoned is true): the reader releases it
// when its last response comes, and the caller must not touch it again.
func (g *group) wait(ctx context.Context) (abandoned bool, err error) {
	select {
	case <-g.done:
		return false, nil
	case <-ctx.Done():
		if g.state.CompareAndSwap(groupWaiting, groupAbandoned) {
			return true, ctxErr(ctx)
		}
		<-g.done // the last response won the race
		return false, nil
	}
}

// ctxErr reports a context's end as ErrTimeout for deadlines (so callers can
// test one sentinel) while keeping the context error in the chain.
func ctxErr(ctx context.Context) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	}
	return ctx.Err()
}

// fail marks the connection broken with err, closes it and fails every
// pending call. Safe to call more than once.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.err != nil {
		cn.mu.Unlock()
		return
	}
	cn.err = err
	calls := cn.pending.drain()
	cn.mu.Unlock()
	_ = cn.nc.Close()
	for _, cl := range calls {
		cl.err = err
		cl.complete()
	}
}

func (cn *conn) close() {
	cn.fail(ErrClosed)
	<-cn.readerDone
}

func (cn *conn) broken() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err != nil
}

func (cn *conn) readLoop() {
	defer close(cn.readerDone)
	br := bufio.NewReaderSize(cn.nc, 64<<10)
	var hdr [wire.HeaderLen]byte
	var frame []byte
	maxFrame := cn.lim.MaxFrame
	if maxFrame <= 0 {
		maxFrame = wire.DefaultMaxFrame
	}
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			cn.fail(fmt.Errorf("%w: %w", ErrConnLost, err))
			return
		}
		size := int(binary.BigEndian.Uint32(hdr[:]))
		if size > maxFrame {
			cn.fail(fmt.Errorf("%w: response frame of %d bytes exceeds the limit of %d", ErrConnLost, size, maxFrame))
			return
		}
		if cap(frame) < size {
			frame = make([]byte, size)
		}
		frame = frame[:size]
		if _, err := io.ReadFull(br, frame); err != nil {
			cn.fail(fmt.Errorf("%w: %w", ErrConnLost, err))
			return
		}
		var r wire.Response
		decodeErr := r.Decode(frame, cn.lim)
		cn.mu.Lock()
		cl := cn.pending.pop()
		cn.mu.Unlock()
		switch {
		case cl == nil:
			// A response nobody asked for: typically the server's error for a
			// frame it could not parse, sent just before it closes.
			err := fmt.Errorf("%w: unsolicited response (code %s: %s)", ErrConnLost, r.Code, r.Msg)
			cn.fail(err)
			return
		case decodeErr != nil:
			cl.err = fmt.Errorf("%w: bad response: %w", ErrConnLost, decodeErr)
			cl.complete()
			cn.fail(cl.err)
			return
		case r.ID != cl.id:
			cl.err = fmt.Errorf("%w: response id %d, want %d", ErrConnLost, r.ID, cl.id)
			cl.complete()
			cn.fail(cl.err)
			return
		}
		// The frame buffer is reused for the next response: copy what the
		// caller will read.
		cl.buf = append(cl.buf[:0], r.Result...)
		r.Result = cl.buf
		cl.resp = r
		cl.complete()
	}
}

// callQueue is a FIFO of calls.
type callQueue struct {
	items []*call
	head  int
}

func (q *callQueue) push(c *call) {
	if q.head > 0 && q.head >= len(q.items)/2 {
		// Slide the live part to the front so a queue that never drains
		// completely does not grow without bound (amortised O(1)).
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	q.items = append(q.items, c)
}

func (q *callQueue) pop() *call {
	if q.head == len(q.items) {
		return nil
	}
	c := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	return c
}

func (q *callQueue) drain() []*call {
	out := append([]*call(nil), q.items[q.head:]...)
	clear(q.items)
	q.items, q.head = q.items[:0], 0
	return out
}
