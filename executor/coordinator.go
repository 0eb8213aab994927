package executor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/consistency"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

// ErrBadModule is returned for a function whose bytes are not a usable
// WebAssembly module.
var ErrBadModule = fmt.Errorf("%w: invalid WebAssembly module", wire.ErrBadRequest)

// CoordinatorConfig configures a Coordinator. The zero value of each field
// is its default.
type CoordinatorConfig struct {
	// Addr is the address executors send results to. Required.
	Addr string
	// ID stamps the definitions the coordinator writes (LWW writer id).
	// Required, non-zero.
	ID uint64
	// KV holds the definitions. Required.
	KV KV
	// Network reaches the executors. Required.
	Network Network
	// Validate checks a WebAssembly module before it is registered (a
	// compile). Default: none (a bad module fails at its first call).
	Validate func(ctx context.Context, code []byte) error
	// Natives lists native functions known to exist before any executor
	// reported (`trellis up` passes its executor's). Default none.
	Natives []string
	// CallTimeout bounds a call whose context has no deadline. Default 30 s.
	CallTimeout time.Duration
	// Retries is how many times a call is re-run after an executor
	// failure. Default 3.
	Retries int
	// ExecutorExpiry drops an executor that has not reported for this
	// long, and re-runs the calls in flight on it. Default 1 s.
	ExecutorExpiry time.Duration
	// DefinitionTTL is how long a DAG definition read from the KVS is
	// reused. Default 1 s.
	DefinitionTTL time.Duration
	// MaxArgBytes bounds the arguments of one call. Default 1 MiB.
	MaxArgBytes int
	// Placement tunes the scheduler.
	Placement Placement
	// Rand is the scheduler's randomness. Default: a random seed.
	Rand *rand.Rand
	// Logger receives the coordinator's logs. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c CoordinatorConfig) withDefaults() CoordinatorConfig {
	if c.CallTimeout <= 0 {
		c.CallTimeout = 30 * time.Second
	}
	if c.Retries == 0 {
		c.Retries = 3
	}
	if c.ExecutorExpiry <= 0 {
		c.ExecutorExpiry = time.Second
	}
	if c.DefinitionTTL <= 0 {
		c.DefinitionTTL = time.Second
	}
	if c.MaxArgBytes <= 0 {
		c.MaxArgBytes = 1 << 20
	}
	c.Placement = c.Placement.withDefaults()
	if c.Rand == nil {
		c.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Coordinator takes function and DAG calls and registrations. It keeps no
// state that outlives it: definitions live in the KVS, executors report to
// it, and a call's progress lives with the call.
type Coordinator struct {
	cfg    CoordinatorConfig
	clock  *lattice.Clock
	nextID atomic.Uint64

	mu    sync.Mutex
	execs map[string]*execState
	// reported is closed (and replaced) when an executor reports for the
	// first time: calls waiting for an executor try again.
	reported chan struct{}
	pending  map[uint64]*pendingCall
	dags     map[string]dagEntry
	rnd      *rand.Rand // guarded by mu

	calls, retries atomic.Uint64
}

type execState struct {
	view *execView
	seen time.Time
}

type dagEntry struct {
	d  *DAG
	at time.Time
}

// pendingCall is one attempt of a call in flight.
type pendingCall struct {
	attempt uint32
	execs   map[string]bool
	done    chan *Result // buffered: one result
}

// NewCoordinator returns a coordinator. Run does its housekeeping.
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	switch {
	case cfg.Addr == "":
		return nil, errors.New("coordinator: Addr is required")
	case cfg.ID == 0:
		return nil, errors.New("coordinator: ID is required")
	case cfg.KV == nil:
		return nil, errors.New("coordinator: KV is required")
	case cfg.Network == nil:
		return nil, errors.New("coordinator: Network is required")
	}
	cfg = cfg.withDefaults()
	c := &Coordinator{
		cfg:      cfg,
		clock:    lattice.NewClock(func() int64 { return cfg.Now().UnixMilli() }),
		execs:    make(map[string]*execState),
		reported: make(chan struct{}),
		pending:  make(map[uint64]*pendingCall),
		dags:     make(map[string]dagEntry),
		rnd:      cfg.Rand,
	}
	c.nextID.Store(cfg.Rand.Uint64() >> 16) // ids of two coordinators' calls rarely meet
	return c, nil
}

// Addr returns the coordinator's address.
func (c *Coordinator) Addr() string { return c.cfg.Addr }

// Run expires executors that stopped reporting (re-running their calls)
// until ctx ends.
func (c *Coordinator) Run(ctx context.Context) error {
	tick := time.NewTicker(max(c.cfg.ExecutorExpiry/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			c.expire()
		case <-ctx.Done():
			return nil
		}
	}
}

func (c *Coordinator) expire() {
	now := c.cfg.Now()
	c.mu.Lock()
	var gone []string
	for a, s := range c.execs {
		if now.Sub(s.seen) > c.cfg.ExecutorExpiry {
			delete(c.execs, a)
			gone = append(gone, a)
		}
	}
	c.mu.Unlock()
	for _, a := range gone {
		c.cfg.Logger.Warn("executor stopped reporting", "executor", a)
		c.ExecutorDown(a)
	}
}

// Report records an executor's report.
func (c *Coordinator) Report(r *Report) {
	v := newExecView(r)
	c.mu.Lock()
	_, known := c.execs[r.Addr]
	c.execs[r.Addr] = &execState{view: v, seen: c.cfg.Now()}
	if !known {
		close(c.reported)
		c.reported = make(chan struct{})
	}
	c.mu.Unlock()
}

// ExecutorDown forgets executor addr and fails the attempts in flight on
// it (they are re-run elsewhere).
func (c *Coordinator) ExecutorDown(addr string) {
	c.mu.Lock()
	delete(c.execs, addr)
	var hit []*pendingCall
	var ids []uint64
	for id, p := range c.pending {
		if p.execs[addr] {
			hit = append(hit, p)
			ids = append(ids, id)
		}
	}
	c.mu.Unlock()
	for i, p := range hit {
		select {
		case p.done <- &Result{CallID: ids[i], Attempt: p.attempt, Code: wire.CodeUnavailable, Msg: "executor " + addr + " failed", Failed: addr}:
		default:
		}
	}
}

// Complete delivers a call's result (from the Network).
func (c *Coordinator) Complete(r *Result) {
	c.mu.Lock()
	p := c.pending[r.CallID]
	c.mu.Unlock()
	if p == nil || p.attempt != r.Attempt {
		return // an attempt given up on
	}
	select {
	case p.done <- r:
	default:
	}
}

// RegisterFunction stores a WebAssembly function (replacing one of the same
// name).
func (c *Coordinator) RegisterFunction(ctx context.Context, name string, code []byte) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if len(code) == 0 {
		return fmt.Errorf("%w: function %s has no code", ErrBadModule, name)
	}
	if c.cfg.Validate != nil {
		if err := c.cfg.Validate(ctx, code); err != nil {
			if !errors.Is(err, ErrBadModule) {
				err = fmt.Errorf("%w: %w", ErrBadModule, err)
			}
			return err
		}
	}
	f := NewFunction(name, code)
	if err := c.cfg.KV.Put(ctx, FunctionKey(name), c.lww(f.AppendBinary(nil))); err != nil {
		return err
	}
	return c.cfg.KV.SetAdd(ctx, functionIndexKey, []byte(name))
}

