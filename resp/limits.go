package resp

import (
	"errors"
	"fmt"
)

// Defaults applied to zero fields of Limits.
const (
	// DefaultMaxArgs is Redis's historical multibulk limit (1024*1024).
	DefaultMaxArgs = 1024 * 1024
	// DefaultMaxBulk is Redis's default proto-max-bulk-len (512 MiB).
	DefaultMaxBulk = 512 << 20
	// DefaultMaxInline is Redis's PROTO_INLINE_MAX_SIZE (64 KiB).
	DefaultMaxInline = 64 << 10
	// DefaultMaxDepth bounds the nesting of replies.
	DefaultMaxDepth = 32
)

// maxHeaderLine is how long a "*<n>" or "$<n>" line may grow without CR
// before it is refused. Redis uses PROTO_INLINE_MAX_SIZE for it, fixed.
const maxHeaderLine = 64 << 10

// Limits bounds what a parser accepts. Every claim the input makes (an
// element count, a bulk length) is checked against them before it is acted
// on. The zero value means the defaults.
type Limits struct {
	// MaxArgs is the largest element count of a multibulk request, and of
	// an array reply. 0 means DefaultMaxArgs.
	MaxArgs int
	// MaxBulk is the largest bulk argument or bulk reply, in bytes; servers
	// pass their value-size limit. It also bounds simple-string and error
	// reply lines. 0 means DefaultMaxBulk.
	MaxBulk int
	// MaxInline is the most bytes an inline command line may hold before
	// its terminating '\n' (a '\r' before the '\n' counts), as Redis
	// measures PROTO_INLINE_MAX_SIZE. 0 means DefaultMaxInline.
	MaxInline int
	// MaxDepth is the deepest nesting of arrays in a reply; a flat array is
	// depth 1. Requests are never nested. 0 means DefaultMaxDepth.
	MaxDepth int
}

// ErrInvalidLimits is wrapped by the error Limits.Validate returns.
var ErrInvalidLimits = errors.New("resp: invalid limits")

// Validate reports a negative field. Parsers treat negative fields as zero
// (the default), so Validate is where a configuration mistake surfaces.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxArgs", l.MaxArgs}, {"MaxBulk", l.MaxBulk}, {"MaxInline", l.MaxInline}, {"MaxDepth", l.MaxDepth}} {
		if f.v < 0 {
			return fmt.Errorf("%w: %s is %d", ErrInvalidLimits, f.name, f.v)
		}
	}
	return nil
}

// orDefaults returns l with non-positive fields replaced by the defaults.
func (l Limits) orDefaults() Limits {
	if l.MaxArgs <= 0 {
		l.MaxArgs = DefaultMaxArgs
	}
	if l.MaxBulk <= 0 {
		l.MaxBulk = DefaultMaxBulk
	}
	if l.MaxInline <= 0 {
		l.MaxInline = DefaultMaxInline
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}
