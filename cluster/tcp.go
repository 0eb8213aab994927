package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/wire"
)

// TCPTransport reaches peers over the native protocol. It is safe for
// concurrent use.
//
// Call uses a pooled client per peer address, dialled on first use. Start
// (the replication of writes) uses one more connection per peer, a
// stream: the caller writes its request frame itself and returns, and the
// stream's reader hands each response to its callback. A write's
// REPLICATE calls thus need no goroutine of their own, and consecutive
// calls to a peer reach the same event loop there.
type TCPTransport struct {
	opts client.Options

	ctx    context.Context // ends at Close: stops dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // one goroutine per stream: its dial, then its reader

	mu      sync.Mutex // guards the fields below
	clients map[string]*client.Client
	streams map[string]*stream // live streams only: a failed one leaves
	closed  bool
}

// NewTCPTransport returns a transport whose connections use opts. A
// stream uses opts.Name, MaxFrame, WriteTimeout and Dial (not Conns).
func NewTCPTransport(opts client.Options) *TCPTransport {
	ctx, cancel := context.WithCancel(context.Background())
	return &TCPTransport{opts: opts, ctx: ctx, cancel: cancel,
		clients: map[string]*client.Client{}, streams: map[string]*stream{}}
}

// Call sends req to the node at addr.
func (t *TCPTransport) Call(ctx context.Context, addr string, req *wire.Request) (*wire.Response, error) {
	c, err := t.client(ctx, addr)
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, req)
}

func (t *TCPTransport) client(ctx context.Context, addr string) (*client.Client, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, client.ErrClosed
	}
	if c := t.clients[addr]; c != nil {
		t.mu.Unlock()
		return c, nil
	}
	t.mu.Unlock()
	c, err := client.Dial(ctx, addr, t.opts) // outside the lock: dialling may take a while
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return nil, client.ErrClosed
	}
	if old := t.clients[addr]; old != nil {
		c.Close() // another caller dialled first
		return old, nil
	}
	t.clients[addr] = c
	return c, nil
}

// Start sends req to the node at addr on the peer's stream and returns
// without waiting for the response (see AsyncTransport).
func (t *TCPTransport) Start(addr string, req *wire.Request, timeout time.Duration, done func(*wire.Response, error)) {
	s, err := t.stream(addr, timeout)
	if err != nil {
		done(nil, err)
		return
	}
	s.send(req, timeout, done)
}

// stream returns the live stream to addr, starting one (it dials in the
// background, within timeout) if there is none.
func (t *TCPTransport) stream(addr string, timeout time.Duration) (*stream, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, client.ErrClosed
	}
	if s := t.streams[addr]; s != nil {
		return s, nil
	}
	s := &stream{t: t, addr: addr, flushing: true} // the dialler flushes what queues meanwhile
	s.send(&wire.Request{Op: wire.OpHello, Int: client.ProtocolVersion, Value: []byte(t.opts.Name)}, timeout, s.helloDone)
	t.streams[addr] = s
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		s.run(timeout)
	}()
	return s, nil
}

// Close closes every connection. Calls in flight fail with
// client.ErrClosed.
func (t *TCPTransport) Close() error {
	t.mu.Lock()
	t.closed = true
	clients, streams := t.clients, t.streams
	t.clients, t.streams = map[string]*client.Client{}, map[string]*stream{}
	t.mu.Unlock()
	t.cancel()
	for _, c := range clients {
		c.Close()
	}
	for _, s := range streams {
		s.fail(client.ErrClosed)
	}
	t.wg.Wait()
	return nil
}

// stream is a pipelined connection to one peer. A caller appends its frame
// to buf under mu; the first to find no flush in progress writes what is
// buffered (its frame and any that arrive meanwhile), so concurrent calls
// share system calls without a writer goroutine. One goroutine dials, then
// reads the responses, which come in request order, and completes the
// calls. A stream that fails (dial, write, read, a response late past its
// call's timeout, Close) fails every call it holds and leaves the
// transport; the next call dials a new one.
type stream struct {
	t    *TCPTransport
	addr string

	mu       sync.Mutex // guards the fields below
	nc       net.Conn   // nil while dialling
	buf      []byte     // frames not yet written
	spare    []byte     // the previous write's buffer, reused
	flushing bool       // a caller or the dialler is writing buf
	pending  []streamCall
	head     int // pending[head:] await their responses
	nextID   uint64
	armed    bool  // a read deadline is set (see read)
	err      error // set once the stream failed

	writeDeadline time.Time // the connection's; only the flushing goroutine uses it
}

// streamCall is a call awaiting its response.
type streamCall struct {
	id       uint64
	deadline time.Time
	done     func(*wire.Response, error)
}

// send queues req's frame and writes it, unless a flush in progress will.
func (s *stream) send(req *wire.Request, timeout time.Duration, done func(*wire.Response, error)) {
	deadline := time.Now().Add(timeout)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		done(nil, err)
		return
	}
	r := *req
	r.ID = s.nextID
	s.nextID++
	s.buf = r.AppendFrame(s.buf)
	s.pending = append(s.pending, streamCall{id: r.ID, deadline: deadline, done: done})
	if !s.armed && s.nc != nil {
		s.armed = true
		_ = s.nc.SetReadDeadline(deadline)
	}
	if s.flushing {
		s.mu.Unlock()
		return
	}
	s.flushing = true
	s.mu.Unlock()
	s.flush()
}