func (c *Coordinator) lww(v []byte) []byte {
	return lattice.Encode(lattice.NewLWW(c.clock.Now(), c.cfg.ID, v))
}

// Functions returns the registered function names, sorted, then the native
// ones executors report.
func (c *Coordinator) Functions(ctx context.Context) ([]string, error) {
	m, err := c.cfg.KV.Members(ctx, functionIndexKey)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(m))
	for _, b := range m {
		names = append(names, string(b))
	}
	return append(sortedNames(names), c.natives()...), nil
}

// natives returns the native functions known, sorted.
func (c *Coordinator) natives() []string {
	out := slices.Clone(c.cfg.Natives)
	c.mu.Lock()
	for _, s := range c.execs {
		for n := range s.view.natives {
			out = append(out, n)
		}
	}
	c.mu.Unlock()
	return sortedNames(out)
}

// exists reports whether function ref exists.
func (c *Coordinator) exists(ctx context.Context, ref string) (bool, error) {
	if len(ref) > len(NativePrefix) && ref[:len(NativePrefix)] == NativePrefix {
		_, ok := slices.BinarySearch(c.natives(), ref)
		return ok, nil
	}
	_, err := c.cfg.KV.Get(ctx, FunctionKey(ref))
	if wire.CodeOf(err) == wire.CodeNotFound {
		return false, nil
	}
	return err == nil, err
}

