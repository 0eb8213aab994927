package lattice_test

import (
	"math"

	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/lattice"
)

// Generators draw from small alphabets, actor sets and clocks, so that
// collisions, equal timestamps and equal clocks are common.

var (
	genBytes = rapid.Custom(func(t *rapid.T) []byte {
		switch s := rapid.SampledFrom([]string{"<nil>", "", "a", "b", "ab", "c"}).Draw(t, "bytes"); s {
		case "<nil>":
			return nil
		default:
			return []byte(s)
		}
	})
	genElems  = rapid.SliceOfN(genBytes, 0, 4)
	genActor  = rapid.Uint64Range(0, 3)
	genTS     = rapid.SampledFrom([]lattice.Timestamp{0, 1, 2, 1 << 16, lattice.MakeTimestamp(1, 1)})
	genKey    = rapid.SampledFrom([]string{"", "x", "y", "z"})
	genInt    = rapid.SampledFrom([]int64{math.MinInt64, -2, -1, 0, 1, 2, 200, math.MaxInt64})
	genStamps = rapid.SampledFrom([]lattice.Stamp{{}, {TS: 1, Writer: 1}, {TS: 1, Writer: 2}, {TS: 2, Writer: 1}})
)

func genLWW() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice {
		return lattice.NewLWW(genTS.Draw(t, "ts"), genActor.Draw(t, "writer"), genBytes.Draw(t, "value"))
	})
}

func genGSet() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice { return lattice.NewGSet(genElems.Draw(t, "elems")...) })
}

func genOrderedSet() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice { return lattice.NewOrderedSet(genElems.Draw(t, "elems")...) })
}

// genORSet draws either the state of one replica after a random history of
// adds, removes and merges among three replicas, or an arbitrary valid state
// (entry dots within the context), whose context may have out-of-order dots.
func genORSet() *rapid.Generator[lattice.Lattice] {
	history := rapid.Custom(func(t *rapid.T) lattice.Lattice {
		reps := []*lattice.ORSet{{}, {}, {}}
		steps := rapid.IntRange(0, 12).Draw(t, "steps")
		for range steps {
			r := rapid.IntRange(0, 2).Draw(t, "replica")
			switch rapid.IntRange(0, 2).Draw(t, "op") {
			case 0:
				reps[r].Add(uint64(r+1), genBytes.Draw(t, "add"))
			case 1:
				reps[r].Remove(genBytes.Draw(t, "remove"))
			case 2:
				if _, err := reps[r].Merge(reps[rapid.IntRange(0, 2).Draw(t, "from")]); err != nil {
					t.Fatal(err)
				}
			}
		}
		return reps[rapid.IntRange(0, 2).Draw(t, "result")]
	})
	genDot := rapid.Custom(func(t *rapid.T) [2]uint64 {
		return [2]uint64{rapid.Uint64Range(1, 3).Draw(t, "actor"), rapid.Uint64Range(1, 4).Draw(t, "counter")}
	})
	arbitrary := rapid.Custom(func(t *rapid.T) lattice.Lattice {
		ctx := rapid.SliceOfN(genDot, 0, 8).Draw(t, "ctx")
		entries := map[string][][2]uint64{}
		for _, e := range rapid.SliceOfN(rapid.SampledFrom([]string{"", "a", "b", "c"}), 0, 3).Draw(t, "elems") {
			var ds [][2]uint64
			for _, i := range rapid.SliceOfN(rapid.IntRange(0, 7), 0, 3).Draw(t, "dots") {
				if i < len(ctx) {
					ds = append(ds, ctx[i])
				}
			}
			entries[e] = ds
		}
		return lattice.ORSetFromDots(ctx, entries)
	})
	return rapid.OneOf(history, arbitrary)
}

func genMax() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice { return &lattice.Max{Value: genInt.Draw(t, "max")} })
}

func genMinPriority() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice {
		return lattice.NewMinPriority(rapid.Int64Range(-2, 2).Draw(t, "priority"), genBytes.Draw(t, "value"))
	})
}

func genBoolOr() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice { return &lattice.BoolOr{Value: rapid.Bool().Draw(t, "bool")} })
}

