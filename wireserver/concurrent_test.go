package wireserver_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/trellisdb/trellis/wire"
	"github.com/trellisdb/trellis/wireserver"
)

// recv returns the next value of ch, or fails the test after deadline.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(deadline):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// payload is the PING payload of request id in these tests.
func payload(id uint64) string { return fmt.Sprintf("p%d", id) }

// pings returns the frames of PING requests first..last, each carrying
// payload(id).
func pings(first, last uint64) []byte {
	var b []byte
	for id := first; id <= last; id++ {
		b = (&wire.Request{ID: id, Op: wire.OpPing, Value: []byte(payload(id))}).AppendFrame(b)
	}
	return b
}

// expectPing reads the answer to a PING from pings.
func (p *peer) expectPing(id uint64) {
	p.t.Helper()
	r := p.mustRead()
	if v, err := r.Bytes(); err != nil || r.ID != id || string(v) != payload(id) {
		p.t.Fatalf("got response %d %q (%v), want %d %q", r.ID, v, err, id, payload(id))
	}
}

// gates returns a channel per request id 0..n, for handlers to wait on.
func gates(n int) []chan struct{} {
	g := make([]chan struct{}, n+1)
	for i := range g {
		g[i] = make(chan struct{})
	}
	return g
}

// wait blocks until gate is closed or ctx ends.
func wait(ctx context.Context, gate <-chan struct{}) {
	select {
	case <-gate:
	case <-ctx.Done():
	}
}

func TestConcurrentResponsesInRequestOrder(t *testing.T) {
	const n = 8
	gate := gates(n)
	entered, finished := make(chan uint64, n), make(chan uint64, n)
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		entered <- req.ID
		wait(ctx, gate[req.ID])
		out = echo(ctx, from, req, out)
		finished <- req.ID
		return out
	})
	s, _ := start(t, wireserver.Config{Concurrency: n}, h)
	p := dial(t, s.Addr())
	p.write(pings(1, n))
	for range n {
		recv(t, entered, "every handler to start")
	}
	for id := uint64(n); id >= 1; id-- { // the last request finishes first
		close(gate[id])
		if got := recv(t, finished, "a handler to finish"); got != id {
			t.Fatalf("handler %d finished, want %d", got, id)
		}
	}
	for id := uint64(1); id <= n; id++ {
		p.expectPing(id)
	}
}

func TestConcurrentLimit(t *testing.T) {
	const limit, n = 4, 16
	gate := gates(n)
	entered := make(chan uint64, n)
	var running, peak atomic.Int64
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		r := running.Add(1)
		for {
			if p := peak.Load(); r <= p || peak.CompareAndSwap(p, r) {
				break
			}
		}
		entered <- req.ID
		wait(ctx, gate[req.ID])
		running.Add(-1)
		return echo(ctx, from, req, out)
	})
	s, _ := start(t, wireserver.Config{Concurrency: limit}, h)
	p := dial(t, s.Addr())
	p.write(pings(1, n)) // all of them at once
	first := map[uint64]bool{}
	for range limit {
		first[recv(t, entered, "a handler to start")] = true
	}
	for id := uint64(1); id <= limit; id++ {
		if !first[id] {
			t.Fatalf("requests %v started first, want 1 to %d", first, limit)
		}
	}
	// Releasing one request at a time, in order, lets exactly one more in.
	for id := uint64(1); id <= n; id++ {
		close(gate[id])
		if next := id + limit; next <= n {
			if got := recv(t, entered, "the next handler to start"); got != next {
				t.Fatalf("request %d started, want %d", got, next)
			}
		}
	}
	for id := uint64(1); id <= n; id++ {
		p.expectPing(id)
	}
	if got := peak.Load(); got != limit {
		t.Fatalf("%d handlers ran at once, want %d", got, limit)
	}
}

func TestConcurrentSlowFirstRequest(t *testing.T) {
	const n = 4
	slow := make(chan struct{})
	entered := make(chan uint64, n)
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		entered <- req.ID
		if req.ID == 1 {
			wait(ctx, slow)
		}
		return echo(ctx, from, req, out)
	})
	s, _ := start(t, wireserver.Config{Concurrency: n}, h)
	p := dial(t, s.Addr())
	p.write(pings(1, n))
	seen := map[uint64]bool{}
	for range n { // all handled while the first one blocks
		seen[recv(t, entered, "the requests after a slow one to be handled")] = true
	}
	if len(seen) != n {
		t.Fatalf("handlers entered for %v, want requests 1 to %d", seen, n)
	}
	close(slow)
	for id := uint64(1); id <= n; id++ {
		p.expectPing(id)
	}
}