// RegisterDAG validates d and stores it (replacing a DAG of the same name).
func (c *Coordinator) RegisterDAG(ctx context.Context, d DAG) error {
	var lookupErr error
	err := d.Validate(func(ref string) bool {
		ok, err := c.exists(ctx, ref)
		if err != nil && lookupErr == nil {
			lookupErr = err
		}
		return ok || err != nil
	})
	if lookupErr != nil {
		return lookupErr
	}
	if err != nil {
		return err
	}
	if err := c.cfg.KV.Put(ctx, DAGKey(d.Name), c.lww(d.AppendBinary(nil))); err != nil {
		return err
	}
	c.forget(d.Name)
	return c.cfg.KV.SetAdd(ctx, dagIndexKey, []byte(d.Name))
}

// DAGs returns the registered DAG names, sorted.
func (c *Coordinator) DAGs(ctx context.Context) ([]string, error) {
	m, err := c.cfg.KV.Members(ctx, dagIndexKey)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(m))
	for _, b := range m {
		names = append(names, string(b))
	}
	return sortedNames(names), nil
}

// DeleteDAG deletes a DAG and reports whether it existed.
func (c *Coordinator) DeleteDAG(ctx context.Context, name string) (bool, error) {
	if err := ValidName(name); err != nil {
		return false, err
	}
	existed, err := c.cfg.KV.Delete(ctx, DAGKey(name))
	if err != nil {
		return false, err
	}
	c.forget(name)
	return existed, c.cfg.KV.SetRemove(ctx, dagIndexKey, []byte(name))
}

func (c *Coordinator) forget(name string) {
	c.mu.Lock()
	delete(c.dags, name)
	c.mu.Unlock()
}

