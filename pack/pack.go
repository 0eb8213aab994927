package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Errors returned by Validate and Reader. Both wrap more detail with %w.
var (
	// ErrMalformed reports bytes that are not well-formed msgpack: a reserved
	// code, a header claiming more bytes than remain, trailing bytes.
	ErrMalformed = errors.New("malformed msgpack")
	// ErrTooDeep reports nesting deeper than the limit given to Validate.
	ErrTooDeep = errors.New("msgpack nesting too deep")
	// ErrType reports a value of a different msgpack type than the one asked
	// for (a string where an integer was expected, say).
	ErrType = errors.New("unexpected msgpack type")
)

// DefaultMaxDepth is the nesting limit used when a caller passes 0.
const DefaultMaxDepth = 32

// Kind classifies the next value in a buffer.
type Kind uint8

// Kinds of msgpack values.
const (
	KindInvalid Kind = iota
	KindNil
	KindBool
	KindInt   // positive or negative integer of any width
	KindFloat // float32 or float64
	KindStr
	KindBin
	KindArray
	KindMap
	KindExt
)

func (k Kind) String() string {
	switch k {
	case KindNil:
		return "nil"
	case KindBool:
		return "bool"
	case KindInt:
		return "int"
	case KindFloat:
		return "float"
	case KindStr:
		return "str"
	case KindBin:
		return "bin"
	case KindArray:
		return "array"
	case KindMap:
		return "map"
	case KindExt:
		return "ext"
	}
	return "invalid"
}

// token is one msgpack header: its kind, the bytes the header itself takes,
// and, for containers, the number of child values (maps count keys and
// values); for str, bin and ext, the payload length.
type token struct {
	kind     Kind
	hdr      int // header length in bytes, including the code byte
	payload  int // bytes of payload following the header (scalars, str, bin, ext)
	children int // child values (arrays: n, maps: 2n)
}

// next decodes the header at b[0:] and checks that its payload, or for
// containers one byte per child, fits in b. It never allocates.
func next(b []byte) (token, error) {
	if len(b) == 0 {
		return token{}, fmt.Errorf("%w: unexpected end of input", ErrMalformed)
	}
	c := b[0]
	var t token
	switch {
	case c <= 0x7f || c >= 0xe0:
		return token{kind: KindInt, hdr: 1}, nil
	case c >= 0x80 && c <= 0x8f:
		t = token{kind: KindMap, hdr: 1, children: 2 * int(c&0x0f)}
	case c >= 0x90 && c <= 0x9f:
		t = token{kind: KindArray, hdr: 1, children: int(c & 0x0f)}
	case c >= 0xa0 && c <= 0xbf:
		t = token{kind: KindStr, hdr: 1, payload: int(c & 0x1f)}
	default:
		var err error
		t, err = nextLong(b)
		if err != nil {
			return token{}, err
		}
	}
	rest := len(b) - t.hdr
	if rest < 0 {
		return token{}, fmt.Errorf("%w: truncated header 0x%02x", ErrMalformed, c)
	}
	if t.payload > rest {
		return token{}, fmt.Errorf("%w: header 0x%02x claims %d bytes, %d remain", ErrMalformed, c, t.payload, rest)
	}
	if t.children > rest-t.payload {
		return token{}, fmt.Errorf("%w: header 0x%02x claims %d elements, %d bytes remain", ErrMalformed, c, t.children, rest)
	}
	return t, nil
}

