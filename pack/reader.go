package pack

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Reader reads msgpack values from a byte slice, one after another. Every
// method checks its header against the bytes that remain, so a Reader is safe
// on unvalidated input: a container length it returns never exceeds the bytes
// left (one byte per element), and a byte string it returns is a sub-slice of
// the input, valid as long as the input is.
//
// Reader does not limit nesting; callers that recurse should Validate the
// whole buffer first. The first error sticks: later calls return it again.
type Reader struct {
	b   []byte
	off int
	err error
}

// NewReader returns a Reader positioned at the start of b.
func NewReader(b []byte) Reader { return Reader{b: b} }

// Reset repositions r at the start of b and clears its error.
func (r *Reader) Reset(b []byte) { *r = Reader{b: b} }

// Err returns the first error the Reader met, or nil.
func (r *Reader) Err() error { return r.err }

// Len returns the number of unread bytes.
func (r *Reader) Len() int { return len(r.b) - r.off }

// Offset returns the number of bytes read so far.
func (r *Reader) Offset() int { return r.off }

// Rest returns the unread bytes.
func (r *Reader) Rest() []byte { return r.b[r.off:] }

func (r *Reader) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}

// Peek returns the kind of the next value without consuming it.
func (r *Reader) Peek() Kind {
	if r.err != nil {
		return KindInvalid
	}
	t, err := next(r.b[r.off:])
	if err != nil {
		return KindInvalid
	}
	return t.kind
}

func (r *Reader) header(want Kind) (token, error) {
	if r.err != nil {
		return token{}, r.err
	}
	t, err := next(r.b[r.off:])
	if err != nil {
		return token{}, r.fail(err)
	}
	if t.kind != want {
		return token{}, r.fail(fmt.Errorf("%w: want %s, have %s", ErrType, want, t.kind))
	}
	return t, nil
}

// ArrayLen reads an array header and returns its element count.
func (r *Reader) ArrayLen() (int, error) {
	t, err := r.header(KindArray)
	if err != nil {
		return 0, err
	}
	r.off += t.hdr
	return t.children, nil
}

// MapLen reads a map header and returns its number of key/value pairs.
func (r *Reader) MapLen() (int, error) {
	t, err := r.header(KindMap)
	if err != nil {
		return 0, err
	}
	r.off += t.hdr
	return t.children / 2, nil
}

// Nil consumes a nil and reports true if the next value is nil; otherwise it
// consumes nothing and reports false.
func (r *Reader) Nil() bool {
	if r.err == nil && r.off < len(r.b) && r.b[r.off] == 0xc0 {
		r.off++
		return true
	}
	return false
}

// Bool reads a boolean.
func (r *Reader) Bool() (bool, error) {
	if _, err := r.header(KindBool); err != nil {
		return false, err
	}
	v := r.b[r.off] == 0xc3
	r.off++
	return v, nil
}

// Uint reads a non-negative integer of any width.
func (r *Reader) Uint() (uint64, error) {
	t, err := r.header(KindInt)
	if err != nil {
		return 0, err
	}
	c := r.b[r.off]
	p := r.b[r.off+1 : r.off+1+t.payload]
	var v uint64
	switch {
	case c <= 0x7f:
		v = uint64(c)
	case c == 0xcc:
		v = uint64(p[0])
	case c == 0xcd:
		v = uint64(binary.BigEndian.Uint16(p))
	case c == 0xce:
		v = uint64(binary.BigEndian.Uint32(p))
	case c == 0xcf:
		v = binary.BigEndian.Uint64(p)
	default:
		s, _ := signed(c, p)
		if s < 0 {
			return 0, r.fail(fmt.Errorf("%w: negative integer %d where unsigned expected", ErrType, s))
		}
		v = uint64(s)
	}
	r.off += t.hdr + t.payload
	return v, nil
}

// Int reads an integer of any width that fits in an int64.
func (r *Reader) Int() (int64, error) {
	t, err := r.header(KindInt)
	if err != nil {
		return 0, err
	}
	c := r.b[r.off]
	p := r.b[r.off+1 : r.off+1+t.payload]
	v, ok := signed(c, p)
	if !ok {
		return 0, r.fail(fmt.Errorf("%w: integer overflows int64", ErrType))
	}
	r.off += t.hdr + t.payload
	return v, nil
}

// signed decodes an integer token; ok is false for a uint64 above MaxInt64.
func signed(c byte, p []byte) (int64, bool) {
	switch {
	case c <= 0x7f:
		return int64(c), true
	case c >= 0xe0:
		return int64(int8(c)), true
	case c == 0xcc:
		return int64(p[0]), true
	case c == 0xcd:
		return int64(binary.BigEndian.Uint16(p)), true
	case c == 0xce:
		return int64(binary.BigEndian.Uint32(p)), true
	case c == 0xcf:
		u := binary.BigEndian.Uint64(p)
		return int64(u), u <= math.MaxInt64
	case c == 0xd0:
		return int64(int8(p[0])), true
	case c == 0xd1:
		return int64(int16(binary.BigEndian.Uint16(p))), true
	case c == 0xd2:
		return int64(int32(binary.BigEndian.Uint32(p))), true
	default: // 0xd3
		return int64(binary.BigEndian.Uint64(p)), true
	}
}

// Float reads a float32 or float64 as a float64.
func (r *Reader) Float() (float64, error) {
	t, err := r.header(KindFloat)
	if err != nil {
		return 0, err
	}
	p := r.b[r.off+1 : r.off+1+t.payload]
	var v float64
	if t.payload == 4 {
		v = float64(math.Float32frombits(binary.BigEndian.Uint32(p)))
	} else {
		v = math.Float64frombits(binary.BigEndian.Uint64(p))
	}
	r.off += t.hdr + t.payload
	return v, nil
}

// Bytes reads a bin or str value and returns it without copying.
func (r *Reader) Bytes() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	t, err := next(r.b[r.off:])
	if err != nil {
		return nil, r.fail(err)
	}
	if t.kind != KindBin && t.kind != KindStr {
		return nil, r.fail(fmt.Errorf("%w: want bin or str, have %s", ErrType, t.kind))
	}
	start := r.off + t.hdr
	r.off = start + t.payload
	return r.b[start:r.off:r.off], nil
}

// String reads a str or bin value as a (copied) string.
func (r *Reader) String() (string, error) {
	b, err := r.Bytes()
	return string(b), err
}

// Raw returns the complete encoding of the next value (header and all nested
// values) without copying, and consumes it.
func (r *Reader) Raw() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	start := r.off
	if err := r.Skip(); err != nil {
		return nil, err
	}
	return r.b[start:r.off:r.off], nil
}

// Skip consumes the next value, including everything nested in it.
func (r *Reader) Skip() error {
	if r.err != nil {
		return r.err
	}
	pending := 1
	for pending > 0 {
		t, err := next(r.b[r.off:])
		if err != nil {
			return r.fail(err)
		}
		r.off += t.hdr + t.payload
		pending += t.children - 1
	}
	return nil
}
