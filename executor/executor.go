package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/consistency"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

// Runtime compiles WebAssembly modules (package executor/wasm provides
// it, through WasmRuntime). Safe for concurrent use.
type Runtime interface {
	Compile(ctx context.Context, code []byte) (Module, error)
}

// Module is a compiled WebAssembly function. Call is safe for concurrent
// use (each call gets an instance of its own).
type Module interface {
	Call(ctx context.Context, h Host, args [][]byte) ([]byte, error)
	Close(ctx context.Context) error
}

// Host is what a running function may ask of its executor: the KVS through
// the executor's cache, messages to the other functions of its call, the
// log. Safe for concurrent use.
type Host interface {
	Get(ctx context.Context, key []byte) (value []byte, ok bool, err error)
	Put(ctx context.Context, key, value []byte) error
	Send(ctx context.Context, to string, msg []byte) error
	Recv(ctx context.Context) ([]byte, error)
	Log(msg string)
}

// Config configures an Executor. The zero value of each field is its
// default.
type Config struct {
	// Addr is the executor's address: how coordinators and other
	// executors reach it through the Network. Required.
	Addr string
	// ID stamps the executor's writes (LWW writer id). Required, non-zero.
	ID uint64
	// KV is the store behind the cache. Required.
	KV KV
	// Network reaches coordinators and other executors. Required.
	Network Network
	// Natives holds the native functions. Default: none.
	Natives *Registry
	// Wasm compiles WebAssembly functions. Default: none (calls of
	// registered functions fail with ErrFunctionNotFound).
	Wasm Runtime
	// Workers is the number of functions run at once. Default GOMAXPROCS.
	Workers int
	// QueueLen bounds the functions waiting for a worker; beyond it the
	// executor refuses work (unavailable). Default 4096.
	QueueLen int
	// CacheBytes is the cache's budget. Default DefaultCacheBytes.
	CacheBytes int64
	// FunctionTimeout bounds one function's run within its call's
	// deadline. Default 10 s.
	FunctionTimeout time.Duration
	// RefreshEvery is how often the cache merges the values of its keys
	// that the KV reports changed (a Watcher KV). Default 50 ms, the
	// storage nodes' gossip period.
	RefreshEvery time.Duration
	// Coordinators get the executor's reports. Default none.
	Coordinators []string
	// ReportEvery is the period of the reports. Default 100 ms.
	ReportEvery time.Duration
	// ReportKeys bounds the cached keys a report names. Default 1024.
	ReportKeys int
	// Logger receives the executor's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock (tests pass a fake). Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Natives == nil {
		c.Natives = NewRegistry()
	}
	if c.Workers <= 0 {
		c.Workers = runtime.GOMAXPROCS(0)
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 4096
	}
	if c.FunctionTimeout <= 0 {
		c.FunctionTimeout = 10 * time.Second
	}
	if c.ReportEvery <= 0 {
		c.ReportEvery = 100 * time.Millisecond
	}
	if c.RefreshEvery <= 0 {
		c.RefreshEvery = 50 * time.Millisecond
	}
	if c.ReportKeys <= 0 {
		c.ReportKeys = 1024
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports a configuration that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return errors.New("executor: Addr is required")
	case c.ID == 0:
		return errors.New("executor: ID is required")
	case c.KV == nil:
		return errors.New("executor: KV is required")
	case c.Network == nil:
		return errors.New("executor: Network is required")
	}
	return nil
}

// Executor runs functions: it receives triggers (a function of a call,
// with its arguments), resolves key references through its cache, runs the
// function, and sends the result to the executors of the successors or,
// for the sink, to the coordinator that started the call.
type Executor struct {
	cfg   Config
	cache *Cache
	clock *lattice.Clock
	work  chan *Trigger
	busy  atomic.Int64 // functions running

	mu      sync.Mutex
	joins   map[joinKey]*Trigger    // functions waiting for more predecessor results
	boxes   map[joinKey]*mailbox    // messages between the functions of a call
	modules map[[32]byte]*moduleRef // compiled WebAssembly modules by code hash

	runs, failures atomic.Uint64
}

type joinKey struct {
	call    uint64
	attempt uint32
	fn      string
}

type moduleRef struct {
	once sync.Once
	mod  Module
	err  error
}