func genCounter() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice {
		c := &lattice.Counter{}
		for range rapid.IntRange(0, 5).Draw(t, "adds") {
			_, _ = c.Add(genActor.Draw(t, "actor"), genInt.Draw(t, "delta")) // ErrOverflow leaves c unchanged
		}
		return c
	})
}

func genClock() *rapid.Generator[*lattice.VClock] {
	return rapid.Custom(func(t *rapid.T) *lattice.VClock {
		return lattice.NewVClock(rapid.MapOfN(rapid.Uint64Range(1, 3), rapid.Uint64Range(0, 2), 0, 3).Draw(t, "clock"))
	})
}

func genVClock() *rapid.Generator[lattice.Lattice] {
	return rapid.Map(genClock(), func(v *lattice.VClock) lattice.Lattice { return v })
}

func genSingleCausal() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice {
		s := &lattice.SingleCausal{}
		for range rapid.IntRange(0, 4).Draw(t, "versions") {
			if _, err := s.Merge(lattice.NewSingleCausal(genClock().Draw(t, "clock"), genBytes.Draw(t, "value"))); err != nil {
				t.Fatal(err)
			}
		}
		return s
	})
}

func genDeps() *rapid.Generator[map[string]lattice.VClock] {
	return rapid.Custom(func(t *rapid.T) map[string]lattice.VClock {
		deps := map[string]lattice.VClock{}
		for _, k := range rapid.SliceOfN(rapid.SampledFrom([]string{"k1", "k2"}), 0, 2).Draw(t, "keys") {
			deps[k] = *genClock().Draw(t, "dep")
		}
		return deps
	})
}

func genMultiCausal() *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice {
		m := &lattice.MultiCausal{}
		for range rapid.IntRange(0, 4).Draw(t, "versions") {
			v := lattice.NewMultiCausal(genClock().Draw(t, "clock"), genDeps().Draw(t, "deps"), genBytes.Draw(t, "value"))
			if _, err := m.Merge(v); err != nil {
				t.Fatal(err)
			}
		}
		return m
	})
}

// genMap draws maps nested up to depth levels, whose values mix types so
// that keys resolve by the ordinal sum.
func genMap(depth int) *rapid.Generator[lattice.Lattice] {
	return rapid.Custom(func(t *rapid.T) lattice.Lattice {
		m := &lattice.Map{}
		vals := genScalarish()
		if depth > 1 {
			vals = rapid.OneOf(genScalarish(), genMap(depth-1))
		}
		for range rapid.IntRange(0, 3).Draw(t, "entries") {
			m.Update(genKey.Draw(t, "key"), vals.Draw(t, "value"))
		}
		return m
	})
}

// genScalarish draws small values of a few types, for map values.
func genScalarish() *rapid.Generator[lattice.Lattice] {
	return rapid.OneOf(genLWW(), genMax(), genBoolOr(), genGSet(), genCounter())
}

// typeGens lists a generator per type, for tests that run over all types.
var typeGens = []struct {
	name string
	gen  *rapid.Generator[lattice.Lattice]
}{
	{"lww", genLWW()},
	{"gset", genGSet()},
	{"orset", genORSet()},
	{"orderedset", genOrderedSet()},
	{"map", genMap(3)},
	{"max", genMax()},
	{"minpriority", genMinPriority()},
	{"boolor", genBoolOr()},
	{"counter", genCounter()},
	{"vclock", genVClock()},
	{"singlecausal", genSingleCausal()},
	{"multicausal", genMultiCausal()},
}

// genAny draws a value of any type.
func genAny() *rapid.Generator[lattice.Lattice] {
	gens := make([]*rapid.Generator[lattice.Lattice], len(typeGens))
	for i, g := range typeGens {
		gens[i] = g.gen
	}
	return rapid.OneOf(gens...)
}

func genCell() *rapid.Generator[lattice.Cell] {
	vals := rapid.OneOf(rapid.Just[lattice.Lattice](nil), genLWW(), genCounter(), genMap(2), genMax())
	return rapid.Custom(func(t *rapid.T) lattice.Cell {
		return lattice.Cell{Epoch: genStamps.Draw(t, "epoch"), Value: vals.Draw(t, "value")}
	})
}
