package wasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/trellisdb/trellis/fn/abi"
)

// Module is a compiled function with a pool of warm instances. It is safe for
// concurrent use: each concurrent Call runs on its own instance.
type Module struct {
	r        *Runtime
	compiled wazero.CompiledModule

	mu     sync.Mutex
	idle   []*instance // warm instances, at most r.cfg.PoolSize
	closed bool
}

// Call runs the module's handler on args and returns its result. ctx bounds
// the whole call, including any host calls; when it is done the guest is
// stopped and Call returns an error wrapping ErrTimeout. h serves the
// guest's host calls for the duration of this call; nil refuses them.
//
// A handler's error is returned wrapping ErrGuest; a failed instance
// (ErrTrap, ErrTimeout) is discarded and the next Call gets a fresh one.
func (m *Module) Call(ctx context.Context, h Host, args [][]byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, timeout(ctx)
	}
	in, err := m.get(ctx)
	if err != nil {
		return nil, err
	}
	if h == nil {
		h = refusingHost{errNoHost}
	}
	in.c = call{host: h, max: m.r.cfg.MaxResult}
	res, err := in.run(context.WithValue(ctx, callKey{}, &in.c), args, in.c.max)
	in.c = call{}
	if ctx.Err() != nil {
		// The deadline passed during the call: wazero closes an instance
		// whose context ends (WithCloseOnContextDone), perhaps only after
		// this call returned, so it never goes back to the pool, whatever
		// the call returned.
		in.close()
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, ErrTimeout) {
			err = fmt.Errorf("%w (%w): %w", ErrTimeout, ctx.Err(), err)
		}
		return nil, err
	}
	if err != nil && !errors.Is(err, ErrGuest) && !errors.Is(err, ErrTooLarge) {
		in.close()
		return nil, err
	}
	m.put(in)
	return res, err
}

// Close discards the idle instances and releases the compiled code. Calls in
// progress finish; later calls fail with ErrClosed.
func (m *Module) Close(ctx context.Context) error {
	m.mu.Lock()
	idle := m.idle
	m.idle, m.closed = nil, true
	m.mu.Unlock()
	for _, in := range idle {
		in.close()
	}
	return m.compiled.Close(ctx)
}

func (m *Module) get(ctx context.Context) (*instance, error) {
	m.mu.Lock()
	if m.closed || m.r.closed.Load() {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	if n := len(m.idle); n > 0 {
		in := m.idle[n-1]
		m.idle = m.idle[:n-1]
		m.mu.Unlock()
		return in, nil
	}
	m.mu.Unlock()
	return m.instantiate(ctx)
}

func (m *Module) put(in *instance) {
	m.mu.Lock()
	if !m.closed && len(m.idle) < m.r.cfg.PoolSize {
		m.idle = append(m.idle, in)
		in = nil
	}
	m.mu.Unlock()
	if in != nil {
		in.close()
	}
}

// instantiate makes a new instance and runs its _initialize under ctx.
func (m *Module) instantiate(ctx context.Context) (*instance, error) {
	in := &instance{c: call{host: refusingHost{errNoCall}, max: m.r.cfg.MaxResult}}
	ctx = context.WithValue(ctx, callKey{}, &in.c)
	defer func() { in.c = call{} }()
	cfg := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions(abi.ExportInit).
		WithStderr(&in.stderr).
		WithRandSource(rand.Reader).
		WithSysWalltime().
		WithSysNanotime().
		WithNanosleep(nanosleep)
	mod, err := m.r.rt.InstantiateModule(ctx, m.compiled, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return nil, timeout(ctx)
		}
		return nil, fmt.Errorf("%w: instantiate: %w%s", ErrTrap, err, in.stderr.suffix())
	}
	in.mod = mod
	in.mem = mod.Memory()
	in.alloc = mod.ExportedFunction(abi.ExportAlloc)
	in.call = mod.ExportedFunction(abi.ExportCall)
	return in, nil
}

// nanosleep serves the guest's sleeps in slices short enough that the guest
// notices its deadline soon after it passes (wazero checks it in guest code,
// not while the host sleeps).
func nanosleep(ns int64) {
	time.Sleep(min(time.Duration(ns), 10*time.Millisecond))
}