// New returns an executor. Run starts its workers.
func New(cfg Config) (*Executor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	e := &Executor{
		cfg:     cfg,
		cache:   NewCache(cfg.KV, cfg.CacheBytes),
		clock:   lattice.NewClock(func() int64 { return cfg.Now().UnixMilli() }),
		work:    make(chan *Trigger, cfg.QueueLen),
		joins:   make(map[joinKey]*Trigger),
		boxes:   make(map[joinKey]*mailbox),
		modules: make(map[[32]byte]*moduleRef),
	}
	return e, nil
}

// Addr returns the executor's address.
func (e *Executor) Addr() string { return e.cfg.Addr }

// Cache returns the executor's cache.
func (e *Executor) Cache() *Cache { return e.cache }

// Run runs the workers and the housekeeping until ctx ends, then closes
// the compiled modules.
func (e *Executor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range e.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case t := <-e.work:
					e.run(ctx, t)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	e.report(ctx)
	tick := time.NewTicker(e.cfg.ReportEvery)
	defer tick.Stop()
	refresh := time.NewTicker(e.cfg.RefreshEvery)
	defer refresh.Stop()
	for {
		select {
		case <-refresh.C:
			e.cache.Refresh(ctx)
		case <-tick.C:
			e.report(ctx)
			e.sweep()
		case <-ctx.Done():
			wg.Wait()
			e.closeModules()
			return nil
		}
	}
}

// Deliver accepts a trigger: the function runs once every predecessor's
// result has arrived (each in a trigger of its own). It does not block on
// the function; an error means the executor cannot take it (overloaded or
// stopping), and the sender should treat the executor as failed.
func (e *Executor) Deliver(ctx context.Context, t *Trigger) error {
	if preds := len(t.DAG.Preds(t.Fn)); preds > 1 {
		k := joinKey{t.CallID, t.Attempt, t.Fn}
		e.mu.Lock()
		have := e.joins[k]
		if have == nil {
			e.joins[k] = t
			e.mu.Unlock()
			return nil
		}
		for p, r := range t.Inputs {
			have.Inputs[p] = r
		}
		versions, err := consistency.Join(have.Snapshot, t.Snapshot)
		if err != nil {
			// Two branches of a repeatable-read call read two versions
			// of a key: the call fails here, and its coordinator runs it
			// again.
			delete(e.joins, k)
			e.mu.Unlock()
			e.finish(ctx, t, Result{}, err)
			return nil
		}
		have.Snapshot = versions
		if len(have.Inputs) < preds {
			e.mu.Unlock()
			return nil
		}
		delete(e.joins, k)
		e.mu.Unlock()
		t = have
	}
	// Never blocks: a worker passing a result on must not wait for a
	// worker (they could all wait on each other).
	select {
	case e.work <- t:
		return nil
	default:
		return fmt.Errorf("%w: executor %s is saturated (%d functions queued)", wire.ErrUnavailable, e.cfg.Addr, cap(e.work))
	}
}

// run runs one function and passes its result on. A successor scheduled
// here with no other predecessor runs next in the same worker, without a
// hand-off.
func (e *Executor) run(ctx context.Context, t *Trigger) {
	e.busy.Add(1)
	defer e.busy.Add(-1)
	for t != nil {
		t = e.step(ctx, t)
	}
}

