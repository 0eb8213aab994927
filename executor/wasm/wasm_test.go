package wasm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/trellisdb/trellis/executor/wasm"
)

// fakeHost is an in-memory wasm.Host: a map, an inbox, and records of what
// was sent and logged.
type fakeHost struct {
	inbox chan []byte

	mu   sync.Mutex
	kv   map[string][]byte
	sent []string // "to:msg"
	logs []string
}

func newFakeHost() *fakeHost {
	return &fakeHost{inbox: make(chan []byte, 16), kv: make(map[string][]byte)}
}

func (h *fakeHost) Get(_ context.Context, key []byte) ([]byte, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.kv[string(key)]
	return v, ok, nil
}

func (h *fakeHost) Put(_ context.Context, key, value []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(key) > 0 && key[0] == '!' {
		return errors.New("read-only key")
	}
	h.kv[string(key)] = value
	return nil
}

func (h *fakeHost) Send(_ context.Context, to string, msg []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent = append(h.sent, to+":"+string(msg))
	return nil
}

func (h *fakeHost) Recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-h.inbox:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *fakeHost) Log(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, msg)
}

func args(s ...string) [][]byte {
	a := make([][]byte, len(s))
	for i := range s {
		a[i] = []byte(s[i])
	}
	return a
}

func callCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestExamples(t *testing.T) {
	r := newRuntime(t, wasm.Config{})
	inc, sq := compile(t, r, incrementWasm), compile(t, r, squareWasm)
	for _, tc := range []struct {
		m       *wasm.Module
		in, out string
	}{
		{inc, "41", "42"}, {inc, "-1", "0"}, {sq, "7", "49"}, {sq, "-12", "144"},
	} {
		got, err := tc.m.Call(callCtx(t, 5*time.Second), nil, args(tc.in))
		if err != nil || string(got) != tc.out {
			t.Errorf("Call(%s) = %q, %v; want %s", tc.in, got, err, tc.out)
		}
	}
	_, err := inc.Call(callCtx(t, 5*time.Second), nil, args("forty-one"))
	if !errors.Is(err, wasm.ErrGuest) || !strings.Contains(err.Error(), "invalid syntax") {
		t.Errorf("Call(forty-one) error = %v, want ErrGuest with the parse error", err)
	}
	if _, err := inc.Call(callCtx(t, 5*time.Second), nil, nil); !errors.Is(err, wasm.ErrGuest) {
		t.Errorf("Call() error = %v, want ErrGuest", err)
	}
}

func TestWarmInstancesAreReused(t *testing.T) {
	r := newRuntime(t, wasm.Config{PoolSize: 1})
	m := compile(t, r, guestWasm)
	for want := 1; want <= 3; want++ {
		got, err := m.Call(callCtx(t, 5*time.Second), nil, args("calls"))
		if err != nil || string(got) != strconv.Itoa(want) {
			t.Fatalf("call %d: calls = %q, %v; want %d (the pooled instance)", want, got, err, want)
		}
	}
}

