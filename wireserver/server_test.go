package wireserver_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellisdb/trellis/internal/leakcheck"
	"github.com/trellisdb/trellis/wire"
	"github.com/trellisdb/trellis/wireserver"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// deadline bounds every wait; it only matters when something is wrong.
const deadline = 10 * time.Second

// echo answers PING with its payload (or nil) and anything else with bad
// request.
var echo = wireserver.HandlerFunc(func(_ context.Context, _ net.Addr, req *wire.Request, out []byte) []byte {
	switch req.Op {
	case wire.OpPing:
		if req.Value != nil {
			return wire.AppendBytesResult(out, req.ID, req.Value)
		}
		return wire.AppendNilResult(out, req.ID)
	}
	return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest, "%s not served", req.Op))
})

// start runs a server with cfg (Addr defaulted to loopback) and h, and
// returns it with a function that stops it and reports Run's error. The
// server is stopped at the end of the test too.
func start(t *testing.T, cfg wireserver.Config, h wireserver.Handler) (*wireserver.Server, func() error) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := wireserver.New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	}
	var stopped bool
	var runErr error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(deadline):
				t.Fatal("Run did not return after its context ended")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return s, stop
}

// modes runs f with the requests of a connection handled one at a time and
// several at once.
func modes(t *testing.T, f func(t *testing.T, concurrency int)) {
	for _, c := range []int{1, 8} {
		t.Run(fmt.Sprintf("concurrency=%d", c), func(t *testing.T) { f(t, c) })
	}
}

