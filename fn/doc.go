// Package fn is the SDK for Trellis functions written in Go and compiled to
// WebAssembly. A function is a package main that registers one handler in
// init and has an empty main:
//
//	package main
//
//	import (
//		"strconv"
//
//		"github.com/trellisdb/trellis/fn"
//	)
//
//	func init() { fn.Handle(increment) }
//
//	func increment(c *fn.Ctx, args [][]byte) ([]byte, error) {
//		x, err := strconv.ParseInt(string(args[0]), 10, 64)
//		if err != nil {
//			return nil, err
//		}
//		return []byte(strconv.FormatInt(x+1, 10)), nil
//	}
//
//	func main() {}
//
// Build it as a WASI reactor, with `trellis fn build DIR -o f.wasm` or
// directly:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o f.wasm .
//
// The executor instantiates the module (which runs init), then calls the
// handler once per function call, possibly many times on one instance, never
// concurrently on one instance. Package-level state may therefore survive
// from one call to the next, but nothing guarantees that it does: instances
// are created and discarded at the executor's discretion. Durable state
// belongs in the key-value store (Ctx.Get, Ctx.Put).
//
// A handler's error returns to the caller as a guest error carrying its
// message. A panic, running out of memory, or running past the call's
// deadline ends the instance; the caller sees a trap or a timeout.
//
// Inside the sandbox there is no file system, network, environment or
// argument vector: the only way out is through Ctx.
//
// # Native builds
//
// On every other platform the package builds too, so a function's handler
// can be unit-tested with go test: Invoke runs the registered handler against
// any Host, such as the in-memory one in package fntest.
//
// The ABI between the module and the executor is documented in package
// fn/abi. Handle keeps the handler in a package variable: a WebAssembly
// module has exactly one handler, and the exported entry point has no other
// way to find it.
package fn
