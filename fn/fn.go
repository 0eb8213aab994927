package fn

import (
	"errors"
	"sync/atomic"
)

// Handler is a function's body. args are the call's arguments; in a
// WebAssembly module they (the slice and the bytes) are valid until the
// handler returns and are reused by the next call, so a handler that keeps an
// argument copies it. The returned bytes are the call's result; a non-nil error is
// returned to the caller as a guest error with the error's message.
type Handler func(c *Ctx, args [][]byte) ([]byte, error)

// Host is what a function may ask of the executor running it. Inside
// WebAssembly it is the executor's host calls; natively it is whatever the
// test passes to Invoke. A Host is used by one call at a time.
type Host interface {
	// Get returns a key's value, and false if the key has none.
	Get(key string) (value []byte, ok bool, err error)
	// Put merges value into key.
	Put(key string, value []byte) error
	// Send delivers msg to the function named to in the same DAG call.
	Send(to string, msg []byte) error
	// Recv returns the next message sent to this function, blocking until
	// one arrives or the call's deadline passes.
	Recv() ([]byte, error)
	// Log records a line in the executor's log.
	Log(msg string)
}

// Ctx is a running call's handle on the executor. It is valid only during the
// handler call it was passed to.
type Ctx struct {
	host Host
}

// Get returns the value of key as the executor sees it (its cache or the
// key-value store), and false if the key has no value.
func (c *Ctx) Get(key string) ([]byte, bool, error) { return c.host.Get(key) }

// Put writes value to key.
func (c *Ctx) Put(key string, value []byte) error { return c.host.Put(key, value) }

// Send sends msg to the function named to in the same DAG call.
func (c *Ctx) Send(to string, msg []byte) error { return c.host.Send(to, msg) }

// Recv returns the next message sent to this function; it blocks until one
// arrives or the call's deadline passes.
func (c *Ctx) Recv() ([]byte, error) { return c.host.Recv() }

// Log writes msg to the executor's log.
func (c *Ctx) Log(msg string) { c.host.Log(msg) }

// ErrNoHandler is returned by Invoke, and to the caller of a module, when no
// handler has been registered with Handle.
var ErrNoHandler = errors.New("fn: no handler registered (call fn.Handle in init)")

var handler atomic.Pointer[Handler]

// Handle registers h as the function's handler. Call it from init; a later
// call replaces the handler. It panics if h is nil.
func Handle(h Handler) {
	if h == nil {
		panic("fn: Handle(nil)")
	}
	handler.Store(&h)
}

// Invoke runs the registered handler on host with args, as the executor
// would. It is the hook for testing a function natively.
func Invoke(host Host, args [][]byte) ([]byte, error) {
	return invoke(&Ctx{host: host}, args)
}

func invoke(c *Ctx, args [][]byte) ([]byte, error) {
	h := handler.Load()
	if h == nil {
		return nil, ErrNoHandler
	}
	return (*h)(c, args)
}
