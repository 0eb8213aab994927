package abi

import (
	"errors"
	"strconv"
)

// Version is the ABI version described in the package documentation.
const Version = 1

// Names of the guest exports and the host module and its imports.
const (
	ExportVersion = "trellis_abi"
	ExportAlloc   = "trellis_alloc"
	ExportCall    = "trellis_call"
	ExportInit    = "_initialize"

	HostModule = "trellis"
	ImportGet  = "kv_get"
	ImportPut  = "kv_put"
	ImportSend = "send"
	ImportRecv = "recv"
	ImportLog  = "log"
	ImportTake = "take"
)

// Status codes of host-call replies and of the trellis_call reply block.
const (
	StatusOK       = 0 // success; the payload is the result
	StatusNotFound = 1 // kv_get: the key has no value; empty payload
	StatusError    = 2 // failure; the payload is the error message
)

// ErrMalformed reports an argument block that is not the encoding of an
// argument list.
var ErrMalformed = errors.New("abi: malformed argument block")

// Pack returns hi<<32 | lo, the form in which an (address, length) or a
// (status, length) pair crosses the boundary as one i64.
func Pack(hi, lo uint32) uint64 { return uint64(hi)<<32 | uint64(lo) }

// Unpack is the inverse of Pack.
func Unpack(v uint64) (hi, lo uint32) { return uint32(v >> 32), uint32(v) }

// ArgsSize returns the length of the encoding of args.
func ArgsSize(args [][]byte) int {
	n := 4
	for _, a := range args {
		n += 4 + len(a)
	}
	return n
}

// AppendArgs appends the encoding of args to dst: the count as a
// little-endian u32, then for each argument its length as a little-endian u32
// and its bytes.
func AppendArgs(dst []byte, args [][]byte) []byte {
	dst = appendU32(dst, uint32(len(args)))
	for _, a := range args {
		dst = appendU32(dst, uint32(len(a)))
		dst = append(dst, a...)
	}
	return dst
}

// DecodeArgs decodes an argument block made by AppendArgs, appending the
// arguments to dst[:0]; they alias b. Trailing bytes, a count or a length that overruns b are errors
// wrapping ErrMalformed; nothing is allocated in proportion to a count that b
// cannot hold.
func DecodeArgs(dst [][]byte, b []byte) ([][]byte, error) {
	if len(b) < 4 {
		return nil, malformed("block of " + itoa(len(b)) + " bytes, want at least 4")
	}
	count := u32(b)
	b = b[4:]
	if uint64(count) > uint64(len(b))/4 {
		return nil, malformed(itoa(int(count)) + " arguments in " + itoa(len(b)) + " bytes")
	}
	args := dst[:0]
	if uint64(cap(args)) < uint64(count) {
		args = make([][]byte, 0, count)
	}
	for i := 0; i < int(count); i++ {
		if len(b) < 4 {
			return nil, malformed("argument " + itoa(i) + ": truncated length")
		}
		n := u32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) {
			return nil, malformed("argument " + itoa(i) + ": length " + itoa(int(n)) + ", " + itoa(len(b)) + " bytes left")
		}
		args = append(args, b[:n:n])
		b = b[n:]
	}
	if len(b) != 0 {
		return nil, malformed(itoa(len(b)) + " trailing bytes")
	}
	return args, nil
}

type malformedError string

func (e malformedError) Error() string { return ErrMalformed.Error() + ": " + string(e) }
func (e malformedError) Unwrap() error { return ErrMalformed }
func malformed(detail string) error    { return malformedError(detail) }
func itoa(n int) string                { return strconv.Itoa(n) }
func u32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
func appendU32(b []byte, v uint32) []byte {
	return append(b, byte(v), byte(v>>8), byte(v>>16), byte(v>>24))
}