// dag returns DAG name's definition, reused for DefinitionTTL.
func (c *Coordinator) dag(ctx context.Context, name string) (*DAG, error) {
	now := c.cfg.Now()
	c.mu.Lock()
	e, ok := c.dags[name]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.cfg.DefinitionTTL {
		return e.d, nil
	}
	if err := ValidName(name); err != nil {
		return nil, err
	}
	enc, err := c.cfg.KV.Get(ctx, DAGKey(name))
	if wire.CodeOf(err) == wire.CodeNotFound {
		return nil, fmt.Errorf("%w %s", ErrDAGNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	_, _, v, err := lattice.ParseLWW(enc)
	if err != nil {
		return nil, fmt.Errorf("%w: DAG %s: %w", wire.ErrInternal, name, err)
	}
	d, err := DecodeDAG(v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.dags[name] = dagEntry{d: &d, at: now}
	c.mu.Unlock()
	return &d, nil
}

// CallDAG runs DAG name with call's arguments and returns the sink's
// result (nil when call.ResultKey stored it).
func (c *Coordinator) CallDAG(ctx context.Context, name string, call Call) ([]byte, error) {
	d, err := c.dag(ctx, name)
	if err != nil {
		return nil, err
	}
	return c.run(ctx, d, &call)
}

// Call runs one function on its own with args.
func (c *Coordinator) Call(ctx context.Context, fn string, args []Arg) ([]byte, error) {
	if err := validRef(fn); err != nil {
		return nil, err
	}
	ok, err := c.exists(ctx, fn)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrFunctionNotFound, fn)
	}
	d := &DAG{Name: fn, Functions: []string{fn}}
	return c.run(ctx, d, &Call{Args: map[string][]Arg{fn: args}})
}

// run runs d: places its functions, triggers its sources and waits for the
// result; an executor failure re-runs it elsewhere, up to Retries times
// within the deadline.
func (c *Coordinator) run(ctx context.Context, d *DAG, call *Call) ([]byte, error) {
	if err := c.checkCall(d, call); err != nil {
		return nil, err
	}
	c.calls.Add(1)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
	}
	deadline, _ := ctx.Deadline()
	refs := call.refs(d)
	exclude := make(map[string]bool)
	var lastErr error
	for attempt := uint32(0); attempt <= uint32(c.cfg.Retries); attempt++ {
		if attempt > 0 {
			c.retries.Add(1)
		}
		res, failed, err := c.attempt(ctx, d, call, refs, exclude, attempt, deadline)
		switch {
		case failed != "":
			exclude[failed] = true
		case errors.Is(err, consistency.ErrConflict):
			// A repeatable-read call whose branches read two versions
			// of a key: run it again (the writes that caused it have
			// likely settled).
		default:
			return res, err
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// checkCall checks a call's arguments against its DAG.
func (c *Coordinator) checkCall(d *DAG, call *Call) error {
	size := 0
	for f, args := range call.Args {
		if f != "" && !slices.Contains(d.Functions, f) {
			return fmt.Errorf("%w: %s is not a function of %s", ErrBadArgs, f, d.Name)
		}
		if len(args) > MaxArgs {
			return fmt.Errorf("%w: %d arguments for %s, at most %d", ErrBadArgs, len(args), f, MaxArgs)
		}
		for _, a := range args {
			size += len(a.Value)
		}
	}
	if size > c.cfg.MaxArgBytes {
		return fmt.Errorf("%w: arguments of %d bytes exceed the limit of %d", wire.ErrTooLarge, size, c.cfg.MaxArgBytes)
	}
	_, err := consistency.Parse(call.Consistency)
	return err
}

// attempt runs d once. failed names an executor that failed (the call
// should be re-run without it); otherwise res and err are the call's
// outcome.
func (c *Coordinator) attempt(ctx context.Context, d *DAG, call *Call, refs map[string][]string,
	exclude map[string]bool, attempt uint32, deadline time.Time) (res []byte, failed string, err error) {
	sched, err := c.schedule(ctx, d, refs, exclude)
	if err != nil {
		return nil, "", err
	}
	id := c.nextID.Add(1)
	p := &pendingCall{attempt: attempt, execs: make(map[string]bool, len(sched)), done: make(chan *Result, 1)}
	for _, a := range sched {
		p.execs[a] = true
	}
	c.mu.Lock()
	c.pending[id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	for _, s := range d.Sources() {
		t := &Trigger{
			CallID: id, Attempt: attempt, DAG: d, Call: call, Schedule: sched, Fn: s,
			Args: call.argsFor(d, s), ResultKey: call.ResultKey, ReplyTo: c.cfg.Addr, Deadline: deadline,
		}
		if err := c.cfg.Network.Trigger(ctx, sched[s], t); err != nil {
			return nil, sched[s], err
		}
	}
	select {
	case r := <-p.done:
		if r.Failed != "" {
			return nil, r.Failed, r.Err()
		}
		return r.Value, "", r.Err()
	case <-ctx.Done():
		return nil, "", fmt.Errorf("%w: call of %s: %w", wire.ErrTimeout, d.Name, ctx.Err())
	}
}

// schedule places d's functions. When no executor can run one of them (none
// reported yet, or the ones that could failed), it waits for an executor
// to report, until ctx ends: a coordinator that just started, or whose
// executors are being replaced, delays calls rather than failing them.
func (c *Coordinator) schedule(ctx context.Context, d *DAG, refs map[string][]string, exclude map[string]bool) (map[string]string, error) {
	for {
		c.mu.Lock()
		views := make([]*execView, 0, len(c.execs))
		for _, s := range c.execs {
			views = append(views, s.view)
		}
		slices.SortFunc(views, func(a, b *execView) int { return compareStrings(a.addr, b.addr) })
		sched, err := place(d, refs, views, exclude, c.rnd, c.cfg.Placement)
		reported := c.reported
		c.mu.Unlock()
		if !errors.Is(err, errNoExecutor) {
			return sched, err
		}
		select {
		case <-reported:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (waited until the call's deadline)", err)
		}
	}
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// CoordinatorStats are a coordinator's counters.
type CoordinatorStats struct {
	Calls, Retries uint64
	Executors      int
}

// Stats returns the coordinator's counters.
func (c *Coordinator) Stats() CoordinatorStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CoordinatorStats{Calls: c.calls.Load(), Retries: c.retries.Load(), Executors: len(c.execs)}
}
