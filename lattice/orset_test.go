package lattice_test

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

func b(s string) []byte { return []byte(s) }

// sync merges each replica into every other, both ways.
func syncAll(t *testing.T, reps ...lattice.Lattice) {
	t.Helper()
	for range 2 {
		for _, x := range reps {
			for _, y := range reps {
				_, err := x.Merge(y)
				require.NoError(t, err)
			}
		}
	}
	for _, x := range reps[1:] {
		require.True(t, x.Equal(reps[0]), "replicas did not converge")
	}
}

func TestORSetAddRemove(t *testing.T) {
	s := &lattice.ORSet{}
	require.Equal(t, 2, s.Add(1, b("x"), b("y"), b("x")))
	require.Equal(t, 0, s.Add(1, b("y")))
	require.True(t, s.Contains(b("x")))
	require.Equal(t, [][]byte{b("x"), b("y")}, s.Elements())
	require.Equal(t, 1, s.Remove(b("x"), b("z")))
	require.False(t, s.Contains(b("x")))
	require.Equal(t, 1, s.Len())
}

func TestORSetConcurrentAddWins(t *testing.T) {
	r1, r2 := &lattice.ORSet{}, &lattice.ORSet{}
	r1.Add(1, b("x"))
	syncAll(t, r1, r2)

	// r1 removes x while r2, concurrently, adds it again.
	require.Equal(t, 1, r1.Remove(b("x")))
	r2.Add(2, b("x"))
	syncAll(t, r1, r2)
	require.True(t, r1.Contains(b("x")), "a concurrent add must win over a remove")

	// An add by a replica that never saw x also survives a remove of x.
	r3 := &lattice.ORSet{}
	r3.Add(3, b("x"))
	r1.Remove(b("x"))
	syncAll(t, r1, r3)
	require.True(t, r1.Contains(b("x")))
}

func TestORSetRemovesConverge(t *testing.T) {
	r1, r2, r3 := &lattice.ORSet{}, &lattice.ORSet{}, &lattice.ORSet{}
	r1.Add(1, b("x"), b("y"))
	r2.Add(2, b("x"))
	syncAll(t, r1, r2, r3)

	// Each replica removes x having seen both adds; replicas merge in
	// different orders and all agree x is gone.
	r1.Remove(b("x"))
	r3.Remove(b("x"))
	_, _ = r2.Merge(r3)
	require.False(t, r2.Contains(b("x")))
	syncAll(t, r1, r2, r3)
	require.False(t, r1.Contains(b("x")))
	require.True(t, r1.Contains(b("y")))

	// A stale replica that still holds x's dots cannot resurrect it.
	stale := &lattice.ORSet{}
	stale.Add(1, b("x"), b("y"))
	_, _ = r1.Merge(stale)
	require.False(t, r1.Contains(b("x")))
}

func TestORSetReAddAfterRemove(t *testing.T) {
	r1, r2 := &lattice.ORSet{}, &lattice.ORSet{}
	r1.Add(1, b("x"))
	syncAll(t, r1, r2)
	r2.Remove(b("x"))
	syncAll(t, r1, r2)
	r2.Add(2, b("x"))
	syncAll(t, r1, r2)
	require.True(t, r1.Contains(b("x")))
}

func TestORSetContextCompaction(t *testing.T) {
	// Full-state merges keep the context a plain version vector.
	r1, r2 := &lattice.ORSet{}, &lattice.ORSet{}
	r1.Add(1, b("a"), b("b"))
	r2.Add(2, b("c"))
	r1.Remove(b("a"))
	syncAll(t, r1, r2)
	vv, cloud := lattice.ORSetContext(r1)
	require.Equal(t, map[uint64]uint64{1: 2, 2: 1}, vv)
	require.Zero(t, cloud)

	// Out-of-order dots wait in the cloud until the gap is filled.
	gappy := lattice.ORSetFromDots([][2]uint64{{1, 1}, {1, 3}, {1, 5}}, map[string][][2]uint64{"x": {{1, 3}}})
	vv, cloud = lattice.ORSetContext(gappy)
	require.Equal(t, map[uint64]uint64{1: 1}, vv)
	require.Equal(t, 2, cloud)

	// An Add never reuses a dot in the cloud.
	g := gappy.Clone().(*lattice.ORSet)
	g.Add(1, b("y"))
	vv, cloud = lattice.ORSetContext(g)
	require.Equal(t, map[uint64]uint64{1: 1}, vv)
	require.Equal(t, 3, cloud) // (1,6) joins (1,3), (1,5)

	filler := lattice.ORSetFromDots([][2]uint64{{1, 2}, {1, 4}}, nil)
	changed, err := gappy.Merge(filler)
	require.NoError(t, err)
	require.True(t, changed)
	vv, cloud = lattice.ORSetContext(gappy)
	require.Equal(t, map[uint64]uint64{1: 5}, vv)
	require.Zero(t, cloud)
	require.True(t, gappy.Contains(b("x")), "filler has not seen (1,3)'s removal")
}

func TestORSetExhaustedActor(t *testing.T) {
	s := lattice.ORSetFromDots([][2]uint64{{1, math.MaxUint64}}, nil)
	require.Zero(t, s.Add(1, b("x")), "no dot left for actor 1")
	require.Equal(t, 1, s.Add(2, b("x")))
	_, err := lattice.Decode(lattice.Encode(s))
	require.NoError(t, err)
}
