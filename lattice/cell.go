package lattice

import (
	"bytes"
	"fmt"

	"github.com/trellisdb/trellis/pack"
)

// Cell is what a key holds: its value and the stamp of its last delete.
//
// Cells merge lexicographically: the larger Epoch wins outright, and equal
// epochs merge their values with MergeValues (nil is the bottom). A delete
// starts a new, later epoch with no value, so it wins over every write of an
// older epoch, including writes concurrent with it; a write that reaches a
// replica after the delete merges into the tombstone's epoch (Write) and
// survives. The store garbage-collects tombstones after a grace period.
//
// Value == nil means absent (zero Epoch) or deleted (a tombstone: non-zero
// Epoch). The zero Cell is absent.
type Cell struct {
	Epoch Stamp
	Value Lattice
}

// Deleted reports whether the cell is a tombstone.
func (c Cell) Deleted() bool { return c.Value == nil && !c.Epoch.IsZero() }

// Merge merges o into c and reports whether c changed. o's value is cloned,
// never retained.
func (c *Cell) Merge(o Cell) (changed bool) {
	switch c.Epoch.Compare(o.Epoch) {
	case -1:
		c.Epoch = o.Epoch
		c.Value = nil
		if o.Value != nil {
			c.Value = o.Value.Clone()
		}
		return true
	case 1:
		return false
	}
	c.Value, changed = mergeValues(c.Value, o.Value)
	return changed
}

// Write merges v into the cell's current epoch, as a write that reaches this
// replica does (it survives an earlier delete). If the cell holds a value
// of another type it returns an error wrapping ErrTypeMismatch and leaves
// the cell unchanged. v is not retained.
func (c *Cell) Write(v Lattice) (changed bool, err error) {
	if v == nil {
		return false, nil
	}
	if c.Value == nil {
		c.Value = v.Clone()
		return true, nil
	}
	return c.Value.Merge(v)
}

// Delete makes the cell a tombstone at s if s is later than its epoch, and
// reports whether it did; an s that is not later does nothing. Take s from
// the node's Clock after observing the epoch, Stamp{clock.Observe(c.Epoch.TS),
// nodeID}, so that it is always later.
func (c *Cell) Delete(s Stamp) bool {
	if s.Compare(c.Epoch) <= 0 {
		return false
	}
	c.Epoch, c.Value = s, nil
	return true
}

// Clone returns a deep copy.
func (c Cell) Clone() Cell {
	if c.Value != nil {
		c.Value = c.Value.Clone()
	}
	return c
}

// Equal reports whether c and o have the same epoch and Equal values.
func (c Cell) Equal(o Cell) bool {
	if c.Epoch != o.Epoch || (c.Value == nil) != (o.Value == nil) {
		return false
	}
	return c.Value == nil || c.Value.Equal(o.Value)
}

// Size returns the approximate bytes held.
func (c Cell) Size() int {
	n := 32
	if c.Value != nil {
		n += c.Value.Size()
	}
	return n
}

// AppendBinary appends the cell's canonical encoding. A cell with a zero
// Epoch and a value is encoded exactly as its value. Any other cell is
//
//	0x40 0x01 [<epoch TS: fixed uint64>, <epoch writer: fixed uint64>, <value's encoding as bin, or nil>]
func (c Cell) AppendBinary(b []byte) ([]byte, error) {
	if c.Epoch.IsZero() && c.Value != nil {
		return c.Value.AppendBinary(b)
	}
	e := newEnc(b, TypeCell)
	e.array(3)
	e.fixed(uint64(c.Epoch.TS))
	e.fixed(c.Epoch.Writer)
	if c.Value == nil {
		e.b = pack.AppendNil(e.b)
	} else {
		e.nested(c.Value, 1)
	}
	return e.result()
}

// DecodeCell parses either form AppendBinary writes (a plain lattice
// encoding, or the TypeCell form), accepting only canonical encodings. The
// result shares no memory with b.
func DecodeCell(b []byte) (Cell, error) {
	if len(b) == 0 || Type(b[0]) != TypeCell {
		v, err := Decode(b)
		return Cell{Value: v}, err
	}
	if len(b) < 2 || b[1] != FormatVersion {
		if len(b) < 2 {
			return Cell{}, fmt.Errorf("%w: cell: truncated", ErrMalformed)
		}
		return Cell{}, fmt.Errorf("%w: cell version %d", ErrUnsupportedVersion, b[1])
	}
	b = bytes.Clone(b)
	payload := b[2:]
	if err := pack.Validate(payload, payloadDepth); err != nil {
		return Cell{}, fmt.Errorf("%w: cell: %w", ErrMalformed, err)
	}
	d := dec{b: payload, r: pack.NewReader(payload)}
	var c Cell
	if d.arrayOf(3) {
		c.Epoch = Stamp{TS: Timestamp(d.fixed()), Writer: d.fixed()}
	}
	if d.err == nil && !d.r.Nil() {
		raw := d.bin()
		if d.err == nil {
			if c.Epoch.IsZero() {
				d.failf("cell with a zero epoch and a value must be encoded as the value")
			} else if v, err := decode(raw, 1); err != nil {
				d.err = err
			} else {
				c.Value = v
			}
		}
	}
	if d.err == nil && d.r.Len() != 0 {
		d.failf("%d trailing bytes", d.r.Len())
	}
	if d.err != nil {
		return Cell{}, fmt.Errorf("cell: %w", d.err)
	}
	return c, nil
}
