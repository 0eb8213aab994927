// Package wasm runs Trellis functions compiled to WebAssembly, in a wazero
// sandbox, with a memory limit per instance and the caller's deadline as the
// time limit.
//
// A Runtime owns one wazero runtime (the optimizing compiler, closing a
// running instance when its context is done) with WASI and the "trellis"
// host module instantiated once. Compile validates and compiles a module and
// returns a Module; Module.Call runs one call on a warm instance from the
// Module's pool. Instances are single-threaded: one call at a time each, so
// concurrent calls use distinct instances. An instance that trapped or ran
// past its deadline is closed, never reused; everything else goes back to the
// pool (up to Config.PoolSize idle instances). Call does not bound
// concurrency: each concurrent call beyond the idle instances instantiates
// one (up to Config.MemoryLimit of memory each), so the executor's worker
// pool is what limits them.
//
// # Sandbox
//
// A guest sees WASI with no preopened directories, no sockets, no
// environment and no arguments; its stdout is discarded and the start of its
// stderr is kept for the message of a trap. Clocks and randomness are the
// host's. The only other way out is the host module below, whose calls go to
// the Host passed to Call.
//
// # ABI (version 1)
//
// The ABI is defined in package fn/abi, which the guest SDK (package fn) and
// this package share. In brief:
//
// Guest exports:
//
//	_initialize()                   WASI reactor start: runs package init. Called once per instance.
//	trellis_abi() i32               ABI version (1), checked by Compile.
//	trellis_alloc(size i32) i32     a guest buffer of >= size bytes, valid until the next trellis_alloc.
//	trellis_call(ptr, len i32) i64  run the handler on the argument block at ptr; returns rptr<<32|rlen
//	                                of the reply block: one status byte (0 ok, 2 error) + result or message.
//	memory                          the linear memory.
//
// An argument block is u32 count, then per argument u32 length and bytes,
// little-endian. The host asks for a new buffer only when the arguments
// outgrow the last one.
//
// Host imports, module "trellis" (every address/length pair is checked against the
// guest's memory; a pair outside it traps the instance):
//
//	kv_get(kptr, klen, bptr, bcap i32) i64                  Host.Get
//	kv_put(kptr, klen, vptr, vlen, bptr, bcap i32) i64      Host.Put
//	send(tptr, tlen, mptr, mlen, bptr, bcap i32) i64        Host.Send
//	recv(bptr, bcap i32) i64                                Host.Recv
//	log(mptr, mlen i32)                                     Host.Log
//	take(bptr, blen i32) i32                                fetch a reply that did not fit
//
// The i64 result is status<<32|n: status 0 ok, 1 not found (kv_get), 2 error;
// n is the length of the payload (value, message or error text), which the
// host has copied to bptr if n <= bcap and otherwise holds for one take.
// Lengths the guest hands over (keys, values, messages, results) above
// Config.MaxResult are refused: a host call gets an error reply, a result
// makes Call fail with ErrTooLarge.
//
// # Cost
//
// Stopping a runaway guest at its deadline (wazero's WithCloseOnContextDone)
// makes every loop header of compiled guest code call out to check the
// context, and Go compiles every function to wasm with such a loop, so guest
// Go code runs several times slower than unchecked: a Go allocation costs
// about a microsecond. The SDK's entry point therefore allocates nothing
// itself, and wazero starts one goroutine per call to watch the context. A
// warm call of a trivial handler costs about 5 µs; instantiating (a cold call)
// a few milliseconds; compiling a small Go module most of a second, or tens
// of milliseconds from the on-disk cache.
//
// # Errors
//
// Call's errors wrap one of ErrTimeout (the context ended first), ErrTrap
// (the instance failed: a WebAssembly trap, a Go panic or fatal error such as
// running out of memory, an exit, an ABI violation), ErrGuest (the handler
// returned an error; its message follows), ErrTooLarge or ErrClosed.
package wasm