func TestConcurrentHandlerPanic(t *testing.T) {
	const n = 4
	together := make(chan struct{})
	entered := make(chan struct{}, n)
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		entered <- struct{}{}
		wait(ctx, together)
		if string(req.Value) == "panic" {
			out = append(out, 1, 2, 3) // a partial frame, then a panic
			panic("boom")
		}
		return echo(ctx, from, req, out)
	})
	s, _ := start(t, wireserver.Config{Concurrency: n}, h)
	p := dial(t, s.Addr())
	values := []string{"a", "panic", "b", "c"}
	var frames []byte
	for i, v := range values {
		frames = (&wire.Request{ID: uint64(i + 1), Op: wire.OpPing, Value: []byte(v)}).AppendFrame(frames)
	}
	p.write(frames)
	for range n { // all in flight before any answers
		recv(t, entered, "every handler to start")
	}
	close(together)
	for i, v := range values {
		r := p.mustRead()
		if r.ID != uint64(i+1) {
			t.Fatalf("response %d has id %d", i+1, r.ID)
		}
		if v == "panic" {
			if r.Code != wire.CodeInternal {
				t.Fatalf("the panicking request got %+v, want an internal error", r)
			}
			continue
		}
		if got, err := r.Bytes(); err != nil || string(got) != v {
			t.Fatalf("request %d (%s): %q %v", i+1, v, got, err)
		}
	}
	p.ping(9, "still open")
}

func TestConcurrentStopWaitsForHandlers(t *testing.T) {
	const n = 4
	entered, cancelled := make(chan struct{}, n), make(chan struct{}, n)
	returned := make(chan uint64, n)
	finish := gates(n)
	h := wireserver.HandlerFunc(func(ctx context.Context, _ net.Addr, req *wire.Request, out []byte) []byte {
		entered <- struct{}{}
		<-ctx.Done()
		cancelled <- struct{}{}
		<-finish[req.ID] // the handler outlives its context
		returned <- req.ID
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeUnavailable, "stopping"))
	})
	s, err := wireserver.New(wireserver.Config{Addr: "127.0.0.1:0", Concurrency: n}, h)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var runErr error
	ran := make(chan struct{})
	go func() { runErr = s.Run(ctx); close(ran) }()
	finished := 0 // handlers let go
	// On failure too, let the handlers and Run end.
	t.Cleanup(func() {
		cancel()
		for id := finished + 1; id <= n; id++ {
			close(finish[id])
		}
		<-ran
	})
	<-s.Ready()
	p := dial(t, s.Addr())
	p.write(pings(1, n))
	for range n {
		recv(t, entered, "every handler to start")
	}

	cancel()
	for range n {
		recv(t, cancelled, "every handler's context to end")
	}
	for id := uint64(1); id <= n; id++ { // one at a time, Run waiting for the others
		select {
		case <-ran:
			t.Fatalf("Run returned while %d of its handlers were running", n-id+1)
		default:
		}
		finished++
		close(finish[id])
		recv(t, returned, "a handler to return")
	}
	recv(t, ran, "Run to return")
	if runErr != nil {
		t.Fatalf("Run: %v", runErr)
	}
	for { // whatever was written, the connection ends
		if _, err := p.read(); err != nil {
			break
		}
	}
}

func TestConcurrentPipelining(t *testing.T) {
	const n, conc = 1000, 64
	// Every tenth request waits for the handler of a later one to start, so
	// that handlers finish out of request order.
	started := gates(n + 5)
	var calls atomic.Int64
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		calls.Add(1)
		close(started[req.ID])
		if req.ID%10 == 0 && req.ID+5 <= n {
			wait(ctx, started[req.ID+5])
		}
		return echo(ctx, from, req, out)
	})
	s, _ := start(t, wireserver.Config{Concurrency: conc}, h)
	p := dial(t, s.Addr())
	// Payloads of up to 1 KiB: the answers cross flushAt several times.
	value := func(id uint64) []byte { return []byte(strings.Repeat("v", int(id%1024)) + payload(id)) }
	var frames []byte
	for id := uint64(1); id <= n; id++ {
		frames = (&wire.Request{ID: id, Op: wire.OpPing, Value: value(id)}).AppendFrame(frames)
	}
	written := make(chan error, 1)
	go func() { // a client that writes everything while it reads the answers
		_, err := p.nc.Write(frames)
		written <- err
	}()
	for id := uint64(1); id <= n; id++ {
		r := p.mustRead()
		if v, err := r.Bytes(); err != nil || r.ID != id || string(v) != string(value(id)) {
			t.Fatalf("response %d: id %d, %d bytes, %v", id, r.ID, len(v), err)
		}
	}
	if err := recv(t, written, "the client's write"); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != n {
		t.Fatalf("%d handler calls, want %d", calls.Load(), n)
	}
}

