package wireserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/wire"
)

// Handler answers the requests of a Server.
//
// Serve appends exactly one complete response frame for req to out (with
// wire.AppendError, wire.AppendBytesResult, wire.BeginResult and
// wire.EndFrame, ...) and returns the extended slice. It is called from many
// goroutines at once: for one connection, one request at a time in arrival
// order, or with Config.Concurrency above 1 up to that many requests at once,
// in any order. It may block; ctx is cancelled when the server stops (and,
// with Concurrency above 1, when the connection fails to write a response),
// and the server waits for Serve to return. req and the slices it holds are
// valid only during the call. from is the peer's address.
//
// A Serve that panics or appends no well-formed frame gets the request
// answered with an internal error in its place.
type Handler interface {
	Serve(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
	return f(ctx, from, req, out)
}

// Config configures a Server. The zero value of every optional field means
// its default.
type Config struct {
	// Addr is the TCP address to listen on, "host:port"; port 0 picks a free
	// port (Addr reports it once Ready). Required.
	Addr string
	// MaxConns is the most connections served at once; the next one is
	// answered "unavailable" and closed. Default 1000.
	MaxConns int
	// MaxFrame is the largest request body accepted, in bytes. Default
	// wire.DefaultMaxFrame (16 MiB).
	MaxFrame int
	// IdleTimeout closes a connection that sends no request, or accepts none
	// of its responses, for this long. Default 5 minutes; negative: never.
	IdleTimeout time.Duration
	// Concurrency is how many requests of one connection are handled at once
	// (each on a goroutine of its own). Responses still go out in request order
	// (the protocol promises it): a response waits for the ones before it.
	// Default 1: one at a time, in the connection's goroutine.
	Concurrency int
	// Inline, with Concurrency above 1, names the operations the reading
	// goroutine handles itself, without a goroutine of their own: quick
	// ones whose handler never blocks for long. nil: none.
	Inline func(op wire.Op) bool
	// Logger receives connection errors (Debug) and handler failures
	// (Error). Default: discard.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultMaxConns    = 1000
	DefaultIdleTimeout = 5 * time.Minute
)

// Validate reports a missing or unusable field.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("wireserver: Config.Addr is required")
	case c.MaxConns < 0:
		return fmt.Errorf("wireserver: Config.MaxConns %d is negative", c.MaxConns)
	case c.Concurrency < 0:
		return fmt.Errorf("wireserver: Config.Concurrency %d is negative", c.Concurrency)
	case c.MaxFrame < 0:
		return fmt.Errorf("wireserver: Config.MaxFrame %d is negative", c.MaxFrame)
	case uint64(c.MaxFrame) > 1<<32-1:
		return fmt.Errorf("wireserver: Config.MaxFrame %d exceeds a frame header's range", c.MaxFrame)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = wire.DefaultMaxFrame
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Server serves the native protocol with a Handler, one goroutine per
// connection (and, with Config.Concurrency above 1, one per request in
// flight). Its methods are safe for concurrent use; Run is called once.
type Server struct {
	cfg   Config
	lim   wire.Limits
	h     Handler
	log   *slog.Logger
	ready chan struct{}
	addr  string // the bound address, written before ready is closed
	ran   atomic.Bool

	mu       sync.Mutex // guards conns and stopping, and wg.Go against Run's wg.Wait
	conns    map[net.Conn]struct{}
	stopping bool
	wg       sync.WaitGroup // connection goroutines (each waits for its handler goroutines)
}

// New returns a Server for cfg that answers requests with h. It does not
// listen yet: Run does.
func New(cfg Config, h Handler) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("wireserver: nil Handler")
	}
	cfg = cfg.withDefaults()
	return &Server{
		cfg:   cfg,
		lim:   wire.Limits{MaxFrame: cfg.MaxFrame},
		h:     h,
		log:   cfg.Logger,
		ready: make(chan struct{}),
		conns: make(map[net.Conn]struct{}),
	}, nil
}

// Ready returns a channel closed once Run listens. It is never closed if
// Run fails to listen.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address Run listens on ("127.0.0.1:41234" for
// "127.0.0.1:0"), or "" before Ready.
func (s *Server) Addr() string {
	select {
	case <-s.ready:
		return s.addr
	default:
		return ""
	}
}

// Run listens on Config.Addr and serves connections until ctx ends. Then it
// closes the listener and every connection, cancels the handlers' context,
// waits for every connection goroutine, and returns nil. It returns an error
// if it cannot listen, if the listener fails for good, or if called twice.
func (s *Server) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("wireserver: Run called twice")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("wireserver: listen on %s: %w", s.cfg.Addr, err)
	}
	s.addr = ln.Addr().String()
	close(s.ready)

	hctx, cancel := context.WithCancel(ctx) // the handlers' context
	closed := make(chan struct{})
	acceptDone := make(chan struct{})
	go func() { // stops the accept loop when ctx ends
		defer close(closed)
		select {
		case <-ctx.Done():
		case <-acceptDone:
		}
		_ = ln.Close()
	}()
	err = s.accept(ctx, hctx, ln)
	close(acceptDone)
	<-closed

	s.mu.Lock()
	s.stopping = true
	for nc := range s.conns {
		_ = nc.Close()
	}
	s.mu.Unlock()
	cancel()
	s.wg.Wait()
	return err
}

// accept accepts connections until ctx ends or the listener fails for good.
func (s *Server) accept(ctx, hctx context.Context, ln net.Listener) error {
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("wireserver: listener on %s closed: %w", s.addr, err)
			}
			// Out of file descriptors, an aborted handshake, ...: wait, as
			// net/http does, rather than spin.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Warn("wireserver: accept failed", "addr", s.addr, "err", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		s.start(hctx, nc)
	}
}

