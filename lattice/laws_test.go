package lattice_test

import (
	"bytes"
	"errors"
	"testing"

	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/lattice"
)

// join returns a fresh a ⊔ b, failing the test on error.
func join(t *rapid.T, a, b lattice.Lattice) lattice.Lattice {
	r := a.Clone()
	if _, err := r.Merge(b); err != nil {
		t.Fatalf("merge %s into %s: %v", b.Type(), a.Type(), err)
	}
	return r
}

func encode(t *rapid.T, l lattice.Lattice) []byte {
	b, err := l.AppendBinary(nil)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

// sameValue fails unless x and y are Equal and encode to identical bytes.
func sameValue(t *rapid.T, what string, x, y lattice.Lattice) {
	if !x.Equal(y) || !y.Equal(x) {
		t.Fatalf("%s: not equal:\n%x\n%x", what, encode(t, x), encode(t, y))
	}
	if ex, ey := encode(t, x), encode(t, y); !bytes.Equal(ex, ey) {
		t.Fatalf("%s: equal values encode differently:\n%x\n%x", what, ex, ey)
	}
}

// otherType returns a value whose type differs from t.
func otherType(t lattice.Type) lattice.Lattice {
	if t == lattice.TypeMax {
		return &lattice.BoolOr{Value: true}
	}
	return &lattice.Max{Value: 7}
}

// checkLaws checks the lattice laws and the Merge contract for one type.
func checkLaws(t *rapid.T, gen *rapid.Generator[lattice.Lattice]) {
	a, b, c := gen.Draw(t, "a"), gen.Draw(t, "b"), gen.Draw(t, "c")

	// Clones are equal and independent.
	sameValue(t, "clone", a, a.Clone())
	encA, encB := encode(t, a), encode(t, b)

	// Commutativity, associativity, idempotence (Equal and byte-identical).
	ab := join(t, a, b)
	sameValue(t, "commutativity", ab, join(t, b, a))
	sameValue(t, "associativity", join(t, ab, c), join(t, a, join(t, b, c)))
	aa := a.Clone()
	if changed, _ := aa.Merge(a); changed {
		t.Fatalf("a ⊔ a reported a change")
	}
	sameValue(t, "idempotence", aa, a)
	self := a.Clone()
	if changed, _ := self.Merge(self); changed || !self.Equal(a) {
		t.Fatalf("merging a value into itself changed it")
	}

	// Merge only grows: a ⊔ b ⊒ a and ⊒ b.
	for _, x := range []lattice.Lattice{a, b} {
		r := ab.Clone()
		if changed, _ := r.Merge(x); changed || !r.Equal(ab) {
			t.Fatalf("(a ⊔ b) ⊔ x != a ⊔ b")
		}
	}

	// changed is true iff the receiver changed.
	r := a.Clone()
	changed, err := r.Merge(b)
	if err != nil {
		t.Fatal(err)
	}
	if changed == r.Equal(a) {
		t.Fatalf("changed = %v, but value changed = %v", changed, !r.Equal(a))
	}

	// Merge neither modifies nor retains other: merge from a decoding that
	// aliases a buffer, then overwrite the buffer.
	buf := bytes.Clone(encB)
	alias, err := lattice.DecodeAlias(buf)
	if err != nil {
		t.Fatal(err)
	}
	r = a.Clone()
	if _, err := r.Merge(alias); err != nil {
		t.Fatal(err)
	}
	snapshot := encode(t, r)
	for i := range buf {
		buf[i] = 0xa5
	}
	if !bytes.Equal(encode(t, r), snapshot) {
		t.Fatalf("Merge retained other's bytes")
	}
	if !bytes.Equal(encode(t, a), encA) || !bytes.Equal(encode(t, b), encB) {
		t.Fatalf("inputs modified")
	}

	// A mismatched type errors and leaves the receiver unchanged.
	r = a.Clone()
	for _, o := range []lattice.Lattice{otherType(a.Type()), nil} {
		if changed, err := r.Merge(o); changed || !errors.Is(err, lattice.ErrTypeMismatch) {
			t.Fatalf("merge of %v: changed %v, err %v", o, changed, err)
		}
	}
	sameValue(t, "after mismatch", r, a)

	// Round trip.
	for _, x := range []lattice.Lattice{a, ab} {
		enc := encode(t, x)
		y, err := lattice.Decode(enc)
		if err != nil {
			t.Fatalf("decode %x: %v", enc, err)
		}
		sameValue(t, "round trip", x, y)
		if y.Type() != x.Type() {
			t.Fatalf("round trip changed type")
		}
		_ = y.Size()
	}

	// Equal is symmetric; equal values encode identically.
	if a.Equal(b) != b.Equal(a) {
		t.Fatalf("Equal not symmetric")
	}
	if a.Equal(b) && !bytes.Equal(encA, encB) {
		t.Fatalf("equal values encode differently:\n%x\n%x", encA, encB)
	}
}

func TestLaws(t *testing.T) {
	for _, g := range typeGens {
		t.Run(g.name, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) { checkLaws(t, g.gen) })
		})
	}
}

