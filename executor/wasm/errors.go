package wasm

import "errors"

// Sentinel errors. Errors returned by this package wrap one of them, with
// detail; test with errors.Is.
var (
	// ErrBadModule: the bytes are not a WebAssembly module, or the module
	// lacks the Trellis entry points, speaks another ABI version, or failed
	// to initialise.
	ErrBadModule = errors.New("wasm: bad module")
	// ErrTimeout: the call's context was done (deadline or cancellation)
	// before the guest finished. The error also wraps the context's error.
	ErrTimeout = errors.New("wasm: call timed out")
	// ErrTrap: the guest instance failed and was discarded.
	ErrTrap = errors.New("wasm: guest trapped")
	// ErrGuest: the handler returned an error; the message follows.
	ErrGuest = errors.New("wasm: guest error")
	// ErrTooLarge: a result or argument list exceeds the configured bounds.
	ErrTooLarge = errors.New("wasm: too large")
	// ErrClosed: the Module or Runtime has been closed.
	ErrClosed = errors.New("wasm: closed")
)
