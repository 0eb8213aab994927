package executor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/trellisdb/trellis/wire"
)

// Trigger asks an executor to run one function of a call.
type Trigger struct {
	CallID   uint64
	Attempt  uint32
	DAG      *DAG
	Call     *Call
	Schedule map[string]string // function → executor address
	Fn       string
	Args     []Arg             // Fn's own arguments
	Inputs   map[string][]byte // predecessor → its result (one per trigger; an executor joins them)
	// ResultKey, if set, is where the sink stores the result.
	ResultKey string
	ReplyTo   string    // the coordinator's address
	Deadline  time.Time // the call's
	// Snapshot is what a repeatable-read call has read and written so
	// far, key → version (package consistency); nil for other calls.
	Snapshot map[string][]byte
}

// Result is a call's outcome, sent by the executor of the sink (or of the
// function that failed) to the coordinator.
type Result struct {
	CallID   uint64
	Attempt  uint32
	Value    []byte
	Code     wire.Code // CodeOK, or the failure's code
	Msg      string
	Executor string // who sends it
	// Failed names an executor that could not be reached: the call is
	// re-run without it.
	Failed string
}

// Err returns the result's error, nil if it succeeded.
func (r *Result) Err() error {
	if r.Code == wire.CodeOK {
		return nil
	}
	return &wire.Error{Code: r.Code, Msg: r.Msg}
}

// Message is a message from one function of a call to another.
type Message struct {
	CallID   uint64
	Attempt  uint32
	To       string
	Body     []byte
	Deadline time.Time
}

// Report is what an executor tells coordinators periodically.
type Report struct {
	Addr    string
	Load    float64  // share of its workers busy
	Keys    []string // keys its cache holds (most recently used first, bounded)
	Natives []string // the native functions it runs
}

// Network carries triggers, results and messages between coordinators and
// executors, by address. Safe for concurrent use; each method returns once
// the receiver accepted the message (not once it acted on it).
type Network interface {
	Trigger(ctx context.Context, addr string, t *Trigger) error
	Result(ctx context.Context, addr string, r *Result) error
	Message(ctx context.Context, addr string, m *Message) error
	Report(ctx context.Context, addr string, r *Report) error
}

// LocalNetwork connects the executors and coordinators of one process by
// direct calls. Down marks an executor unreachable (tests of failures).
type LocalNetwork struct {
	mu     sync.RWMutex
	execs  map[string]*Executor
	coords map[string]*Coordinator
	down   map[string]bool
}

// NewLocalNetwork returns an empty network.
func NewLocalNetwork() *LocalNetwork {
	return &LocalNetwork{execs: make(map[string]*Executor), coords: make(map[string]*Coordinator), down: make(map[string]bool)}
}

// AddExecutor makes e reachable at its address.
func (n *LocalNetwork) AddExecutor(e *Executor) {
	n.mu.Lock()
	n.execs[e.Addr()] = e
	n.mu.Unlock()
}

// AddCoordinator makes c reachable at its address.
func (n *LocalNetwork) AddCoordinator(c *Coordinator) {
	n.mu.Lock()
	n.coords[c.Addr()] = c
	n.mu.Unlock()
}

// SetDown makes addr unreachable (true) or reachable again.
func (n *LocalNetwork) SetDown(addr string, down bool) {
	n.mu.Lock()
	n.down[addr] = down
	n.mu.Unlock()
}

func (n *LocalNetwork) executor(addr string) (*Executor, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	e, ok := n.execs[addr]
	if !ok || n.down[addr] {
		return nil, fmt.Errorf("%w: executor %s unreachable", wire.ErrUnavailable, addr)
	}
	return e, nil
}

// Trigger implements Network.
func (n *LocalNetwork) Trigger(ctx context.Context, addr string, t *Trigger) error {
	e, err := n.executor(addr)
	if err != nil {
		return err
	}
	return e.Deliver(ctx, t)
}

// Result implements Network.
func (n *LocalNetwork) Result(_ context.Context, addr string, r *Result) error {
	n.mu.RLock()
	c, ok := n.coords[addr]
	down := n.down[r.Executor]
	n.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%w: coordinator %s unreachable", wire.ErrUnavailable, addr)
	}
	if down {
		return fmt.Errorf("%w: executor %s is down", wire.ErrUnavailable, r.Executor)
	}
	c.Complete(r)
	return nil
}

// Message implements Network.
func (n *LocalNetwork) Message(ctx context.Context, addr string, m *Message) error {
	e, err := n.executor(addr)
	if err != nil {
		return err
	}
	return e.Message(ctx, m)
}

// Report implements Network.
func (n *LocalNetwork) Report(_ context.Context, addr string, r *Report) error {
	n.mu.RLock()
	c, ok := n.coords[addr]
	down := n.down[r.Addr]
	n.mu.RUnlock()
	if !ok || down {
		return fmt.Errorf("%w: coordinator %s unreachable", wire.ErrUnavailable, addr)
	}
	c.Report(r)
	return nil
}

var _ Network = (*LocalNetwork)(nil)
