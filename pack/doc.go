// Package pack reads and writes MessagePack with every declared size bounded
// by the buffer that holds it.
//
// Bytes that come from outside (a network frame, a value on disk) are
// untrusted: a 5-byte bin32 header can claim 4 GiB, an array32 header can
// claim 2^32 elements, and nesting can run 100,000 levels deep. Generic
// msgpack decoders allocate what a header claims before reading it. This
// package never does: Validate walks the token stream once and rejects any
// header whose length exceeds the bytes that follow it, and any nesting
// deeper than a limit; Reader applies the same per-token checks as it reads,
// and returns slices of the input rather than copies. So the memory a decoder
// built on Reader allocates is proportional to the input's length, never to
// a number inside it.
//
// The Append functions write the canonical (shortest) encodings, except
// AppendUint64Fixed, which always uses the 9-byte form so that a reader can
// find fields at fixed offsets.
//
// The package is pure: no I/O, no goroutines, no allocation except by the
// Append functions' growth of the caller's slice.
package pack