func nextLong(b []byte) (token, error) {
	c := b[0]
	switch c {
	case 0xc0:
		return token{kind: KindNil, hdr: 1}, nil
	case 0xc2, 0xc3:
		return token{kind: KindBool, hdr: 1}, nil
	case 0xcc, 0xd0:
		return token{kind: KindInt, hdr: 1, payload: 1}, nil
	case 0xcd, 0xd1:
		return token{kind: KindInt, hdr: 1, payload: 2}, nil
	case 0xce, 0xd2:
		return token{kind: KindInt, hdr: 1, payload: 4}, nil
	case 0xcf, 0xd3:
		return token{kind: KindInt, hdr: 1, payload: 8}, nil
	case 0xca:
		return token{kind: KindFloat, hdr: 1, payload: 4}, nil
	case 0xcb:
		return token{kind: KindFloat, hdr: 1, payload: 8}, nil
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		return token{kind: KindExt, hdr: 2, payload: 1 << (c - 0xd4)}, nil
	}
	var kind Kind
	var width int
	switch c {
	case 0xd9, 0xda, 0xdb:
		kind, width = KindStr, 1<<(c-0xd9)
	case 0xc4, 0xc5, 0xc6:
		kind, width = KindBin, 1<<(c-0xc4)
	case 0xc7, 0xc8, 0xc9:
		kind, width = KindExt, 1<<(c-0xc7)
	case 0xdc, 0xdd:
		kind, width = KindArray, 2<<(c-0xdc)
	case 0xde, 0xdf:
		kind, width = KindMap, 2<<(c-0xde)
	default: // 0xc1 is reserved
		return token{}, fmt.Errorf("%w: reserved code 0x%02x", ErrMalformed, c)
	}
	if len(b) < 1+width {
		return token{}, fmt.Errorf("%w: truncated header 0x%02x", ErrMalformed, c)
	}
	var n uint64
	switch width {
	case 1:
		n = uint64(b[1])
	case 2:
		n = uint64(binary.BigEndian.Uint16(b[1:]))
	case 4:
		n = uint64(binary.BigEndian.Uint32(b[1:]))
	}
	// n < 2^32, so it fits an int on 64-bit platforms; the fit check in next
	// rejects anything larger than the buffer before anyone uses it.
	if n > math.MaxInt32 {
		return token{}, fmt.Errorf("%w: header 0x%02x claims %d", ErrMalformed, c, n)
	}
	t := token{kind: kind, hdr: 1 + width}
	switch kind {
	case KindArray:
		t.children = int(n)
	case KindMap:
		t.children = 2 * int(n)
	case KindExt:
		t.hdr++ // type byte
		t.payload = int(n)
	default:
		t.payload = int(n)
	}
	return t, nil
}

// Validate reports whether b holds exactly one msgpack value, with every
// length it declares fitting inside b and containers nested at most maxDepth
// deep (DefaultMaxDepth when maxDepth <= 0). It runs in time linear in len(b)
// and does not allocate.
func Validate(b []byte, maxDepth int) error {
	n, err := validateOne(b, maxDepth)
	if err != nil {
		return err
	}
	if n != len(b) {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-n)
	}
	return nil
}

// ValidatePrefix is like Validate but accepts bytes after the first value and
// returns the length of that value.
func ValidatePrefix(b []byte, maxDepth int) (int, error) {
	return validateOne(b, maxDepth)
}

func validateOne(b []byte, maxDepth int) (int, error) {
	if maxDepth <= 0 {
		maxDepth = DefaultMaxDepth
	}
	// pending[d] counts values still to read at depth d. A fixed array keeps
	// Validate allocation-free; depths beyond it are rejected anyway.
	var stack [64]int
	if maxDepth > len(stack) {
		maxDepth = len(stack)
	}
	depth := 0
	stack[0] = 1
	off := 0
	for {
		for depth >= 0 && stack[depth] == 0 {
			depth--
		}
		if depth < 0 {
			return off, nil
		}
		stack[depth]--
		t, err := next(b[off:])
		if err != nil {
			return 0, err
		}
		off += t.hdr + t.payload
		if t.children > 0 {
			if depth+1 >= maxDepth {
				return 0, fmt.Errorf("%w: more than %d levels", ErrTooDeep, maxDepth)
			}
			depth++
			stack[depth] = t.children
		}
	}
}
