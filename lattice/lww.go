package lattice

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/trellisdb/trellis/pack"
)

// LWW is a last-writer-wins register. Versions are totally ordered by TS,
// then Writer, then bytes.Compare of Value; Merge keeps the greater one, so
// it is commutative even when two writers use the same (TS, Writer). The
// zero value (TS 0, Writer 0, empty Value) is the bottom.
type LWW struct {
	TS     Timestamp
	Writer uint64
	Value  []byte
}

// Fixed offsets in an LWW encoding (see AppendLWW): the big-endian
// timestamp is enc[LWWTimestampOffset:LWWTimestampOffset+8], the writer
// enc[LWWWriterOffset:LWWWriterOffset+8], and the value's bin header starts
// at LWWValueOffset.
const (
	LWWTimestampOffset = 4
	LWWWriterOffset    = 13
	LWWValueOffset     = 21
)

// NewLWW returns a register holding a copy of value.
func NewLWW(ts Timestamp, writer uint64, value []byte) *LWW {
	return &LWW{TS: ts, Writer: writer, Value: bytes.Clone(value)}
}

// Type returns TypeLWW.
func (l *LWW) Type() Type { return TypeLWW }

// Stamp returns (TS, Writer).
func (l *LWW) Stamp() Stamp { return Stamp{l.TS, l.Writer} }

// Compare orders l and o by TS, Writer, then Value: -1, 0 or +1.
func (l *LWW) Compare(o *LWW) int {
	return compareLWW(l.TS, l.Writer, l.Value, o.TS, o.Writer, o.Value)
}

func compareLWW(ts1 Timestamp, w1 uint64, v1 []byte, ts2 Timestamp, w2 uint64, v2 []byte) int {
	if c := cmp.Compare(ts1, ts2); c != 0 {
		return c
	}
	if c := cmp.Compare(w1, w2); c != 0 {
		return c
	}
	return bytes.Compare(v1, v2)
}

// Merge keeps the greater of l and other (a copy of other's value).
func (l *LWW) Merge(other Lattice) (bool, error) {
	o, ok := other.(*LWW)
	if !ok || o == nil {
		return false, mismatch(TypeLWW, other)
	}
	if l.Compare(o) >= 0 {
		return false, nil
	}
	l.TS, l.Writer, l.Value = o.TS, o.Writer, bytes.Clone(o.Value)
	return true, nil
}

// Clone returns a deep copy.
func (l *LWW) Clone() Lattice { return NewLWW(l.TS, l.Writer, l.Value) }

// Equal reports whether other is an LWW with the same TS, Writer and Value.
func (l *LWW) Equal(other Lattice) bool {
	o, ok := other.(*LWW)
	return ok && o != nil && l.Compare(o) == 0
}

// Size returns the approximate bytes held.
func (l *LWW) Size() int { return 40 + len(l.Value) }

// AppendBinary appends the encoding written by AppendLWW.
func (l *LWW) AppendBinary(b []byte) ([]byte, error) {
	if uint64(len(l.Value)) > math.MaxUint32 {
		return b, fmt.Errorf("%w: value of %d bytes", ErrTooLarge, len(l.Value))
	}
	return AppendLWW(b, l.TS, l.Writer, l.Value), nil
}

// AppendLWW appends the complete encoding of LWW{ts, writer, value} to b:
//
//	0x01 0x01 0x93 0xcf <ts: 8 bytes> 0xcf <writer: 8 bytes> <bin value>
//
// so the timestamp and writer sit at fixed offsets (LWWTimestampOffset,
// LWWWriterOffset). It allocates only to grow b. It panics if value is
// longer than 2^32-1 bytes.
func AppendLWW(b []byte, ts Timestamp, writer uint64, value []byte) []byte {
	if uint64(len(value)) > math.MaxUint32 {
		panic(fmt.Sprintf("lattice: AppendLWW: value of %d bytes", len(value)))
	}
	b = append(b, byte(TypeLWW), FormatVersion, 0x93)
	b = pack.AppendUint64Fixed(b, uint64(ts))
	b = pack.AppendUint64Fixed(b, writer)
	return pack.AppendBytes(b, value)
}

// LWWSize returns the length of the encoding AppendLWW writes for a value of
// n bytes.
func LWWSize(n int) int {
	switch {
	case n <= math.MaxUint8:
		return LWWValueOffset + 2 + n
	case n <= math.MaxUint16:
		return LWWValueOffset + 3 + n
	}
	return LWWValueOffset + 5 + n
}