// peer is a raw protocol connection.
type peer struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *peer {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, deadline)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(deadline))
	return &peer{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (p *peer) write(b []byte) {
	p.t.Helper()
	if _, err := p.nc.Write(b); err != nil {
		p.t.Fatal(err)
	}
}

// read reads one response, or returns the read error.
func (p *peer) read() (wire.Response, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(p.br, hdr[:]); err != nil {
		return wire.Response{}, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(p.br, body); err != nil {
		return wire.Response{}, err
	}
	var r wire.Response
	if err := r.Decode(body, wire.Limits{}); err != nil {
		p.t.Fatalf("bad response: %v", err)
	}
	return r, nil
}

func (p *peer) mustRead() wire.Response {
	p.t.Helper()
	r, err := p.read()
	if err != nil {
		p.t.Fatalf("read: %v", err)
	}
	return r
}

// expectClosed checks that the server closed the connection.
func (p *peer) expectClosed() {
	p.t.Helper()
	if r, err := p.read(); err == nil {
		p.t.Fatalf("connection open, got response %+v", r)
	} else if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || isReset(err) {
		return
	} else {
		p.t.Fatalf("read: %v, want the connection closed", err)
	}
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

func (p *peer) ping(id uint64, payload string) {
	p.t.Helper()
	p.write((&wire.Request{ID: id, Op: wire.OpPing, Value: []byte(payload)}).AppendFrame(nil))
	r := p.mustRead()
	v, err := r.Bytes()
	if err != nil || r.ID != id || string(v) != payload {
		p.t.Fatalf("ping %d: %+v %q %v", id, r, v, err)
	}
}

func TestPipelinedInOrder(t *testing.T) {
	modes(t, func(t *testing.T, concurrency int) {
		var calls atomic.Int64
		h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
			calls.Add(1)
			return echo(ctx, from, req, out)
		})
		s, _ := start(t, wireserver.Config{Concurrency: concurrency}, h)
		p := dial(t, s.Addr())
		const n = 500
		var frames []byte
		for i := range n {
			frames = (&wire.Request{ID: uint64(i + 1), Op: wire.OpPing, Value: fmt.Appendf(nil, "p%d", i)}).AppendFrame(frames)
		}
		p.write(frames) // one write: the server finds them all buffered
		for i := range n {
			r := p.mustRead()
			v, err := r.Bytes()
			if err != nil || r.ID != uint64(i+1) || string(v) != fmt.Sprintf("p%d", i) {
				t.Fatalf("response %d: id %d %q %v", i, r.ID, v, err)
			}
		}
		if calls.Load() != n {
			t.Fatalf("%d handler calls, want %d", calls.Load(), n)
		}
	})
}

func TestHostileFrames(t *testing.T) {
	modes(t, func(t *testing.T, concurrency int) {
		s, _ := start(t, wireserver.Config{MaxFrame: 1 << 20, Concurrency: concurrency}, echo)

		t.Run("4 GiB length", func(t *testing.T) {
			p := dial(t, s.Addr())
			p.write([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
			r := p.mustRead()
			if r.ID != 0 || r.Code != wire.CodeTooLarge {
				t.Fatalf("response %+v, want too large with id 0", r)
			}
			p.expectClosed()
		})
		t.Run("above MaxFrame", func(t *testing.T) {
			p := dial(t, s.Addr())
			p.ping(1, "before")
			p.write(binary.BigEndian.AppendUint32(nil, 1<<20+1))
			if r := p.mustRead(); r.ID != 0 || r.Code != wire.CodeTooLarge {
				t.Fatalf("response %+v, want too large with id 0", r)
			}
			p.expectClosed()
		})
		t.Run("garbage body", func(t *testing.T) {
			p := dial(t, s.Addr())
			for _, body := range [][]byte{
				{0xc1, 0xc1, 0xc1}, // not msgpack
				{0x94, 0x07, 0x03, 0x80, 0xc6, 0x7f, 0xff, 0xff, 0xff}, // a 2 GiB key in 9 bytes
				{},                       // empty body
				{0x93, 0x09, 0xc8, 0x80}, // op not a small uint
				(&wire.Request{ID: 5, Op: 200}).AppendFrame(nil)[4:], // unknown op
			} {
				p.write(append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...))
				if r := p.mustRead(); r.Code != wire.CodeBadRequest {
					t.Fatalf("body %x: response %+v, want bad request", body, r)
				}
			}
			p.ping(6, "still open")
		})
		t.Run("unknown op keeps its id", func(t *testing.T) {
			p := dial(t, s.Addr())
			p.write((&wire.Request{ID: 77, Op: 200}).AppendFrame(nil))
			if r := p.mustRead(); r.ID != 77 || r.Code != wire.CodeBadRequest {
				t.Fatalf("response %+v", r)
			}
		})
		t.Run("truncated", func(t *testing.T) {
			p := dial(t, s.Addr())
			frame := (&wire.Request{ID: 1, Op: wire.OpPing, Value: []byte("0123456789")}).AppendFrame(nil)
			p.write(frame[:len(frame)-4])
			_ = p.nc.(*net.TCPConn).CloseWrite()
			p.expectClosed()
			dial(t, s.Addr()).ping(2, "server fine")
		})
		t.Run("announced but not sent", func(t *testing.T) {
			// 1 MiB announced, 10 bytes sent: the server waits for the rest
			// without holding the whole frame; the next connection is served.
			p := dial(t, s.Addr())
			p.write(append(binary.BigEndian.AppendUint32(nil, 1<<20), make([]byte, 10)...))
			dial(t, s.Addr()).ping(3, "others served")
		})
	})
}

func TestMaxConns(t *testing.T) {
	s, _ := start(t, wireserver.Config{MaxConns: 2}, echo)
	a, b := dial(t, s.Addr()), dial(t, s.Addr())
	a.ping(1, "a") // both are being served once they answered
	b.ping(2, "b")

	c := dial(t, s.Addr())
	r := c.mustRead()
	if r.ID != 0 || r.Code != wire.CodeUnavailable {
		t.Fatalf("third connection: %+v, want unavailable with id 0", r)
	}
	c.expectClosed()
	a.ping(3, "a still served")

	// Once a connection ends, its slot is free again.
	_ = a.nc.Close()
	awaitSlot(t, s.Addr())
}

// awaitSlot waits until a server at MaxConns serves a new connection: it
// notices a connection's end asynchronously, so retry until it has, each
// attempt answered.
func awaitSlot(t *testing.T, addr string) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		d := dial(t, addr)
		d.write((&wire.Request{ID: 9, Op: wire.OpPing}).AppendFrame(nil))
		r := d.mustRead()
		if r.Code == wire.CodeOK && r.ID == 9 {
			return
		}
		if r.Code != wire.CodeUnavailable || time.Now().After(end) {
			t.Fatalf("after a close: %+v", r)
		}
		_ = d.nc.Close()
	}
}

