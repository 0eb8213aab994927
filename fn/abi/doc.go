// Package abi is the contract between a Trellis WebAssembly function (built
// with package fn) and the executor that runs it (package executor/wasm): the
// names of the exports and imports, the status codes, and the byte encoding of
// an argument list. Both sides import it, so they cannot drift apart.
//
// The package is pure: no I/O, no unsafe, no goroutines. It builds for every
// GOOS/GOARCH, including wasip1/wasm, and imports neither fmt nor reflect, to
// keep function modules small.
//
// # Version
//
// Version is 1. A guest reports the version it was built against from its
// export [ExportVersion]; a host refuses a module whose version it does not
// implement.
//
// # Guest exports
//
//	trellis_abi() i32                  ABI version, Version.
//	trellis_alloc(size i32) i32        address of a guest buffer of at least size bytes,
//	                                   valid until the next trellis_alloc.
//	trellis_call(ptr, len i32) i64     run the handler on the argument block at
//	                                   [ptr, ptr+len) (which must lie inside the buffer of
//	                                   the last trellis_alloc); returns Pack(rptr, rlen) of
//	                                   the reply block, valid until the next trellis_call.
//	_initialize()                      WASI reactor initialisation (package init).
//
// The argument block is the encoding of [AppendArgs]. The reply block is one
// status byte ([StatusOK] or [StatusError]) followed by the result bytes or
// the handler's error message.
//
// # Host imports (module "trellis")
//
//	kv_get(kptr, klen, bptr, bcap i32) i64
//	kv_put(kptr, klen, vptr, vlen, bptr, bcap i32) i64
//	send(tptr, tlen, mptr, mlen, bptr, bcap i32) i64
//	recv(bptr, bcap i32) i64
//	log(mptr, mlen i32)
//	take(bptr, blen i32) i32
//
// Every call but log and take returns Pack(status, n): status is
// [StatusOK], [StatusNotFound] (kv_get only) or [StatusError]; n is the length
// of the reply payload (the value, the message, or an error message). If
// n <= bcap the payload has been copied to [bptr, bptr+n); otherwise the host
// holds it and the guest fetches it with take(ptr, n) into a buffer of n bytes
// before its next host call; take returns the number of bytes copied.
//
// The host bounds-checks every address and length it reads from guest memory
// and refuses (traps the instance on) any that fall outside it or exceed its
// configured limit.
package abi