// LWWEncodedLen returns the length of the LWW encoding at the start of buf,
// as its value's bin header declares it, so that an encoding can be stored
// in a larger buffer. It returns 0 if buf is too short to hold the encoding
// its headers describe or has no bin header at LWWValueOffset. It checks
// nothing else: ParseLWW(buf[:LWWEncodedLen(buf)]) does.
func LWWEncodedLen(buf []byte) int {
	if len(buf) < LWWValueOffset+2 {
		return 0
	}
	h := buf[LWWValueOffset:]
	var n, hdr int
	switch h[0] {
	case 0xc4:
		n, hdr = int(h[1]), 2
	case 0xc5:
		if len(h) < 3 {
			return 0
		}
		n, hdr = int(binary.BigEndian.Uint16(h[1:])), 3
	case 0xc6:
		if len(h) < 5 {
			return 0
		}
		n, hdr = int(binary.BigEndian.Uint32(h[1:])), 5
	default:
		return 0
	}
	if n > len(h)-hdr {
		return 0
	}
	return LWWValueOffset + hdr + n
}

// Reusable errors keep ParseLWW's failure paths allocation-free too.
var (
	errLWWShort  = fmt.Errorf("%w: lww: truncated", ErrMalformed)
	errLWWLayout = fmt.Errorf("%w: lww: not [fixed uint64, fixed uint64, bin]", ErrMalformed)
	errLWWLength = fmt.Errorf("%w: lww: value length does not match the encoding", ErrMalformed)
	errLWWHeader = fmt.Errorf("%w: lww: non-canonical bin header", ErrMalformed)
	errLWWVer    = fmt.Errorf("%w: lww version", ErrUnsupportedVersion)
)

// ParseLWW reads an encoding written by AppendLWW (or LWW.AppendBinary)
// without copying and without allocating: value aliases enc. It accepts
// exactly what Decode accepts for an LWW, checking the whole encoding.
// Another lattice type is ErrTypeMismatch.
func ParseLWW(enc []byte) (ts Timestamp, writer uint64, value []byte, err error) {
	if len(enc) < 2 {
		return 0, 0, nil, errLWWShort
	}
	if t := Type(enc[0]); t != TypeLWW {
		if t.isLattice() {
			return 0, 0, nil, fmt.Errorf("%w: have %s, want lww", ErrTypeMismatch, t)
		}
		return 0, 0, nil, fmt.Errorf("%w: tag 0x%02x", ErrUnknownType, enc[0])
	}
	if enc[1] != FormatVersion {
		return 0, 0, nil, errLWWVer
	}
	const minLen = LWWValueOffset + 2
	if len(enc) < minLen {
		return 0, 0, nil, errLWWShort
	}
	if enc[2] != 0x93 || enc[LWWTimestampOffset-1] != 0xcf || enc[LWWWriterOffset-1] != 0xcf {
		return 0, 0, nil, errLWWLayout
	}
	ts = Timestamp(binary.BigEndian.Uint64(enc[LWWTimestampOffset:]))
	writer = binary.BigEndian.Uint64(enc[LWWWriterOffset:])
	h := enc[LWWValueOffset:]
	var n, hdr, least int
	switch h[0] {
	case 0xc4:
		n, hdr = int(h[1]), 2
	case 0xc5:
		if len(h) < 3 {
			return 0, 0, nil, errLWWShort
		}
		n, hdr, least = int(binary.BigEndian.Uint16(h[1:])), 3, math.MaxUint8+1
	case 0xc6:
		if len(h) < 5 {
			return 0, 0, nil, errLWWShort
		}
		n, hdr, least = int(binary.BigEndian.Uint32(h[1:])), 5, math.MaxUint16+1
	default:
		return 0, 0, nil, errLWWLayout
	}
	if len(h)-hdr != n {
		return 0, 0, nil, errLWWLength
	}
	if n < least {
		return 0, 0, nil, errLWWHeader
	}
	return ts, writer, h[hdr:len(h):len(h)], nil
}

func decodeLWW(d *dec) *LWW {
	if !d.arrayOf(3) {
		return nil
	}
	l := &LWW{TS: Timestamp(d.fixed()), Writer: d.fixed(), Value: d.bin()}
	return l
}
