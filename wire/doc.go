// Package wire defines Trellis's native protocol: how requests and responses
// are framed on a TCP connection, how their bodies are encoded, and the typed
// error codes. docs/protocol.md is the specification; this package is its Go
// implementation, shared by the server (kvs) and the client.
//
// A frame is a 4-byte big-endian body length followed by a msgpack body.
// A request body is the array [id, op, opts, args...]; a response body is
// [id, code, result] or, for an error, [id, code, message] (plus the ring
// epoch for CodeWrongOwner). Responses on one connection come in request
// order, so a client may pipeline as many requests as it likes.
//
// Nothing from the network is trusted: SplitFrame rejects a length above
// Limits.MaxFrame before anything is buffered for it; Request.Decode reads
// with pack.Reader, which checks every declared size against the bytes that
// remain before using it, and never recurses; Response.Decode also validates
// the whole body with pack.Validate (nesting bounded by Limits.MaxDepth),
// since results may nest. Decoded
// byte slices alias the frame; they are valid until the caller reuses or
// releases the frame's buffer.
//
// The package is pure: no I/O, no goroutines.
package wire