// instance is one instantiated module. It is used by one goroutine at a
// time: whoever took it from the pool.
type instance struct {
	mod         api.Module
	mem         api.Memory
	alloc, call api.Function
	stack       [2]uint64
	inPtr       uint32 // the guest's argument buffer from trellis_alloc
	inCap       uint32
	stderr      stderrHead
	c           call // the state of the call in progress, for the host functions
}

func (in *instance) close() { _ = in.mod.Close(context.Background()) }

func (in *instance) checkVersion(ctx context.Context) error {
	v, err := in.mod.ExportedFunction(abi.ExportVersion).Call(ctx)
	if err != nil {
		return in.failure(ctx, err)
	}
	if v[0] != abi.Version {
		return fmt.Errorf("module speaks ABI version %d, this host version %d", v[0], abi.Version)
	}
	return nil
}

// run makes one call on the instance. Unless the error wraps ErrGuest or
// ErrTooLarge, the instance must be discarded.
func (in *instance) run(ctx context.Context, args [][]byte, max int) ([]byte, error) {
	in.stderr.reset()
	size := abi.ArgsSize(args)
	if size > math.MaxInt32 {
		return nil, fmt.Errorf("%w: arguments of %d bytes", ErrTooLarge, size)
	}
	if uint32(size) > in.inCap {
		in.stack[0] = uint64(size)
		if err := in.alloc.CallWithStack(ctx, in.stack[:]); err != nil {
			return nil, in.failure(ctx, err)
		}
		in.inPtr, in.inCap = api.DecodeU32(in.stack[0]), uint32(size)
	}
	// Encode the arguments straight into guest memory.
	buf, ok := in.mem.Read(in.inPtr, uint32(size))
	if !ok {
		return nil, fmt.Errorf("%w: %w: trellis_alloc buffer at %d is outside guest memory", ErrTrap, errABI, in.inPtr)
	}
	abi.AppendArgs(buf[:0], args)
	in.stack[0], in.stack[1] = uint64(in.inPtr), uint64(size)
	if err := in.call.CallWithStack(ctx, in.stack[:]); err != nil {
		return nil, in.failure(ctx, err)
	}
	status, payload, err := readReply(in.mem, in.stack[0], max)
	var tl errTooLong
	switch {
	case errors.As(err, &tl):
		return nil, fmt.Errorf("%w: %v", ErrTooLarge, tl)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrTrap, err)
	case status == abi.StatusError:
		return nil, fmt.Errorf("%w: %s", ErrGuest, payload)
	}
	return payload, nil
}

// failure classifies an error from running guest code.
func (in *instance) failure(ctx context.Context, err error) error {
	var exit *sys.ExitError
	switch {
	case ctx.Err() != nil:
		return timeout(ctx)
	case errors.As(err, &exit):
		switch exit.ExitCode() {
		case sys.ExitCodeDeadlineExceeded, sys.ExitCodeContextCanceled:
			return timeout(ctx)
		}
		return fmt.Errorf("%w: guest exited with code %d%s", ErrTrap, exit.ExitCode(), in.stderr.suffix())
	}
	return fmt.Errorf("%w: %w%s", ErrTrap, err, in.stderr.suffix())
}

func timeout(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrTimeout, err)
	}
	return ErrTimeout
}

// stderrHead keeps the first bytes written to a guest's stderr since the last
// reset: where a Go panic or fatal error says what happened.
type stderrHead struct {
	buf []byte
}

const stderrHeadSize = 2 << 10

func (t *stderrHead) Write(p []byte) (int, error) {
	n := len(p)
	if room := stderrHeadSize - len(t.buf); room < len(p) {
		p = p[:max(room, 0)]
	}
	t.buf = append(t.buf, p...)
	return n, nil
}

func (t *stderrHead) reset() { t.buf = t.buf[:0] }

// suffix formats what was kept for an error message.
func (t *stderrHead) suffix() string {
	if len(t.buf) == 0 {
		return ""
	}
	return "\nguest stderr:\n" + string(t.buf)
}