// step runs t's function and sends its result on; it returns the trigger
// of a successor to run next in this worker, if any.
func (e *Executor) step(ctx context.Context, t *Trigger) *Trigger {
	e.runs.Add(1)
	deadline := t.Deadline
	if d := e.cfg.Now().Add(e.cfg.FunctionTimeout); d.Before(deadline) {
		deadline = d
	}
	fctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var snap *session // nil: last-writer-wins reads
	if level, _ := consistency.Parse(t.Call.Consistency); level != consistency.LWW {
		snap = &session{Snapshot: consistency.NewSnapshot(t.Snapshot), causal: level == consistency.Causal}
	}
	res, err := e.invoke(fctx, t, snap)
	sink := t.Fn == t.DAG.Sink()
	if err == nil && sink && t.ResultKey != "" {
		err = e.put(fctx, []byte(t.ResultKey), res, snap, t.Call.Ack)
		res = nil
	}
	if err != nil {
		e.failures.Add(1)
		e.finish(ctx, t, Result{}, err)
		return nil
	}
	if sink {
		e.finish(ctx, t, Result{Value: res}, nil)
		return nil
	}
	var inline *Trigger
	var versions map[string][]byte
	if snap != nil {
		versions = snap.Versions()
	}
	for _, s := range t.DAG.Succs(t.Fn) {
		next := &Trigger{
			CallID: t.CallID, Attempt: t.Attempt, DAG: t.DAG, Schedule: t.Schedule, Fn: s,
			Args: t.Call.argsFor(t.DAG, s), Call: t.Call, Inputs: map[string][]byte{t.Fn: res},
			ResultKey: t.ResultKey, ReplyTo: t.ReplyTo, Deadline: t.Deadline, Snapshot: versions,
		}
		if inline == nil && t.Schedule[s] == e.cfg.Addr && len(t.DAG.Preds(s)) == 1 {
			inline = next
			continue
		}
		if err := e.cfg.Network.Trigger(ctx, t.Schedule[s], next); err != nil {
			e.finish(ctx, t, Result{Failed: t.Schedule[s]}, fmt.Errorf("%w: passing %s's result to %s at %s: %w", wire.ErrUnavailable, t.Fn, s, t.Schedule[s], err))
			return nil
		}
	}
	return inline
}

// finish reports a call's outcome (the sink's result in r, or a failure
// of any function) to its coordinator.
func (e *Executor) finish(ctx context.Context, t *Trigger, r Result, err error) {
	r.CallID, r.Attempt, r.Executor = t.CallID, t.Attempt, e.cfg.Addr
	if err != nil {
		r.Code = wire.CodeOf(err)
		if errors.Is(err, context.DeadlineExceeded) {
			r.Code = wire.CodeTimeout
		}
		// The receiver shows the code's name before the message.
		r.Msg = strings.TrimPrefix(err.Error(), r.Code.String()+": ")
	}
	rctx, cancel := context.WithDeadline(ctx, t.Deadline)
	defer cancel()
	if err := e.cfg.Network.Result(rctx, t.ReplyTo, &r); err != nil {
		e.cfg.Logger.Debug("reporting a call's result failed", "call", t.CallID, "coordinator", t.ReplyTo, "err", err)
	}
}

// invoke runs t's function with its arguments: its own (references
// resolved through the cache), then its predecessors' results in edge
// order.
func (e *Executor) invoke(ctx context.Context, t *Trigger, snap *session) ([]byte, error) {
	args := make([][]byte, 0, len(t.Args)+len(t.Inputs))
	for _, a := range t.Args {
		if !a.Ref {
			args = append(args, a.Value)
			continue
		}
		v, ok, err := e.read(ctx, a.Value, snap)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%w: argument of %s: key %q holds no value", ErrBadArgs, t.Fn, a.Value)
		}
		args = append(args, v)
	}
	for _, p := range t.DAG.Preds(t.Fn) {
		args = append(args, t.Inputs[p])
	}
	h := &host{e: e, t: t, snap: snap}
	if fn, ok := e.cfg.Natives.Lookup(t.Fn); ok {
		res, err := fn(&Ctx{ctx: ctx, h: h}, args)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", wire.ErrFunction, t.Fn, err)
		}
		return res, nil
	}
	mod, err := e.module(ctx, t.Fn)
	if err != nil {
		return nil, err
	}
	res, err := mod.Call(ctx, h, args)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %s ran past its deadline: %w", wire.ErrTimeout, t.Fn, err)
		}
		return nil, fmt.Errorf("%w: %s: %w", wire.ErrFunction, t.Fn, err)
	}
	return res, nil
}

