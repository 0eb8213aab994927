package kvs

import (
	"errors"

	"github.com/trellisdb/trellis/wire"
)

// Errors returned by the store. The protocol-facing ones are the wire
// sentinels, so a server reports them with the matching code and a client's
// errors.Is sees the same value.
var (
	// ErrNotFound: the key holds no value.
	ErrNotFound = wire.ErrNotFound
	// ErrTypeMismatch: the key holds a lattice of another type; nothing
	// changed.
	ErrTypeMismatch = wire.ErrTypeMismatch
	// ErrTooLarge: a key or value exceeds the configured limit.
	ErrTooLarge = wire.ErrTooLarge
	// ErrNotInteger: a counter operation met a value that is not a decimal
	// integer in int64 range (Redis INCR on "abc").
	ErrNotInteger error = &wire.Error{Code: wire.CodeBadRequest, Msg: "value is not an integer or out of range"}
	// ErrOverflow: a counter operation would leave the int64 range; nothing
	// changed.
	ErrOverflow error = &wire.Error{Code: wire.CodeBadRequest, Msg: "increment or decrement would overflow"}
)

// ErrPeerLost: a connection to another storage node (Loop.Send) broke
// before the call's response arrived; the peer may or may not have applied
// the request.
var ErrPeerLost = errors.New("peer connection lost")

// errBadValue wraps a value that does not decode as a lattice.
var errBadValue = wire.ErrBadRequest
