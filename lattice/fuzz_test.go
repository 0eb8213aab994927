package lattice_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/trellisdb/trellis/lattice"
)

func isDecodeError(err error) bool {
	return errors.Is(err, lattice.ErrMalformed) || errors.Is(err, lattice.ErrUnknownType) ||
		errors.Is(err, lattice.ErrUnsupportedVersion)
}

// checkDecoded checks a value that Decode accepted from b: decoding is
// canonical (re-encoding gives b back), stable, and the value satisfies its
// type's invariants well enough for the lattice laws to hold against samples.
func checkDecoded(t *testing.T, b []byte, v lattice.Lattice) {
	enc, err := v.AppendBinary(nil)
	if err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	if !bytes.Equal(enc, b) {
		t.Fatalf("decoding is not canonical:\n in  %x\n out %x", b, enc)
	}
	w, err := lattice.Decode(enc)
	if err != nil || !w.Equal(v) {
		t.Fatalf("re-decode: %v", err)
	}
	if !v.Clone().Equal(v) {
		t.Fatalf("clone not equal")
	}
	if changed, err := v.Clone().Merge(v); changed || err != nil {
		t.Fatalf("v ⊔ v changed (%v, %v)", changed, err)
	}
	_ = v.Size()
	for _, s := range samples() {
		if s.Type() != v.Type() {
			continue
		}
		x := s.Clone()
		if _, err := x.Merge(v); err != nil {
			t.Fatal(err)
		}
		y := v.Clone()
		if _, err := y.Merge(s); err != nil {
			t.Fatal(err)
		}
		if !x.Equal(y) || !bytes.Equal(lattice.Encode(x), lattice.Encode(y)) {
			t.Fatalf("merge with a sample not commutative:\n%x\n%x", lattice.Encode(x), lattice.Encode(y))
		}
		if changed, _ := x.Merge(v); changed {
			t.Fatalf("(s ⊔ v) ⊔ v changed")
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range samples() {
		f.Add(lattice.Encode(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := lattice.Decode(b)
		if err != nil {
			if !isDecodeError(err) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		checkDecoded(t, b, v)
	})
}

func FuzzDecodeCell(f *testing.F) {
	cells := sampleCells()
	for _, s := range samples() {
		cells = append(cells, lattice.Cell{Value: s}, lattice.Cell{Epoch: lattice.Stamp{TS: 3, Writer: 4}, Value: s})
	}
	for _, c := range cells {
		b, err := c.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := lattice.DecodeCell(b)
		if err != nil {
			if !isDecodeError(err) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		enc, err := c.AppendBinary(nil)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("decoding is not canonical:\n in  %x\n out %x", b, enc)
		}
		d, err := lattice.DecodeCell(enc)
		if err != nil || !d.Equal(c) {
			t.Fatalf("re-decode: %v", err)
		}
		if c.Deleted() != (c.Value == nil && !c.Epoch.IsZero()) {
			t.Fatalf("Deleted inconsistent")
		}
		x := c.Clone()
		if x.Merge(c) || !x.Equal(c) {
			t.Fatalf("c ⊔ c changed")
		}
		for _, s := range sampleCells() {
			x, y := s.Clone(), c.Clone()
			x.Merge(c)
			y.Merge(s)
			if !x.Equal(y) {
				t.Fatalf("cell merge with a sample not commutative")
			}
		}
	})
}

func FuzzParseLWW(f *testing.F) {
	for _, s := range samples() {
		f.Add(lattice.Encode(s))
	}
	f.Add(lattice.AppendLWW(nil, 1, 2, make([]byte, 70000)))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, writer, value, err := lattice.ParseLWW(b)
		v, derr := lattice.Decode(b)
		if derr != nil || v.Type() != lattice.TypeLWW {
			if err == nil {
				t.Fatalf("ParseLWW accepted what Decode refused (%v): %x", derr, b)
			}
			if derr == nil && !errors.Is(err, lattice.ErrTypeMismatch) {
				t.Fatalf("ParseLWW of a %s: %v, want ErrTypeMismatch", v.Type(), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("ParseLWW refused what Decode accepted: %v", err)
		}
		l := v.(*lattice.LWW)
		if l.TS != ts || l.Writer != writer || !bytes.Equal(l.Value, value) {
			t.Fatalf("ParseLWW = (%v, %d, %x), Decode = %+v", ts, writer, value, l)
		}
		if !bytes.Equal(lattice.AppendLWW(nil, ts, writer, value), b) {
			t.Fatalf("AppendLWW does not reproduce the input")
		}
	})
}