// module returns the compiled module of registered function name, reading
// its record through the cache and compiling each code version once.
func (e *Executor) module(ctx context.Context, name string) (Module, error) {
	if e.cfg.Wasm == nil {
		return nil, fmt.Errorf("%w %s: this executor runs no WebAssembly", ErrFunctionNotFound, name)
	}
	enc, err := e.cache.Get(ctx, FunctionKey(name))
	if wire.CodeOf(err) == wire.CodeNotFound {
		return nil, fmt.Errorf("%w %s", ErrFunctionNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	rec, err := decodeRecord(enc)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	ref := e.modules[rec.Hash]
	if ref == nil {
		ref = &moduleRef{}
		e.modules[rec.Hash] = ref
	}
	e.mu.Unlock()
	ref.once.Do(func() {
		// Compiled once per code version, whatever the caller's
		// deadline: a later call reuses it.
		ref.mod, ref.err = e.cfg.Wasm.Compile(context.WithoutCancel(ctx), rec.Code)
	})
	return ref.mod, ref.err
}

// decodeRecord reads a function record out of its LWW register encoding.
func decodeRecord(enc []byte) (Function, error) {
	_, _, v, err := lattice.ParseLWW(enc)
	if err != nil {
		return Function{}, fmt.Errorf("%w: function record: %w", wire.ErrInternal, err)
	}
	return DecodeFunction(v)
}

func (e *Executor) closeModules() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for h, ref := range e.modules {
		if ref.mod != nil {
			_ = ref.mod.Close(context.Background())
		}
		delete(e.modules, h)
	}
}

// sweep drops joins and mailboxes of calls whose deadline passed.
func (e *Executor) sweep() {
	now := e.cfg.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, t := range e.joins {
		if now.After(t.Deadline) {
			delete(e.joins, k)
		}
	}
	for k, b := range e.boxes {
		if now.After(b.deadline) {
			delete(e.boxes, k)
		}
	}
}

// session is the consistency state of one function's run in a
// repeatable-read or causal call.
type session struct {
	*consistency.Snapshot
	causal bool
}

// read returns key's value as a function sees it: an LWW register's bytes,
// a counter's decimal value, a causal value's payload. In a session, the
// version the call read first (for a causal call, one that keeps the
// versions read a causal cut).
func (e *Executor) read(ctx context.Context, key []byte, snap *session) ([]byte, bool, error) {
	var enc []byte
	var err error
	cached := func() ([]byte, error) { return e.cache.Get(ctx, key) }
	switch {
	case snap == nil:
		enc, err = cached()
	case snap.causal:
		enc, err = snap.ReadCausal(string(key), cached, func() ([]byte, error) {
			// Past the cache: the KVS's version, which the cache then
			// merges too.
			enc, err := e.cfg.KV.Get(ctx, key)
			if err == nil {
				enc = e.cache.Write(string(key), enc)
			}
			return enc, err
		})
	default:
		enc, err = snap.Read(string(key), cached)
	}
	if wire.CodeOf(err) == wire.CodeNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := lattice.Decode(enc)
	if err != nil {
		return nil, false, fmt.Errorf("%w: key %q: %w", wire.ErrInternal, key, err)
	}
	switch v := v.(type) {
	case *lattice.LWW:
		return v.Value, true, nil
	case *lattice.Counter:
		return strconv.AppendInt(nil, v.Value(), 10), true, nil
	case *lattice.MultiCausal:
		return consistency.Payload(v), true, nil
	}
	return nil, false, fmt.Errorf("%w: key %q holds a %s, a function reads registers, counters and causal values", wire.ErrTypeMismatch, key, v.Type())
}

// put writes value to key: into the cache, then to the KVS, waiting for
// ack. An LWW register's write, or in a causal call a causal version that
// depends on what the call read. In a session, the call's later reads see
// the write.
func (e *Executor) put(ctx context.Context, key, value []byte, snap *session, ack wire.Ack) error {
	if IsReserved(key) {
		return fmt.Errorf("%w: key %q", ErrReserved, key)
	}
	enc := lattice.Encode(lattice.NewLWW(e.clock.Now(), e.cfg.ID, value))
	if snap != nil && snap.causal {
		base, _ := e.cache.Peek(key)
		var err error
		if enc, err = snap.CausalWrite(string(key), base, e.cfg.ID, value); err != nil {
			return err
		}
	}
	merged := e.cache.Write(string(key), enc)
	if snap != nil {
		snap.Wrote(string(key), merged)
	}
	if ap, ok := e.cfg.KV.(AckPutter); ok && ack != wire.AckDefault {
		return ap.PutAck(ctx, key, enc, ack)
	}
	return e.cfg.KV.Put(ctx, key, enc)
}

// report sends the executor's report to every coordinator.
func (e *Executor) report(ctx context.Context) {
	r := e.Report(e.cfg.ReportKeys)
	for _, c := range e.cfg.Coordinators {
		rctx, cancel := context.WithTimeout(ctx, e.cfg.ReportEvery)
		if err := e.cfg.Network.Report(rctx, c, r); err != nil {
			e.cfg.Logger.Debug("reporting to a coordinator failed", "coordinator", c, "err", err)
		}
		cancel()
	}
}

// Load returns the share of the workers busy, in [0, 1].
func (e *Executor) Load() float64 { return float64(e.busy.Load()) / float64(e.cfg.Workers) }

// Report returns what the executor tells coordinators: its load and the
// keys its cache holds (at most maxKeys).
func (e *Executor) Report(maxKeys int) *Report {
	return &Report{Addr: e.cfg.Addr, Load: e.Load(), Keys: e.cache.Keys(maxKeys), Natives: e.cfg.Natives.Names()}
}

// mailbox holds the messages sent to one function of one call.
type mailbox struct {
	ch       chan []byte
	deadline time.Time
}

// mailboxSize bounds the messages waiting for one function.
const mailboxSize = 64

func (e *Executor) box(k joinKey, deadline time.Time) *mailbox {
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.boxes[k]
	if b == nil {
		b = &mailbox{ch: make(chan []byte, mailboxSize), deadline: deadline}
		e.boxes[k] = b
	}
	return b
}

// Message delivers msg to function fn of a call running (or about to run)
// here.
func (e *Executor) Message(ctx context.Context, m *Message) error {
	b := e.box(joinKey{m.CallID, m.Attempt, m.To}, m.Deadline)
	select {
	case b.ch <- m.Body:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w: %d messages already wait for %s", wire.ErrUnavailable, mailboxSize, m.To)
	}
}

// host implements Host for one running function.
type host struct {
	e    *Executor
	t    *Trigger
	snap *session // a repeatable-read or causal call's versions; nil otherwise
}

func (h *host) Get(ctx context.Context, key []byte) ([]byte, bool, error) {
	return h.e.read(ctx, key, h.snap)
}

func (h *host) Put(ctx context.Context, key, value []byte) error {
	return h.e.put(ctx, key, value, h.snap, h.t.Call.Ack)
}

func (h *host) Send(ctx context.Context, to string, msg []byte) error {
	addr, ok := h.t.Schedule[to]
	if !ok {
		return fmt.Errorf("%w: %s is not a function of this call", wire.ErrBadRequest, to)
	}
	m := &Message{CallID: h.t.CallID, Attempt: h.t.Attempt, To: to, Body: append([]byte(nil), msg...), Deadline: h.t.Deadline}
	if addr == h.e.cfg.Addr {
		return h.e.Message(ctx, m)
	}
	return h.e.cfg.Network.Message(ctx, addr, m)
}

func (h *host) Recv(ctx context.Context) ([]byte, error) {
	b := h.e.box(joinKey{h.t.CallID, h.t.Attempt, h.t.Fn}, h.t.Deadline)
	select {
	case m := <-b.ch:
		return m, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for a message: %w", wire.ErrTimeout, ctx.Err())
	}
}

func (h *host) Log(msg string) {
	h.e.cfg.Logger.Info("function log", "fn", h.t.Fn, "call", h.t.CallID, "msg", msg)
}

// Ctx is what a native function gets: its context (the call's deadline)
// and the host services a WebAssembly function gets through imports.
type Ctx struct {
	ctx context.Context
	h   Host
}

// Context returns the function's context.
func (c *Ctx) Context() context.Context { return c.ctx }

// Get reads key through the executor's cache: an LWW register's bytes or a
// counter's decimal value; ok is false if the key holds nothing.
func (c *Ctx) Get(key string) (value []byte, ok bool, err error) {
	return c.h.Get(c.ctx, []byte(key))
}

// Put writes value to key's LWW register (the cache, then the KVS).
func (c *Ctx) Put(key string, value []byte) error { return c.h.Put(c.ctx, []byte(key), value) }

// Send sends msg to function to of the same call.
func (c *Ctx) Send(to string, msg []byte) error { return c.h.Send(c.ctx, to, msg) }

// Recv returns the next message sent to this function, waiting until one
// arrives or the deadline.
func (c *Ctx) Recv() ([]byte, error) { return c.h.Recv(c.ctx) }

// Log logs msg with the function's name and call.
func (c *Ctx) Log(msg string) { c.h.Log(msg) }