func TestStopClosesConnectionsAndCancelsHandlers(t *testing.T) {
	entered := make(chan struct{})
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		if req.Op == wire.OpStats { // blocks until the server stops
			close(entered)
			<-ctx.Done()
			return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeUnavailable, "stopping"))
		}
		return echo(ctx, from, req, out)
	})
	s, stop := start(t, wireserver.Config{}, h)
	idle := dial(t, s.Addr())
	idle.ping(1, "x")
	busy := dial(t, s.Addr())
	busy.write((&wire.Request{ID: 2, Op: wire.OpStats}).AppendFrame(nil))
	<-entered

	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	idle.expectClosed()
	// The blocked handler's answer may or may not have been written before
	// the connection closed; either way the connection ends.
	for {
		if _, err := busy.read(); err != nil {
			break
		}
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), deadline); err == nil {
		t.Fatal("the listener still accepts")
	}
}

func TestIdleTimeout(t *testing.T) {
	modes(t, func(t *testing.T, concurrency int) {
		s, _ := start(t, wireserver.Config{IdleTimeout: 50 * time.Millisecond, Concurrency: concurrency}, echo)
		p := dial(t, s.Addr())
		p.ping(1, "x")
		p.expectClosed() // nothing sent: closed after the timeout
	})
}

func TestHandlerFailures(t *testing.T) {
	modes(t, func(t *testing.T, concurrency int) {
		h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
			switch string(req.Value) {
			case "panic":
				out = append(out, 1, 2, 3) // a partial frame, then a panic
				panic("boom")
			case "nothing":
				return out
			case "two":
				return wire.AppendNilResult(wire.AppendNilResult(out, req.ID), req.ID)
			}
			return echo(ctx, from, req, out)
		})
		s, _ := start(t, wireserver.Config{Concurrency: concurrency}, h)
		p := dial(t, s.Addr())
		var frames []byte
		for i, v := range []string{"a", "panic", "b", "nothing", "two", "c"} {
			frames = (&wire.Request{ID: uint64(i + 1), Op: wire.OpPing, Value: []byte(v)}).AppendFrame(frames)
		}
		p.write(frames)
		for i, want := range []wire.Code{wire.CodeOK, wire.CodeInternal, wire.CodeOK, wire.CodeInternal, wire.CodeInternal, wire.CodeOK} {
			if r := p.mustRead(); r.ID != uint64(i+1) || r.Code != want {
				t.Fatalf("response %d: %+v, want code %s", i+1, r, want)
			}
		}
	})
}

func TestConfig(t *testing.T) {
	for name, cfg := range map[string]wireserver.Config{
		"no addr":        {},
		"negative conns": {Addr: "x:1", MaxConns: -1},
		"negative frame": {Addr: "x:1", MaxFrame: -1},
		"negative conc":  {Addr: "x:1", Concurrency: -1},
		"huge frame":     {Addr: "x:1", MaxFrame: 1 << 33},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := wireserver.New(cfg, echo); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := wireserver.New(wireserver.Config{Addr: "127.0.0.1:0"}, nil); err == nil {
		t.Error("New accepted a nil handler")
	}
	s, err := wireserver.New(wireserver.Config{Addr: "127.0.0.1:0"}, echo)
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != "" {
		t.Errorf("Addr before Run: %q", s.Addr())
	}
	// Listening on a taken address fails.
	busy, _ := start(t, wireserver.Config{}, echo)
	s, err = wireserver.New(wireserver.Config{Addr: busy.Addr()}, echo)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("Run on a taken address succeeded")
	}
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}