// MergeValues is a join over all types (the ordinal sum), with nil as the
// bottom.
func TestMergeValuesLaws(t *testing.T) {
	gen := rapid.OneOf(rapid.Just[lattice.Lattice](nil), genAny())
	mv := func(x, y lattice.Lattice) lattice.Lattice {
		if x != nil {
			x = x.Clone()
		}
		return lattice.MergeValues(x, y)
	}
	same := func(t *rapid.T, what string, x, y lattice.Lattice) {
		if (x == nil) != (y == nil) || (x != nil && !x.Equal(y)) {
			t.Fatalf("%s: %v != %v", what, x, y)
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := gen.Draw(t, "a"), gen.Draw(t, "b"), gen.Draw(t, "c")
		ab := mv(a, b)
		same(t, "commutativity", ab, mv(b, a))
		same(t, "associativity", mv(ab, c), mv(a, mv(b, c)))
		same(t, "idempotence", mv(a, a), a)
		same(t, "absorbs a", mv(ab, a), ab)
		if a != nil && b != nil && ab != nil {
			want := max(a.Type(), b.Type())
			if ab.Type() != want {
				t.Fatalf("MergeValues(%s, %s) has type %s", a.Type(), b.Type(), ab.Type())
			}
		}
	})
}

func TestCellLaws(t *testing.T) {
	gen := genCell()
	cjoin := func(x, y lattice.Cell) lattice.Cell {
		r := x.Clone()
		r.Merge(y)
		return r
	}
	cenc := func(t *rapid.T, c lattice.Cell) []byte {
		b, err := c.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	same := func(t *rapid.T, what string, x, y lattice.Cell) {
		if !x.Equal(y) || !bytes.Equal(cenc(t, x), cenc(t, y)) {
			t.Fatalf("%s: %x != %x", what, cenc(t, x), cenc(t, y))
		}
	}
	rapid.Check(t, func(t *rapid.T) {
		a, b, c := gen.Draw(t, "a"), gen.Draw(t, "b"), gen.Draw(t, "c")
		ab := cjoin(a, b)
		same(t, "commutativity", ab, cjoin(b, a))
		same(t, "associativity", cjoin(ab, c), cjoin(a, cjoin(b, c)))
		same(t, "idempotence", cjoin(a, a), a)
		same(t, "absorbs a", cjoin(ab, a), ab)
		same(t, "absorbs b", cjoin(ab, b), ab)
		r := a.Clone()
		if changed := r.Merge(b); changed == r.Equal(a) {
			t.Fatalf("changed = %v, but value changed = %v", changed, !r.Equal(a))
		}
		if ab.Epoch.Compare(a.Epoch) < 0 || ab.Epoch.Compare(b.Epoch) < 0 {
			t.Fatalf("epoch went back")
		}
		// b is not retained.
		r = a.Clone()
		r.Merge(b)
		snap := cenc(t, r)
		if b.Value != nil {
			if _, err := b.Value.Merge(genAnyOfType(t, b.Value.Type())); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.Equal(cenc(t, r), snap) {
			t.Fatalf("Cell.Merge retained other's value")
		}
		// Round trip.
		for _, x := range []lattice.Cell{a, ab} {
			enc := cenc(t, x)
			y, err := lattice.DecodeCell(enc)
			if err != nil {
				t.Fatalf("decode %x: %v", enc, err)
			}
			same(t, "round trip", x, y)
		}
	})
}

// genAnyOfType draws a value of type typ.
func genAnyOfType(t *rapid.T, typ lattice.Type) lattice.Lattice {
	for _, g := range typeGens {
		if g.name == typ.String() {
			return g.gen.Draw(t, "more")
		}
	}
	t.Fatalf("no generator for %s", typ)
	return nil
}
