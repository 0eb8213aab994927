package lattice_test

import (
	"testing"

	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/lattice"
)

// Size is kept current incrementally; after any sequence of merges, clones,
// adds, removes and round trips it must equal a recomputation from scratch.
func TestSizeStaysCurrent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		v := genAny().Draw(t, "v")
		check := func(what string, l lattice.Lattice) {
			if got, want := l.Size(), lattice.SizeSlow(l); got != want {
				t.Fatalf("%s: Size() = %d, recomputed %d (%s)", what, got, want, l.Type())
			}
		}
		check("generated", v)
		for i := range rapid.IntRange(1, 8).Draw(t, "steps") {
			elem := []byte(rapid.SampledFrom([]string{"a", "b", "cc", "ddd"}).Draw(t, "elem"))
			switch x := v.(type) {
			case *lattice.ORSet:
				if rapid.Bool().Draw(t, "add") {
					x.Add(rapid.Uint64Range(1, 3).Draw(t, "actor"), elem)
				} else {
					x.Remove(elem)
				}
			case *lattice.GSet:
				x.Add(elem)
			case *lattice.OrderedSet:
				x.Add(elem)
			case *lattice.Map:
				x.Update(string(elem), genAny().Draw(t, "nested"))
			}
			check("after an update", v)
			other := genAny().Draw(t, "other")
			if other.Type() == v.Type() {
				if _, err := v.Merge(other); err != nil {
					t.Fatal(err)
				}
				check("after a merge", v)
			}
			check("clone", v.Clone())
			d, err := lattice.Decode(lattice.Encode(v))
			if err != nil {
				t.Fatal(err)
			}
			check("decoded", d)
			_ = i
		}
	})
}
