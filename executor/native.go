package executor

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"
)

// NativeFunc is a native Go function: it gets the call's host services and
// its arguments (its own, then its predecessors' results) and returns its
// result. It must stop when c's context ends.
type NativeFunc func(c *Ctx, args [][]byte) ([]byte, error)

// Registry holds the native functions an executor runs, by name (a DAG
// refers to them as NativePrefix + name). It is an explicit value handed to
// the executor, so that a program embedding Trellis registers its own. Safe
// for concurrent use.
type Registry struct {
	mu  sync.RWMutex
	fns map[string]NativeFunc
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{fns: make(map[string]NativeFunc)} }

// Register adds fn under name (without the prefix). It replaces a function
// of the same name.
func (r *Registry) Register(name string, fn NativeFunc) error {
	if err := ValidName(name); err != nil {
		return err
	}
	r.mu.Lock()
	r.fns[name] = fn
	r.mu.Unlock()
	return nil
}

// Lookup returns the function a reference (NativePrefix + name) names.
func (r *Registry) Lookup(ref string) (NativeFunc, bool) {
	if len(ref) <= len(NativePrefix) || ref[:len(NativePrefix)] != NativePrefix {
		return nil, false
	}
	r.mu.RLock()
	fn, ok := r.fns[ref[len(NativePrefix):]]
	r.mu.RUnlock()
	return fn, ok
}

// Names returns the references of the registered functions, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.fns))
	for _, n := range slices.Sorted(maps.Keys(r.fns)) {
		out = append(out, NativePrefix+n)
	}
	return out
}

// Builtins returns a registry with the functions `trellis up` offers for
// trying and benchmarking: increment (x → x+1) and square (x → x*x), on
// decimal integers, the native twins of examples/functions; and sleep
// (x → x after x milliseconds, at most MaxSleep), for trying deadlines and
// executor failures.
func Builtins() *Registry {
	r := NewRegistry()
	_ = r.Register("increment", func(_ *Ctx, args [][]byte) ([]byte, error) {
		x, err := intArg(args)
		if err != nil {
			return nil, err
		}
		return strconv.AppendInt(nil, x+1, 10), nil
	})
	_ = r.Register("square", func(_ *Ctx, args [][]byte) ([]byte, error) {
		x, err := intArg(args)
		if err != nil {
			return nil, err
		}
		return strconv.AppendInt(nil, x*x, 10), nil
	})
	_ = r.Register("sleep", func(c *Ctx, args [][]byte) ([]byte, error) {
		ms, err := intArg(args)
		if err != nil {
			return nil, err
		}
		if ms < 0 || ms > MaxSleep.Milliseconds() {
			return nil, fmt.Errorf("sleep: want 0 to %d milliseconds, got %d", MaxSleep.Milliseconds(), ms)
		}
		c.Log(fmt.Sprintf("sleeping %d ms", ms))
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return args[0], nil
		case <-c.Context().Done():
			return nil, c.Context().Err()
		}
	})
	return r
}

// MaxSleep bounds the builtin sleep.
const MaxSleep = time.Minute

func intArg(args [][]byte) (int64, error) {
	if len(args) == 0 {
		return 0, fmt.Errorf("want a decimal integer argument, got none")
	}
	x, err := strconv.ParseInt(string(args[0]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("want a decimal integer argument: %w", err)
	}
	return x, nil
}