func TestConcurrentCalls(t *testing.T) {
	r := newRuntime(t, wasm.Config{PoolSize: 4})
	m := compile(t, r, incrementWasm)
	const goroutines, calls = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range calls {
				x := g*1000 + i
				got, err := m.Call(context.Background(), nil, args(strconv.Itoa(x)))
				if err != nil || string(got) != strconv.Itoa(x+1) {
					errs <- fmt.Errorf("increment(%d) = %q, %v", x, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// requireRecovers checks that m serves a normal call after a failure.
func requireRecovers(t *testing.T, m *wasm.Module) {
	t.Helper()
	got, err := m.Call(callCtx(t, 5*time.Second), nil, args("echo", "still", "here"))
	if err != nil || string(got) != "still,here" {
		t.Fatalf("call after failure = %q, %v; want \"still,here\"", got, err)
	}
}

func TestRunawayGuestStoppedAtDeadline(t *testing.T) {
	r := newRuntime(t, wasm.Config{PoolSize: 1})
	m := compile(t, r, guestWasm)
	for _, cmd := range []string{"loop", "sleep"} {
		t.Run(cmd, func(t *testing.T) {
			start := time.Now()
			_, err := m.Call(callCtx(t, 100*time.Millisecond), nil, args(cmd))
			if !errors.Is(err, wasm.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error = %v, want ErrTimeout wrapping DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("stopped after %v, deadline was 100ms", d)
			}
			requireRecovers(t, m)
		})
	}
}

func TestCanceledContext(t *testing.T) {
	r := newRuntime(t, wasm.Config{})
	m := compile(t, r, guestWasm)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Call(ctx, nil, args("echo")); !errors.Is(err, wasm.ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("Call on a canceled context = %v, want ErrTimeout wrapping Canceled", err)
	}
}

func TestRecvHonoursDeadline(t *testing.T) {
	r := newRuntime(t, wasm.Config{})
	m := compile(t, r, guestWasm)
	_, err := m.Call(callCtx(t, 50*time.Millisecond), newFakeHost(), args("recv"))
	if !errors.Is(err, wasm.ErrTimeout) {
		t.Fatalf("Recv with no message = %v, want ErrTimeout", err)
	}
	requireRecovers(t, m)
}

func TestTraps(t *testing.T) {
	r := newRuntime(t, wasm.Config{PoolSize: 1, MemoryLimit: 32 << 20})
	m := compile(t, r, guestWasm)
	for _, tc := range []struct{ cmd, stderr string }{
		{"oom", "out of memory"},
		{"panic", "panic: boom"},
		{"exit", "code 3"},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			_, err := m.Call(callCtx(t, 20*time.Second), nil, args(tc.cmd))
			if !errors.Is(err, wasm.ErrTrap) {
				t.Fatalf("error = %v, want ErrTrap", err)
			}
			if !strings.Contains(err.Error(), tc.stderr) {
				t.Errorf("error %q does not mention %q", err, tc.stderr)
			}
			requireRecovers(t, m)
		})
	}
}

// TestSandbox checks that a guest reaches neither the host's files nor its
// network, though both are there for the taking.
func TestSandbox(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		if c, err := ln.Accept(); err == nil {
			c.Close()
			t.Error("the guest connected to the host's listener")
		}
	}()

	r := newRuntime(t, wasm.Config{})
	m := compile(t, r, guestWasm)
	for _, a := range [][][]byte{
		args("readfile", secret),
		args("readfile", "/etc/passwd"),
		args("dial", ln.Addr().String()),
	} {
		got, err := m.Call(callCtx(t, 5*time.Second), nil, a)
		if !errors.Is(err, wasm.ErrGuest) {
			t.Errorf("%q = %q, %v; want the guest to fail with ErrGuest", a, got, err)
			continue
		}
		t.Logf("%q inside the sandbox: %v", a, err)
	}
	got, err := m.Call(callCtx(t, 5*time.Second), nil, args("env"))
	if err != nil || string(got) != "env=0 args=0" {
		t.Errorf("env = %q, %v; want no environment and no arguments", got, err)
	}
	ln.Close()
	<-accepted
}

func TestBadModules(t *testing.T) {
	r := newRuntime(t, wasm.Config{})
	for name, code := range map[string][]byte{
		"empty":           nil,
		"garbage":         []byte("not a wasm module"),
		"truncated":       guestWasm[:len(guestWasm)/2],
		"no exports":      []byte("\x00asm\x01\x00\x00\x00"),
		"wrong signature": moduleWithExports(),
	} {
		if m, err := r.Compile(context.Background(), code); !errors.Is(err, wasm.ErrBadModule) {
			t.Errorf("%s: Compile error = %v, want ErrBadModule", name, err)
			if m != nil {
				_ = m.Close(context.Background())
			}
		}
	}
}

// moduleWithExports returns a valid module exporting the four entry points
// and a memory, but with trellis_call taking no parameters.
func moduleWithExports() []byte {
	var b bytes.Buffer
	b.WriteString("\x00asm\x01\x00\x00\x00")
	section := func(id byte, body ...byte) {
		b.WriteByte(id)
		b.WriteByte(byte(len(body)))
		b.Write(body)
	}
	// Types: 0 = () -> (), 1 = () -> i32, 2 = (i32) -> i32.
	section(1, 3, 0x60, 0, 0, 0x60, 0, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f)
	// Functions: _initialize:0, trellis_abi:1, trellis_alloc:2, trellis_call:1.
	section(3, 4, 0, 1, 2, 1)
	section(5, 1, 0, 1) // memory, min 1 page
	exp := []byte{5}
	for i, name := range []string{"_initialize", "trellis_abi", "trellis_alloc", "trellis_call"} {
		exp = append(exp, byte(len(name)))
		exp = append(exp, name...)
		exp = append(exp, 0, byte(i))
	}
	exp = append(exp, 6, 'm', 'e', 'm', 'o', 'r', 'y', 2, 0)
	section(7, exp...)
	// Code: () {}, () {i32.const 1}, (i32) {i32.const 0}, () {i32.const 0}.
	section(10, 4, 2, 0, 0x0b, 4, 0, 0x41, 1, 0x0b, 4, 0, 0x41, 0, 0x0b, 4, 0, 0x41, 0, 0x0b)
	return b.Bytes()
}

func TestHostCalls(t *testing.T) {
	r := newRuntime(t, wasm.Config{})
	m := compile(t, r, guestWasm)

	for _, size := range []int{0, 5, 4096, 4097, 100 << 10} { // around the guest's 4 KiB scratch buffer
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			h := newFakeHost()
			val := bytes.Repeat([]byte("v"), size)
			copy(val, "start")
			h.kv["k"] = val
			msg := bytes.Repeat([]byte("m"), size)
			h.inbox <- msg
			got, err := m.Call(callCtx(t, 5*time.Second), h, args("host", "k"))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%d:%s|%d:%s", size, digest(val), size, digest(msg)); string(got) != want {
				t.Errorf("result = %q, want %q", got, want)
			}
			if !bytes.Equal(h.kv["k!"], val) {
				t.Errorf("Put wrote %d bytes, want the %d read", len(h.kv["k!"]), len(val))
			}
			if len(h.sent) != 1 || h.sent[0] != "peer:hello "+string(val) {
				t.Errorf("sent %d messages, want one \"hello ...\" to peer", len(h.sent))
			}
			if want := fmt.Sprintf("got %d bytes", size); len(h.logs) != 1 || h.logs[0] != want {
				t.Errorf("logs = %q, want [%q]", h.logs, want)
			}
		})
	}

	t.Run("missing key", func(t *testing.T) {
		h := newFakeHost()
		h.inbox <- []byte("x")
		got, err := m.Call(callCtx(t, 5*time.Second), h, args("host", "absent"))
		if err != nil || string(got) != "6:<none>|1:x" {
			t.Errorf("result = %q, %v", got, err)
		}
	})
	t.Run("nil host refuses", func(t *testing.T) {
		_, err := m.Call(callCtx(t, 5*time.Second), nil, args("host", "k"))
		if !errors.Is(err, wasm.ErrGuest) || !strings.Contains(err.Error(), "no host") {
			t.Errorf("error = %v, want ErrGuest saying there is no host", err)
		}
	})
	t.Run("host error reaches guest", func(t *testing.T) {
		_, err := m.Call(callCtx(t, 5*time.Second), newFakeHost(), args("put", "!ro", "3"))
		if !errors.Is(err, wasm.ErrGuest) || !strings.Contains(err.Error(), "read-only key") {
			t.Errorf("error = %v, want ErrGuest carrying the host's error", err)
		}
	})
}

