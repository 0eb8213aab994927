package lattice

import (
	"bytes"
	"fmt"
	"math"

	"github.com/trellisdb/trellis/pack"
)

// FormatVersion is the format version byte that every encoding this package
// writes carries after its type tag. Decode refuses any other version.
const FormatVersion = 1

// MaxDepth is the deepest nesting of values that Decode accepts and
// AppendBinary produces. A top-level value is at depth 1; a value held in a
// Map is one deeper than the Map. (Only Map nests lattices.)
const MaxDepth = 16

// payloadDepth bounds the msgpack nesting of one type's payload (the deepest,
// MultiCausal's, nests four containers); nested lattices in a Map are bin
// strings, validated on their own when they are decoded.
const payloadDepth = 8

// Encode returns l's canonical encoding. It panics if l cannot be encoded
// (ErrTooLarge); use l.AppendBinary to get the error instead.
func Encode(l Lattice) []byte {
	b, err := l.AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// Decode parses one encoded lattice. It refuses an unknown type tag
// (ErrUnknownType, including TypeCell: use DecodeCell) or format version
// (ErrUnsupportedVersion), and checks the payload with pack.Validate before
// building anything. It accepts exactly the canonical encodings: for every
// b that decodes, Encode of the result equals b. Anything else, including
// unsorted or duplicate set elements, map keys or actors, and states that
// break a type's invariants, is ErrMalformed.
//
// The result shares no memory with b: Decode copies b once and the value's
// byte strings point into that copy.
func Decode(b []byte) (Lattice, error) {
	return decode(bytes.Clone(b), 1)
}

// decode parses b, which the result may alias, as a value at the given
// nesting depth.
func decode(b []byte, depth int) (Lattice, error) {
	t, payload, err := splitHeader(b)
	if err != nil {
		return nil, err
	}
	if depth > MaxDepth {
		return nil, fmt.Errorf("%w: values nested deeper than %d", ErrMalformed, MaxDepth)
	}
	if err := pack.Validate(payload, payloadDepth); err != nil {
		return nil, fmt.Errorf("%w: %s payload: %w", ErrMalformed, t, err)
	}
	d := dec{b: payload, r: pack.NewReader(payload)}
	var l Lattice
	switch t {
	case TypeLWW:
		l = decodeLWW(&d)
	case TypeGSet:
		l = decodeGSet(&d)
	case TypeORSet:
		l = decodeORSet(&d)
	case TypeOrderedSet:
		l = decodeOrderedSet(&d)
	case TypeMap:
		l = decodeMap(&d, depth)
	case TypeMax:
		l = decodeMax(&d)
	case TypeMinPriority:
		l = decodeMinPriority(&d)
	case TypeBoolOr:
		l = decodeBoolOr(&d)
	case TypeCounter:
		l = decodeCounter(&d)
	case TypeVClock:
		l = decodeVClockLattice(&d)
	case TypeSingleCausal:
		l = decodeSingleCausal(&d)
	case TypeMultiCausal:
		l = decodeMultiCausal(&d)
	}
	if d.err == nil && d.r.Len() != 0 {
		d.failf("%d trailing bytes", d.r.Len())
	}
	if d.err != nil {
		return nil, fmt.Errorf("%s: %w", t, d.err)
	}
	return l, nil
}

// splitHeader checks the type tag and format version of a lattice encoding
// and returns its payload.
func splitHeader(b []byte) (Type, []byte, error) {
	if len(b) < 2 {
		return 0, nil, fmt.Errorf("%w: %d bytes, want at least 2", ErrMalformed, len(b))
	}
	t := Type(b[0])
	if !t.isLattice() {
		return 0, nil, fmt.Errorf("%w: tag 0x%02x", ErrUnknownType, b[0])
	}
	if b[1] != FormatVersion {
		return 0, nil, fmt.Errorf("%w: %s version %d", ErrUnsupportedVersion, t, b[1])
	}
	return t, b[2:], nil
}

// enc appends a canonical encoding, remembering the first limit it hits.
type enc struct {
	b     []byte
	start int // len(b) before the value, to undo a failed append
	err   error
}

func newEnc(b []byte, t Type) enc {
	return enc{b: append(b, byte(t), FormatVersion), start: len(b)}
}

func (e *enc) result() ([]byte, error) {
	if e.err != nil {
		return e.b[:e.start], e.err
	}
	return e.b, nil
}

func (e *enc) tooLarge(what string, n int) bool {
	if uint64(n) > math.MaxUint32 {
		if e.err == nil {
			e.err = fmt.Errorf("%w: %s of length %d", ErrTooLarge, what, n)
		}
		return true
	}
	return false
}

func (e *enc) array(n int) {
	if !e.tooLarge("array", n) {
		e.b = pack.AppendArrayHeader(e.b, n)
	}
}

func (e *enc) mapHeader(n int) {
	if !e.tooLarge("map", n) {
		e.b = pack.AppendMapHeader(e.b, n)
	}
}

func (e *enc) bin(v []byte) {
	if !e.tooLarge("byte string", len(v)) {
		e.b = pack.AppendBytes(e.b, v)
	}
}

func (e *enc) str(v string) {
	if !e.tooLarge("byte string", len(v)) {
		e.b = append(pack.AppendBinHeader(e.b, len(v)), v...)
	}
}

func (e *enc) uint(v uint64)  { e.b = pack.AppendUint(e.b, v) }
func (e *enc) fixed(v uint64) { e.b = pack.AppendUint64Fixed(e.b, v) }
func (e *enc) int(v int64)    { e.b = pack.AppendInt(e.b, v) }
func (e *enc) boolean(v bool) { e.b = pack.AppendBool(e.b, v) }

// dot appends the array [actor, counter].
func (e *enc) dot(d dot) {
	e.b = pack.AppendUint(pack.AppendUint(pack.AppendArrayHeader(e.b, 2), d.actor), d.counter)
}

func (e *enc) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// nested appends v's encoding as a bin string: the value is appended in
// place, then shifted right to make room for the shortest bin header.
func (e *enc) nested(v Lattice, depth int) {
	if e.err != nil {
		return
	}
	if depth > MaxDepth {
		e.fail(fmt.Errorf("%w: values nested deeper than %d", ErrTooLarge, MaxDepth))
		return
	}
	start := len(e.b)
	var err error
	if m, ok := v.(*Map); ok {
		e.b, err = m.appendBinary(e.b, depth)
	} else {
		e.b, err = v.AppendBinary(e.b)
	}
	if err != nil {
		e.fail(err)
		return
	}
	n := len(e.b) - start
	if e.tooLarge("nested value", n) {
		return
	}
	var hdr [5]byte
	h := pack.AppendBinHeader(hdr[:0], n)
	e.b = append(e.b, h...) // grow by len(h)
	copy(e.b[start+len(h):], e.b[start:start+n])
	copy(e.b[start:], h)
}

// dec reads a payload, accepting only canonical msgpack: shortest integer
// and header forms, bin (never str) for byte strings. The first error
// sticks; after it, every method returns a zero value.
type dec struct {
	b   []byte
	r   pack.Reader
	err error
}

func (d *dec) failf(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *dec) ok(err error) bool {
	if err != nil {
		if d.err == nil {
			d.err = fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		return false
	}
	return d.err == nil
}

// canonical fails unless the bytes consumed since start equal want.
func (d *dec) canonical(start int, want []byte, what string) {
	if !bytes.Equal(d.b[start:d.r.Offset()], want) {
		d.failf("non-canonical %s at offset %d", what, start)
	}
}

func (d *dec) array() int {
	if d.err != nil {
		return 0
	}
	start := d.r.Offset()
	n, err := d.r.ArrayLen()
	if !d.ok(err) {
		return 0
	}
	var buf [5]byte
	d.canonical(start, pack.AppendArrayHeader(buf[:0], n), "array header")
	return n
}

// arrayOf reads an array header and requires n elements.
func (d *dec) arrayOf(n int) bool {
	if got := d.array(); d.err == nil && got != n {
		d.failf("array of %d elements, want %d", got, n)
	}
	return d.err == nil
}

func (d *dec) mapLen() int {
	if d.err != nil {
		return 0
	}
	start := d.r.Offset()
	n, err := d.r.MapLen()
	if !d.ok(err) {
		return 0
	}
	var buf [5]byte
	d.canonical(start, pack.AppendMapHeader(buf[:0], n), "map header")
	return n
}

func (d *dec) uint() uint64 {
	if d.err != nil {
		return 0
	}
	start := d.r.Offset()
	v, err := d.r.Uint()
	if !d.ok(err) {
		return 0
	}
	var buf [9]byte
	d.canonical(start, pack.AppendUint(buf[:0], v), "integer")
	return v
}

// fixed reads an unsigned integer in the 9-byte 0xcf form.
func (d *dec) fixed() uint64 {
	if d.err != nil {
		return 0
	}
	if rest := d.r.Rest(); len(rest) == 0 || rest[0] != 0xcf {
		d.failf("want fixed-width uint64 at offset %d", d.r.Offset())
		return 0
	}
	v, err := d.r.Uint()
	d.ok(err)
	return v
}

func (d *dec) int() int64 {
	if d.err != nil {
		return 0
	}
	start := d.r.Offset()
	v, err := d.r.Int()
	if !d.ok(err) {
		return 0
	}
	var buf [9]byte
	d.canonical(start, pack.AppendInt(buf[:0], v), "integer")
	return v
}

func (d *dec) boolean() bool {
	if d.err != nil {
		return false
	}
	v, err := d.r.Bool()
	d.ok(err)
	return v
}

// bin reads a bin string without copying.
func (d *dec) bin() []byte {
	if d.err != nil {
		return nil
	}
	start := d.r.Offset()
	if k := d.r.Peek(); k != pack.KindBin {
		d.failf("want bin at offset %d, have %s", start, k)
		return nil
	}
	v, err := d.r.Bytes()
	if !d.ok(err) {
		return nil
	}
	var buf [5]byte
	want := pack.AppendBinHeader(buf[:0], len(v))
	if !bytes.Equal(d.b[start:d.r.Offset()-len(v)], want) {
		d.failf("non-canonical bin header at offset %d", start)
	}
	return v
}

// ascending fails unless prev < cur, for all but the first element (i == 0).
func (d *dec) ascending(i int, cmp int, what string) {
	if i > 0 && cmp >= 0 {
		d.failf("%s not in strictly ascending order", what)
	}
}
