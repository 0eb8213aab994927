package clusterclient

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/wire"
)

// verdict is what to do after one attempt at one replica.
type verdict uint8

const (
	// done: the outcome is final (a result, or an error retrying cannot
	// change): hand it to the caller.
	done verdict = iota
	// refresh: the node routes by a newer state than the client's: fetch
	// the routing state, then route again.
	refresh
	// next: this replica cannot serve the request now (it routes by an
	// older state, or cannot reach enough replicas): try the key's next
	// replica.
	next
	// unreachable: the node could not be reached: try the key's next
	// replica, and try this node last for a while.
	unreachable
)

func (v verdict) String() string {
	switch v {
	case done:
		return "done"
	case refresh:
		return "refresh"
	case next:
		return "next"
	case unreachable:
		return "unreachable"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// unsentError wraps the failure of an attempt that sent nothing (the node
// could not be dialled, or has left the routing state): retrying it is safe
// for every operation.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }

// classify decides what follows an attempt that ended with err, made while
// routing by epoch, for an operation that is idempotent (one whose repetition
// changes nothing more: every write but a counter increment) or not. The
// caller's context must still be live: once it has ended, nothing is
// retried.
//
// A failure that leaves it unknown whether the request was applied (a lost
// connection, a timeout, a write that reached too few replicas) is retried
// only for an idempotent operation; a non-idempotent one returns it.
func classify(err error, epoch uint64, idempotent bool) verdict {
	if err == nil {
		return done
	}
	var unsent *unsentError
	if errors.As(err, &unsent) {
		return unreachable
	}
	var we *wire.Error
	if errors.As(err, &we) { // the node answered
		switch we.Code {
		case wire.CodeWrongOwner:
			if we.Epoch > epoch {
				return refresh
			}
			return next // the node is behind; it catches up by itself
		case wire.CodeUnavailable, wire.CodeTimeout:
			if idempotent {
				return next
			}
		}
		return done
	}
	switch {
	case errors.Is(err, client.ErrConnLost), errors.Is(err, client.ErrTimeout):
		if idempotent {
			return unreachable
		}
	case errors.Is(err, client.ErrUnavailable): // refused before the request was sent
		return unreachable
	}
	return done
}

// backoff is the pause after the round-th round (from 0) in which no replica
// served a request: lo doubling up to hi.
func backoff(round int, lo, hi time.Duration) time.Duration {
	if round >= 30 || lo<<round > hi || lo<<round <= 0 {
		return hi
	}
	return lo << round
}

// sleep waits d, and reports whether it passed before ctx ended or stop
// closed.
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-stop:
		return false
	}
}

// ended reports whether ctx has ended, or its deadline has passed: an
// attempt whose write timed out at the context's deadline (package client
// uses it as the write deadline) may fail before the context's own timer
// has marked it done, and that failure is the deadline's, not the node's.
func ended(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

// ctxErr is the error of a call whose context ended (see ended):
// ErrTimeout with context.DeadlineExceeded for a deadline, the context's
// error otherwise; with the last failure before it, if any, also in the
// chain.
func ctxErr(ctx context.Context, what string, last error) error {
	err := ctx.Err()
	if err == nil { // the deadline passed; the context's timer is late
		err = context.DeadlineExceeded
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", client.ErrTimeout, err)
	}
	if last == nil {
		return fmt.Errorf("trellis: %s: %w", what, err)
	}
	return fmt.Errorf("trellis: %s: %w (last failure: %w)", what, err, last)
}