func digest(b []byte) string {
	if len(b) <= 16 {
		return string(b)
	}
	return string(b[:8]) + "..." + string(b[len(b)-8:])
}

func TestSizeLimits(t *testing.T) {
	r := newRuntime(t, wasm.Config{MaxResult: 64 << 10})
	m := compile(t, r, guestWasm)
	if got, err := m.Call(callCtx(t, 5*time.Second), nil, args("big", strconv.Itoa(64<<10))); err != nil || len(got) != 64<<10 {
		t.Errorf("result at the limit: %d bytes, %v", len(got), err)
	}
	if _, err := m.Call(callCtx(t, 5*time.Second), nil, args("big", strconv.Itoa(64<<10+1))); !errors.Is(err, wasm.ErrTooLarge) {
		t.Errorf("oversized result: error = %v, want ErrTooLarge", err)
	}
	_, err := m.Call(callCtx(t, 5*time.Second), newFakeHost(), args("put", "k", strconv.Itoa(64<<10+1)))
	if !errors.Is(err, wasm.ErrGuest) || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Errorf("oversized Put: error = %v, want the guest to see the limit", err)
	}
	requireRecovers(t, m)
}

func TestClosed(t *testing.T) {
	ctx := context.Background()
	r, err := wasm.NewRuntime(ctx, wasm.Config{CacheDir: cacheDir})
	if err != nil {
		t.Fatal(err)
	}
	inc, err := r.Compile(ctx, incrementWasm)
	if err != nil {
		t.Fatal(err)
	}
	sq, err := r.Compile(ctx, squareWasm)
	if err != nil {
		t.Fatal(err)
	}
	if err := inc.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := inc.Call(ctx, nil, args("1")); !errors.Is(err, wasm.ErrClosed) {
		t.Errorf("Call after Module.Close = %v, want ErrClosed", err)
	}
	if got, err := sq.Call(ctx, nil, args("3")); err != nil || string(got) != "9" {
		t.Errorf("square(3) after closing another module = %q, %v", got, err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sq.Call(ctx, nil, args("3")); !errors.Is(err, wasm.ErrClosed) {
		t.Errorf("Call after Runtime.Close = %v, want ErrClosed", err)
	}
	if _, err := r.Compile(ctx, squareWasm); !errors.Is(err, wasm.ErrClosed) {
		t.Errorf("Compile after Runtime.Close = %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []wasm.Config{{MemoryLimit: -1}, {MemoryLimit: 1<<32 + 1}, {MaxResult: -1}, {MaxResult: 1<<30 + 1}} {
		if c.Validate() == nil {
			t.Errorf("%+v.Validate() = nil, want an error", c)
		}
		if _, err := wasm.NewRuntime(context.Background(), c); err == nil {
			t.Errorf("NewRuntime(%+v) succeeded", c)
		}
	}
	if err := (wasm.Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

func TestBuildReportsCompilerErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { undefinedThing() }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n\ngo 1.24\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := wasm.Build(context.Background(), dir, filepath.Join(dir, "x.wasm"))
	if err == nil || !strings.Contains(err.Error(), "undefinedThing") {
		t.Errorf("Build error = %v, want the compiler's message", err)
	}
}