// start serves nc on a new goroutine, or refuses it beyond MaxConns.
func (s *Server) start(ctx context.Context, nc net.Conn) {
	s.mu.Lock()
	stopping, full := s.stopping, len(s.conns) >= s.cfg.MaxConns
	if !stopping && !full {
		s.conns[nc] = struct{}{}
		s.wg.Go(func() {
			defer s.drop(nc)
			if s.cfg.Concurrency > 1 {
				s.serveConcurrent(ctx, nc)
			} else {
				s.serveConn(ctx, nc)
			}
		})
	}
	s.mu.Unlock()
	if full && !stopping {
		s.log.Debug("wireserver: too many connections", "peer", nc.RemoteAddr(), "max", s.cfg.MaxConns)
		// A fresh connection's send buffer is empty: this small write does
		// not block; the deadline is a guard.
		_ = nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = nc.Write(wire.AppendError(nil, 0, wire.Errorf(wire.CodeUnavailable,
			"too many connections (%d)", s.cfg.MaxConns)))
	}
	if full || stopping {
		_ = nc.Close()
	}
}

func (s *Server) drop(nc net.Conn) {
	_ = nc.Close()
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
}

const (
	readBufSize = 16 << 10
	// keepBuf: a body or response buffer that grew beyond this for one large
	// frame is released after it, not kept for the connection's life.
	keepBuf = 1 << 20
	// flushAt: queued responses are written once they reach this size even
	// if more requests are buffered.
	flushAt = 64 << 10
)

// serveConn reads, handles and answers nc's requests one at a time until it
// fails, the peer closes it, or the server stops.
func (s *Server) serveConn(ctx context.Context, nc net.Conn) {
	from := nc.RemoteAddr()
	br := bufio.NewReaderSize(nc, readBufSize)
	var (
		hdr  [wire.HeaderLen]byte
		body []byte
		out  []byte
		req  wire.Request
	)
	write := func() bool {
		if len(out) == 0 {
			return true
		}
		s.deadline(nc.SetWriteDeadline)
		_, err := nc.Write(out)
		if cap(out) > keepBuf {
			out = nil
		} else {
			out = out[:0]
		}
		if err != nil {
			s.log.Debug("wireserver: write failed", "peer", from, "err", err)
			return false
		}
		return true
	}
	for {
		if len(out) >= flushAt || !s.frameBuffered(br) {
			if !write() {
				return
			}
		}
		s.deadline(nc.SetReadDeadline)
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			s.readFailed(from, err, false)
			return
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if uint64(size) > uint64(s.cfg.MaxFrame) {
			s.log.Debug("wireserver: frame too large", "peer", from, "size", size, "max", s.cfg.MaxFrame)
			out = wire.AppendError(out, 0, wire.Errorf(wire.CodeTooLarge,
				"frame of %d bytes exceeds the limit of %d", size, s.cfg.MaxFrame))
			write()
			return
		}
		var err error
		if body, err = readBody(br, body, int(size)); err != nil {
			s.readFailed(from, err, true)
			return
		}
		if err := req.Decode(body, s.lim); err != nil {
			out = wire.AppendError(out, req.ID, err)
		} else {
			out = s.serve(ctx, from, &req, out)
		}
		if cap(body) > keepBuf {
			body = nil
		}
	}
}

// deadline sets a read or write deadline IdleTimeout from now, if enabled.
func (s *Server) deadline(set func(time.Time) error) {
	if s.cfg.IdleTimeout > 0 {
		_ = set(time.Now().Add(s.cfg.IdleTimeout))
	}
}

func (s *Server) readFailed(from net.Addr, err error, midFrame bool) {
	if errors.Is(err, io.EOF) && !midFrame {
		return // the peer closed between requests
	}
	if errors.Is(err, net.ErrClosed) {
		return // the server is stopping
	}
	s.log.Debug("wireserver: read failed", "peer", from, "err", err, "mid_frame", midFrame)
}

// frameBuffered reports whether br holds a complete frame (or a header that
// will be refused), so that reading the next request will not block.
func (s *Server) frameBuffered(br *bufio.Reader) bool {
	n := br.Buffered()
	if n < wire.HeaderLen {
		return false
	}
	b, _ := br.Peek(n)
	_, _, err := wire.SplitFrame(b, s.lim)
	return !errors.Is(err, wire.ErrIncomplete)
}

// readBody reads a body of size bytes into buf, growing it only as bytes
// arrive, so that a peer announcing a large frame and sending little costs
// little memory.
func readBody(r io.Reader, buf []byte, size int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(size-len(buf), max(cap(buf), 4096)))
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), size)])
		buf = buf[:len(buf)+n]
		if err != nil && len(buf) < size {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// serve calls the handler, replacing a panic or a malformed answer with an
// internal error so that the connection's responses stay in step.
func (s *Server) serve(ctx context.Context, from net.Addr, req *wire.Request, out []byte) (res []byte) {
	mark := len(out)
	id, op := req.ID, req.Op
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("wireserver: handler panicked", "op", op, "peer", from, "panic", p)
			res = wire.AppendError(out[:mark], id, wire.Errorf(wire.CodeInternal, "handler failed on %s", op))
		}
	}()
	res = s.h.Serve(ctx, from, req, out)
	if len(res) < mark || !oneFrame(res[mark:]) {
		s.log.Error("wireserver: handler did not append one response frame", "op", op, "peer", from)
		res = wire.AppendError(out[:mark], id, wire.Errorf(wire.CodeInternal, "handler failed on %s", op))
	}
	return res
}

// oneFrame reports whether b is exactly one frame.
func oneFrame(b []byte) bool {
	_, n, err := wire.SplitFrame(b, wire.Limits{MaxFrame: 1<<32 - 1})
	return err == nil && n == len(b)
}
