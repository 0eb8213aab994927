package lattice_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

func vc(kv ...uint64) *lattice.VClock {
	m := map[uint64]uint64{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return lattice.NewVClock(m)
}

func single(c *lattice.VClock, v string) *lattice.SingleCausal {
	return lattice.NewSingleCausal(c, []byte(v))
}

func mergeAll(t *testing.T, vs ...lattice.Lattice) lattice.Lattice {
	t.Helper()
	r := vs[0].Clone()
	for _, v := range vs[1:] {
		_, err := r.Merge(v)
		require.NoError(t, err)
	}
	return r
}

func TestVClockCompare(t *testing.T) {
	for _, tc := range []struct {
		a, b *lattice.VClock
		want lattice.Ordering
	}{
		{vc(), vc(), lattice.Equal},
		{vc(1, 1), vc(1, 1), lattice.Equal},
		{vc(), vc(1, 1), lattice.Before},
		{vc(1, 1), vc(1, 2), lattice.Before},
		{vc(1, 2), vc(1, 1, 2, 1), lattice.Concurrent},
		{vc(1, 2, 2, 1), vc(1, 1), lattice.After},
		{vc(1, 1), vc(2, 1), lattice.Concurrent},
		{nil, vc(3, 1), lattice.Before},
	} {
		require.Equal(t, tc.want, tc.a.Compare(tc.b), "%v vs %v", tc.a.Counters(), tc.b.Counters())
	}
	v := vc(1, 1)
	require.Equal(t, uint64(2), v.Increment(1))
	require.Equal(t, uint64(1), v.Increment(5))
	require.Equal(t, []uint64{1, 5}, v.Actors())
	require.True(t, v.Dominates(vc(1, 2)))
	require.True(t, v.Dominates(v))
	require.False(t, v.StrictlyDominates(v))
	require.Equal(t, "concurrent", lattice.Concurrent.String())
}

func TestSingleCausalSiblings(t *testing.T) {
	s := mergeAll(t, single(vc(1, 1), "b"), single(vc(1, 1), "a")).(*lattice.SingleCausal)
	require.Equal(t, [][]byte{b("a"), b("b")}, s.Values(), "equal clocks, different values: both kept")

	again := mergeAll(t, s, single(vc(1, 1), "a"))
	require.True(t, again.Equal(s), "identical versions dedupe")

	newer := mergeAll(t, s, single(vc(1, 2), "c")).(*lattice.SingleCausal)
	require.Equal(t, [][]byte{b("c")}, newer.Values(), "dominated versions are dropped")

	conc := mergeAll(t, s, single(vc(2, 1), "d")).(*lattice.SingleCausal)
	require.Equal(t, 3, conc.Len())
	require.Equal(t, map[uint64]uint64{1: 1, 2: 1}, conc.Clock().Counters())

	// A Put supersedes every sibling, here and wherever it is merged.
	stale := conc.Clone()
	clock := conc.Put(7, b("e"))
	require.Equal(t, map[uint64]uint64{1: 1, 2: 1, 7: 1}, clock.Counters())
	require.Equal(t, [][]byte{b("e")}, conc.Values())
	changed, err := stale.Merge(conc)
	require.NoError(t, err)
	require.True(t, changed)
	require.True(t, stale.Equal(conc))
}

// The formulation "if one whole value's clock dominates, take it; else take
// the union" is not associative: with a < b and c concurrent with both,
// (a ⊔ c) ⊔ b keeps a. Keeping the maximal versions of the union is.
func TestSingleCausalAssociativityCounterexample(t *testing.T) {
	a, bb, c := single(vc(1, 1), "a"), single(vc(1, 2), "b"), single(vc(2, 1), "c")
	want := [][]byte{b("b"), b("c")}
	for _, order := range [][]lattice.Lattice{{a, bb, c}, {a, c, bb}, {c, a, bb}, {bb, c, a}} {
		got := mergeAll(t, order...).(*lattice.SingleCausal)
		require.Equal(t, want, got.Values())
	}
	ac := mergeAll(t, a, c)
	left := mergeAll(t, ac, bb)
	right := mergeAll(t, a, mergeAll(t, c, bb))
	require.True(t, left.Equal(right))
}

func TestMultiCausal(t *testing.T) {
	deps1 := map[string]lattice.VClock{"k": *vc(1, 1)}
	deps2 := map[string]lattice.VClock{"k": *vc(2, 1), "j": *vc(1, 3), "empty": {}}
	m1 := lattice.NewMultiCausal(vc(1, 1), deps1, b("v"))
	m2 := lattice.NewMultiCausal(vc(1, 1), deps2, b("v"))

	m := mergeAll(t, m1, m2).(*lattice.MultiCausal)
	require.Equal(t, 2, m.Len(), "equal clocks with different deps are siblings")
	require.True(t, mergeAll(t, m, m1).Equal(m), "identical versions dedupe")
	deps := m.Deps()
	require.Len(t, deps, 2, "empty dependency clocks are dropped")
	k := deps["k"]
	require.Equal(t, map[uint64]uint64{1: 1, 2: 1}, k.Counters())

	newer := lattice.NewMultiCausal(vc(1, 2), nil, b("w"))
	require.Equal(t, [][]byte{b("w")}, mergeAll(t, m, newer).(*lattice.MultiCausal).Values())

	m.Put(3, map[string]lattice.VClock{"k": *vc(1, 5)}, b("x"))
	vs := m.Versions()
	require.Len(t, vs, 1)
	require.Equal(t, map[uint64]uint64{1: 1, 3: 1}, vs[0].Clock.Counters())
	require.Equal(t, b("x"), vs[0].Value)
	kc := vs[0].Deps["k"]
	require.Equal(t, uint64(5), kc.Get(1))
}

func TestVClockIncrementSaturates(t *testing.T) {
	v := vc(1, 1<<64-1)
	require.Equal(t, uint64(1<<64-1), v.Increment(1))
}
