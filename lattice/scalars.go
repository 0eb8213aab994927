package lattice

import (
	"bytes"
	"cmp"
)

// Max is an int64 whose Merge keeps the larger value. The zero value is 0
// (not the bottom: merging 0 with -5 gives 0).
type Max struct {
	Value int64
}

// Type returns TypeMax.
func (m *Max) Type() Type { return TypeMax }

// Merge keeps the larger value.
func (m *Max) Merge(other Lattice) (bool, error) {
	o, ok := other.(*Max)
	if !ok || o == nil {
		return false, mismatch(TypeMax, other)
	}
	if o.Value <= m.Value {
		return false, nil
	}
	m.Value = o.Value
	return true, nil
}

// Clone returns a copy.
func (m *Max) Clone() Lattice { return &Max{m.Value} }

// Equal reports whether other is a Max with the same value.
func (m *Max) Equal(other Lattice) bool {
	o, ok := other.(*Max)
	return ok && o != nil && o.Value == m.Value
}

// Size returns the approximate bytes held.
func (m *Max) Size() int { return 8 }

// AppendBinary appends the encoding: the value as a msgpack int.
func (m *Max) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeMax)
	e.int(m.Value)
	return e.result()
}

func decodeMax(d *dec) *Max { return &Max{d.int()} }

// MinPriority is a value with a priority; Merge keeps the one with the
// lowest Priority, and among equal priorities the smaller Value in byte
// order. The zero value is priority 0 with an empty value (not the bottom).
type MinPriority struct {
	Priority int64
	Value    []byte
}

// NewMinPriority returns a MinPriority holding a copy of value.
func NewMinPriority(priority int64, value []byte) *MinPriority {
	return &MinPriority{Priority: priority, Value: bytes.Clone(value)}
}

// Type returns TypeMinPriority.
func (m *MinPriority) Type() Type { return TypeMinPriority }

func (m *MinPriority) compare(o *MinPriority) int {
	if c := cmp.Compare(m.Priority, o.Priority); c != 0 {
		return c
	}
	return bytes.Compare(m.Value, o.Value)
}

// Merge keeps the lower (Priority, Value), copying other's value if it wins.
func (m *MinPriority) Merge(other Lattice) (bool, error) {
	o, ok := other.(*MinPriority)
	if !ok || o == nil {
		return false, mismatch(TypeMinPriority, other)
	}
	if m.compare(o) <= 0 {
		return false, nil
	}
	m.Priority, m.Value = o.Priority, bytes.Clone(o.Value)
	return true, nil
}

// Clone returns a deep copy.
func (m *MinPriority) Clone() Lattice { return NewMinPriority(m.Priority, m.Value) }

// Equal reports whether other is a MinPriority with the same priority and
// value.
func (m *MinPriority) Equal(other Lattice) bool {
	o, ok := other.(*MinPriority)
	return ok && o != nil && m.compare(o) == 0
}

// Size returns the approximate bytes held.
func (m *MinPriority) Size() int { return 32 + len(m.Value) }

// AppendBinary appends the encoding: the array [priority (int), value (bin)].
func (m *MinPriority) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeMinPriority)
	e.array(2)
	e.int(m.Priority)
	e.bin(m.Value)
	return e.result()
}

func decodeMinPriority(d *dec) *MinPriority {
	if !d.arrayOf(2) {
		return nil
	}
	return &MinPriority{Priority: d.int(), Value: d.bin()}
}

// BoolOr is a boolean whose Merge is logical or: once true, always true.
// The zero value is false, the bottom.
type BoolOr struct {
	Value bool
}

// Type returns TypeBoolOr.
func (v *BoolOr) Type() Type { return TypeBoolOr }

// Merge sets the value to true if other's is.
func (v *BoolOr) Merge(other Lattice) (bool, error) {
	o, ok := other.(*BoolOr)
	if !ok || o == nil {
		return false, mismatch(TypeBoolOr, other)
	}
	if v.Value || !o.Value {
		return false, nil
	}
	v.Value = true
	return true, nil
}

// Clone returns a copy.
func (v *BoolOr) Clone() Lattice { return &BoolOr{v.Value} }

// Equal reports whether other is a BoolOr with the same value.
func (v *BoolOr) Equal(other Lattice) bool {
	o, ok := other.(*BoolOr)
	return ok && o != nil && o.Value == v.Value
}

// Size returns the approximate bytes held.
func (v *BoolOr) Size() int { return 1 }

// AppendBinary appends the encoding: the value as a msgpack bool.
func (v *BoolOr) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeBoolOr)
	e.boolean(v.Value)
	return e.result()
}

func decodeBoolOr(d *dec) *BoolOr { return &BoolOr{d.boolean()} }