func TestConcurrentNotIdleWhileInFlight(t *testing.T) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		if string(req.Value) == "slow" {
			entered <- struct{}{}
			wait(ctx, release)
		}
		return echo(ctx, from, req, out)
	})
	s, _ := start(t, wireserver.Config{IdleTimeout: 50 * time.Millisecond, Concurrency: 4}, h)
	busy := dial(t, s.Addr())
	busy.write((&wire.Request{ID: 1, Op: wire.OpPing, Value: []byte("slow")}).AppendFrame(nil))
	recv(t, entered, "the slow request")

	// A connection opened after the slow request started times out: more
	// than IdleTimeout passes while the slow request is in flight.
	idle := dial(t, s.Addr())
	idle.ping(2, "x")
	idle.expectClosed()

	close(release)
	if r := busy.mustRead(); r.ID != 1 || r.Code != wire.CodeOK {
		t.Fatalf("slow request: %+v", r)
	}
	busy.ping(3, "still open")
	busy.expectClosed() // nothing in flight, nothing sent: idle
}

func TestConcurrentTooLargeAfterInFlight(t *testing.T) {
	const maxFrame = 1 << 10
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		if req.ID == 1 {
			entered <- struct{}{}
			wait(ctx, release)
		}
		return echo(ctx, from, req, out)
	})
	s, _ := start(t, wireserver.Config{MaxFrame: maxFrame, Concurrency: 4}, h)
	p := dial(t, s.Addr())
	p.write(binary.BigEndian.AppendUint32(pings(1, 2), maxFrame+1))
	recv(t, entered, "the first request")
	close(release)
	p.expectPing(1)
	p.expectPing(2)
	if r := p.mustRead(); r.ID != 0 || r.Code != wire.CodeTooLarge {
		t.Fatalf("response %+v, want too large with id 0", r)
	}
	p.expectClosed()
}

func TestConcurrentWriteFailure(t *testing.T) {
	big := make([]byte, 8<<20) // more than the socket buffers hold
	cancelled := make(chan struct{}, 1)
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		switch string(req.Value) {
		case "big":
			return wire.AppendBytesResult(out, req.ID, big)
		case "wait":
			<-ctx.Done()
			cancelled <- struct{}{}
			return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeUnavailable, "cancelled"))
		}
		return echo(ctx, from, req, out)
	})
	cfg := wireserver.Config{MaxConns: 1, IdleTimeout: 50 * time.Millisecond, Concurrency: 4}
	s, _ := start(t, cfg, h)
	p := dial(t, s.Addr())
	if err := p.nc.(*net.TCPConn).SetReadBuffer(4 << 10); err != nil {
		t.Fatal(err)
	}
	// The peer reads nothing: the big answer's write times out, which
	// cancels the other request's handler and closes the connection.
	p.write((&wire.Request{ID: 1, Op: wire.OpPing, Value: []byte("big")}).AppendFrame(nil))
	p.write((&wire.Request{ID: 2, Op: wire.OpPing, Value: []byte("wait")}).AppendFrame(nil))
	recv(t, cancelled, "the handler's context to end after the failed write")
	// The server let the connection go (draining what the kernel still
	// holds for it would take long through a 4 KiB window): its one slot
	// serves another.
	awaitSlot(t, s.Addr())
}

// TestConcurrentInline: an operation named by Config.Inline is handled by
// the reading goroutine, in arrival order, while other requests run on
// goroutines of their own; responses keep request order.
func TestConcurrentInline(t *testing.T) {
	slow := make(chan struct{})
	var reading atomic.Int32 // inline handlers running
	order := make(chan uint64, 8)
	h := wireserver.HandlerFunc(func(ctx context.Context, from net.Addr, req *wire.Request, out []byte) []byte {
		if req.Op == wire.OpPing {
			if reading.Add(1) != 1 {
				t.Errorf("two inline handlers at once")
			}
			order <- req.ID
			reading.Add(-1)
			return echo(ctx, from, req, out)
		}
		wait(ctx, slow) // the STATS request blocks
		return wire.AppendNilResult(out, req.ID)
	})
	s, _ := start(t, wireserver.Config{Concurrency: 4, Inline: func(op wire.Op) bool { return op == wire.OpPing }}, h)
	p := dial(t, s.Addr())
	b := (&wire.Request{ID: 1, Op: wire.OpStats}).AppendFrame(nil)
	b = append(b, pings(2, 4)...)
	p.write(b)
	for id := uint64(2); id <= 4; id++ { // handled while STATS blocks, in order
		if got := recv(t, order, "an inline request"); got != id {
			t.Fatalf("inline request %d handled before %d", got, id)
		}
	}
	close(slow)
	if r := p.mustRead(); r.ID != 1 {
		t.Fatalf("first response is %d, want 1", r.ID)
	}
	for id := uint64(2); id <= 4; id++ {
		p.expectPing(id)
	}
}
