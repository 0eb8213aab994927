package client

import (
	"errors"

	"github.com/trellisdb/trellis/wire"
)

// Errors a call can return, for errors.Is. Server errors arrive as
// *wire.Error values that match these sentinels by code. A node that cannot
// be reached is ErrUnavailable; a deadline that passes is ErrTimeout (with
// context.DeadlineExceeded in the chain too).
var (
	ErrNotFound     = wire.ErrNotFound
	ErrWrongOwner   = wire.ErrWrongOwner
	ErrTypeMismatch = wire.ErrTypeMismatch
	ErrTooLarge     = wire.ErrTooLarge
	ErrBadRequest   = wire.ErrBadRequest
	ErrUnauthorized = wire.ErrUnauthorized
	ErrUnavailable  = wire.ErrUnavailable
	ErrTimeout      = wire.ErrTimeout
	ErrInternal     = wire.ErrInternal
	// ErrFunction: a called function returned an error, trapped or
	// overran its deadline; the message says which and why.
	ErrFunction = wire.ErrFunction
	// ErrConflict: a repeatable-read DAG call kept seeing two versions of
	// one key, through every re-run its coordinator allows.
	ErrConflict = wire.ErrConflict

	// ErrClosed: the client was closed.
	ErrClosed = errors.New("client closed")
	// ErrConnLost: the connection broke before the response arrived; the
	// request may or may not have been applied.
	ErrConnLost = errors.New("connection lost")
)