// flush writes buffered frames until none are left. Only one goroutine
// flushes at a time.
func (s *stream) flush() {
	for {
		s.mu.Lock()
		if len(s.buf) == 0 || s.err != nil {
			s.flushing = false
			s.mu.Unlock()
			return
		}
		out := s.buf
		s.buf = s.spare[:0]
		s.mu.Unlock()

		// A write may block for between half the write timeout and all of
		// it: the deadline moves once per half timeout, not per write.
		if d := s.writeTimeout(); time.Now().Add(d / 2).After(s.writeDeadline) {
			s.writeDeadline = time.Now().Add(d)
			_ = s.nc.SetWriteDeadline(s.writeDeadline)
		}
		_, err := s.nc.Write(out)

		s.mu.Lock()
		s.spare = out[:0]
		s.mu.Unlock()
		if err != nil {
			s.fail(fmt.Errorf("%w: write to %s: %w", client.ErrConnLost, s.addr, err))
		}
	}
}

func (s *stream) writeTimeout() time.Duration {
	if d := s.t.opts.WriteTimeout; d > 0 {
		return d
	}
	return 10 * time.Second
}

// run dials, writes what was queued meanwhile, and reads responses until
// the stream fails.
func (s *stream) run(timeout time.Duration) {
	ctx, cancel := context.WithTimeout(s.t.ctx, timeout)
	dial := s.t.opts.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", s.addr)
	cancel()
	if err != nil {
		s.fail(fmt.Errorf("%w: dial %s: %w", wire.ErrUnavailable, s.addr, err))
		return
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	s.nc = nc
	if s.head < len(s.pending) {
		s.armed = true
		_ = nc.SetReadDeadline(s.pending[s.head].deadline)
	}
	s.mu.Unlock()
	s.flush()
	s.read(nc)
}

// read completes calls with the responses that arrive, in order. The read
// deadline is the oldest call's at most: it is set by the call that finds
// none set and moved on when it passes, so a call costs no timer.
func (s *stream) read(nc net.Conn) {
	maxFrame := s.t.opts.MaxFrame
	if maxFrame <= 0 {
		maxFrame = wire.DefaultMaxFrame
	}
	lim := wire.Limits{MaxFrame: maxFrame}
	buf := make([]byte, 0, 16<<10)
	need := wire.HeaderLen
	for {
		// Complete every call whose response is in.
		off := 0
		for {
			body, n, err := wire.SplitFrame(buf[off:], lim)
			if errors.Is(err, wire.ErrIncomplete) {
				need = n
				break
			}
			if err != nil {
				s.fail(fmt.Errorf("%w: from %s: %w", client.ErrConnLost, s.addr, err))
				return
			}
			off += n
			if err := s.complete(body, lim); err != nil {
				s.fail(err)
				return
			}
		}
		buf = buf[:copy(buf, buf[off:])]
		if need > cap(buf) {
			buf = append(make([]byte, 0, need), buf...)
		}
		n, err := nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if errors.Is(err, os.ErrDeadlineExceeded) {
			err = s.deadlinePassed()
		}
		if err != nil {
			s.fail(fmt.Errorf("%w: from %s: %w", client.ErrConnLost, s.addr, err))
			return
		}
	}
}

// complete hands the response in body to the oldest call.
func (s *stream) complete(body []byte, lim wire.Limits) error {
	var r wire.Response
	decodeErr := r.Decode(body, lim)
	s.mu.Lock()
	if s.head == len(s.pending) {
		s.mu.Unlock()
		return fmt.Errorf("%w: unsolicited response from %s (code %s: %s)", client.ErrConnLost, s.addr, r.Code, r.Msg)
	}
	cl := s.pending[s.head]
	s.pending[s.head] = streamCall{}
	if s.head++; s.head == len(s.pending) {
		s.pending, s.head = s.pending[:0], 0
	}
	s.mu.Unlock()
	switch {
	case decodeErr != nil:
		err := fmt.Errorf("%w: bad response from %s: %w", client.ErrConnLost, s.addr, decodeErr)
		cl.done(nil, err)
		return err
	case r.ID != cl.id:
		err := fmt.Errorf("%w: response id %d from %s, want %d", client.ErrConnLost, r.ID, s.addr, cl.id)
		cl.done(nil, err)
		return err
	}
	cl.done(&r, nil)
	return nil
}

// deadlinePassed handles a read deadline that passed: an error if the
// oldest call's has, else none, with the deadline moved to the oldest
// call's (or cleared).
func (s *stream) deadlinePassed() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.head == len(s.pending) {
		s.armed = false
		return s.nc.SetReadDeadline(time.Time{})
	}
	d := s.pending[s.head].deadline
	if !time.Now().Before(d) {
		return fmt.Errorf("%w: no response in time", wire.ErrTimeout)
	}
	return s.nc.SetReadDeadline(d)
}

// helloDone checks the answer to the stream's HELLO.
func (s *stream) helloDone(r *wire.Response, err error) {
	if err == nil {
		err = r.Err()
	}
	if err != nil {
		s.fail(fmt.Errorf("%w: hello to %s: %w", client.ErrConnLost, s.addr, err))
	}
}

// fail marks the stream failed with err, takes it out of the transport,
// closes its connection and fails every call it holds. Safe to call more
// than once.
func (s *stream) fail(err error) {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = err
	calls := s.pending[s.head:]
	s.pending, s.head = nil, 0
	nc := s.nc
	s.mu.Unlock()

	s.t.mu.Lock()
	if s.t.streams[s.addr] == s {
		delete(s.t.streams, s.addr)
	}
	s.t.mu.Unlock()
	if nc != nil {
		_ = nc.Close()
	}
	for _, cl := range calls {
		cl.done(nil, err)
	}
}
