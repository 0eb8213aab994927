package route

import (
	"fmt"
	"io"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// MaxSnapshotSize bounds the State encoding a node restores from a snapshot
// (its own, or one a leader installs).
const MaxSnapshotSize = 256 << 20

// version is one applied State and the channel closed when it is replaced.
type version struct {
	state   State
	changed chan struct{}
}

// fsm is the raft.FSM of a routing node. Raft calls Apply, Snapshot and
// Restore from one goroutine at a time (Restore at start from NewRaft's
// caller, then from its FSM goroutine), so writes need no lock; readers load
// the current version atomically.
type fsm struct {
	cur atomic.Pointer[version]
}

func newFSM() *fsm {
	f := &fsm{}
	f.cur.Store(&version{changed: make(chan struct{})})
	return f
}

func (f *fsm) state() State { return f.cur.Load().state }

func (f *fsm) watch() <-chan struct{} { return f.cur.Load().changed }

// set publishes s and wakes the watchers of the previous version.
func (f *fsm) set(s State) {
	old := f.cur.Swap(&version{state: s, changed: make(chan struct{})})
	close(old.changed)
}

// applyResult is what Apply returns to raft, and raft to Propose.
type applyResult struct {
	state State // after the command, or the state it was refused against
	err   error
}

// Apply decodes a Command and applies it. A command that does not decode or
// that Apply refuses leaves the state unchanged on every node alike.
func (f *fsm) Apply(l *raft.Log) any {
	cur := f.state()
	c, err := DecodeCommand(l.Data)
	if err != nil {
		return applyResult{cur, fmt.Errorf("log entry %d: %w", l.Index, err)}
	}
	next, err := Apply(cur, c)
	if err == nil && next.Epoch != cur.Epoch {
		f.set(next)
	}
	return applyResult{next, err}
}

// Snapshot captures the current State; Persist encodes it.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return stateSnapshot{f.state()}, nil
}

// Restore replaces the state with the one in a snapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, MaxSnapshotSize+1))
	if err != nil {
		return fmt.Errorf("route: read snapshot: %w", err)
	}
	if len(b) > MaxSnapshotSize {
		return fmt.Errorf("%w: snapshot larger than %d bytes", ErrMalformed, MaxSnapshotSize)
	}
	s, err := DecodeState(b)
	if err != nil {
		return fmt.Errorf("route: restore snapshot: %w", err)
	}
	f.set(s)
	return nil
}

type stateSnapshot struct{ s State }

func (s stateSnapshot) Persist(sink raft.SnapshotSink) error {
	b, err := s.s.AppendBinary(nil)
	if err == nil {
		_, err = sink.Write(b)
	}
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("route: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (stateSnapshot) Release() {}
