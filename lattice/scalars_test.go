package lattice_test

import (
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

func TestCounterAdd(t *testing.T) {
	c := &lattice.Counter{}
	v, err := c.Add(1, 5)
	require.NoError(t, err)
	require.Equal(t, int64(5), v)
	v, err = c.Add(2, -8)
	require.NoError(t, err)
	require.Equal(t, int64(-3), v)
	v, err = c.Add(1, 0)
	require.NoError(t, err)
	require.Equal(t, int64(-3), v)

	// Concurrent increments at two replicas both count.
	d := c.Clone().(*lattice.Counter)
	_, _ = c.Add(1, 10)
	_, _ = d.Add(3, 100)
	_, err = c.Merge(d)
	require.NoError(t, err)
	require.Equal(t, int64(107), c.Value())
}

func TestCounterOverflow(t *testing.T) {
	c := &lattice.Counter{}
	_, err := c.Add(1, math.MaxInt64)
	require.NoError(t, err)
	before := c.Clone()
	v, err := c.Add(2, 1)
	require.True(t, errors.Is(err, lattice.ErrOverflow), "%v", err)
	require.Equal(t, int64(math.MaxInt64), v)
	require.True(t, c.Equal(before), "a failed Add leaves the counter unchanged")

	v, err = c.Add(2, math.MinInt64)
	require.NoError(t, err)
	require.Equal(t, int64(-1), v)
	_, err = c.Add(3, math.MinInt64)
	require.True(t, errors.Is(err, lattice.ErrOverflow)) // would be below MinInt64

	// An actor's own count must stay within uint64 even when the value fits.
	a := &lattice.Counter{}
	for _, d := range []int64{math.MaxInt64, math.MinInt64, math.MaxInt64} {
		_, err := a.Add(1, d)
		require.NoError(t, err)
	}
	require.Equal(t, int64(math.MaxInt64-1), a.Value())
	_, err = a.Add(1, math.MinInt64) // value -1 would fit, but 2^64 decrements do not
	require.True(t, errors.Is(err, lattice.ErrOverflow))

	// Replicas that each stayed in range can merge out of range: Value
	// saturates, and Add refuses until the value is back in range.
	x, y := &lattice.Counter{}, &lattice.Counter{}
	_, _ = x.Add(1, math.MaxInt64)
	_, _ = y.Add(2, math.MaxInt64)
	_, _ = x.Merge(y)
	require.Equal(t, int64(math.MaxInt64), x.Value())
	_, err = x.Add(3, -1)
	require.True(t, errors.Is(err, lattice.ErrOverflow))
	v, err = x.Add(3, math.MinInt64)
	require.NoError(t, err)
	require.Equal(t, int64(math.MaxInt64-1), v)
}

func TestScalars(t *testing.T) {
	m := &lattice.Max{Value: 3}
	changed, _ := m.Merge(&lattice.Max{Value: -1})
	require.False(t, changed)
	changed, _ = m.Merge(&lattice.Max{Value: 9})
	require.True(t, changed)
	require.Equal(t, int64(9), m.Value)

	p := lattice.NewMinPriority(5, b("b"))
	_, _ = p.Merge(lattice.NewMinPriority(5, b("a")))
	require.Equal(t, b("a"), p.Value, "ties keep the smaller value")
	_, _ = p.Merge(lattice.NewMinPriority(7, b("")))
	require.Equal(t, int64(5), p.Priority)
	_, _ = p.Merge(lattice.NewMinPriority(-1, b("z")))
	require.Equal(t, int64(-1), p.Priority)

	o := &lattice.BoolOr{}
	changed, _ = o.Merge(&lattice.BoolOr{Value: true})
	require.True(t, changed)
	changed, _ = o.Merge(&lattice.BoolOr{})
	require.False(t, changed)
	require.True(t, o.Value)
}

func TestLWWTieBreak(t *testing.T) {
	x := lattice.NewLWW(5, 1, b("a"))
	y := lattice.NewLWW(5, 1, b("b"))
	z := lattice.NewLWW(5, 2, b("a"))
	for _, order := range [][]lattice.Lattice{{x, y, z}, {z, y, x}, {y, z, x}} {
		got := mergeAll(t, order...).(*lattice.LWW)
		require.Equal(t, uint64(2), got.Writer, "the larger writer wins a timestamp tie")
	}
	xy := mergeAll(t, x, y).(*lattice.LWW)
	yx := mergeAll(t, y, x).(*lattice.LWW)
	require.Equal(t, b("b"), xy.Value, "equal (TS, Writer): the larger value wins")
	require.True(t, xy.Equal(yx))
	later := mergeAll(t, z, lattice.NewLWW(6, 0, nil)).(*lattice.LWW)
	require.Equal(t, lattice.Timestamp(6), later.TS)
}

func TestMapUpdate(t *testing.T) {
	m := &lattice.Map{}
	require.True(t, m.Update("a", &lattice.Max{Value: 1}))
	require.False(t, m.Update("a", &lattice.Max{Value: 0}))
	require.True(t, m.Update("a", &lattice.Max{Value: 2}))
	require.False(t, m.Update("a", nil))
	// A value of a larger type replaces it; a smaller type changes nothing.
	require.True(t, m.Update("a", &lattice.BoolOr{Value: false}))
	require.Equal(t, lattice.TypeBoolOr, m.Get("a").Type())
	require.False(t, m.Update("a", lattice.NewLWW(100, 1, b("x"))))
	require.True(t, m.Update("b", lattice.NewGSet(b("x"))))
	require.Equal(t, []string{"a", "b"}, m.Keys())
	require.Equal(t, 2, m.Len())
	require.Nil(t, m.Get("missing"))

	// Update does not retain its argument.
	v := lattice.NewGSet(b("y"))
	m.Update("c", v)
	v.Add(b("z"))
	require.Equal(t, 1, m.Get("c").(*lattice.GSet).Len())
}

func TestMergeValues(t *testing.T) {
	require.Nil(t, lattice.MergeValues(nil, nil))
	a := &lattice.Max{Value: 1}
	require.Same(t, a, lattice.MergeValues(a, nil))
	require.Same(t, a, lattice.MergeValues(a, &lattice.Max{Value: 5}), "same type: merged into a")
	require.Equal(t, int64(5), a.Value)
	require.Same(t, a, lattice.MergeValues(a, lattice.NewLWW(1, 1, nil)), "smaller type loses")
	o := &lattice.BoolOr{Value: true}
	got := lattice.MergeValues(a, o)
	require.NotSame(t, o, got, "the larger type wins as a clone")
	require.True(t, got.Equal(o))
	got = lattice.MergeValues(nil, o)
	require.NotSame(t, o, got)
	require.True(t, got.Equal(o))
}

func TestTypeString(t *testing.T) {
	names := []string{"lww", "gset", "orset", "orderedset", "map", "max", "minpriority", "boolor", "counter", "vclock", "singlecausal", "multicausal"}
	for i, n := range names {
		require.Equal(t, n, lattice.Type(i+1).String())
	}
	require.Equal(t, "cell", lattice.TypeCell.String())
	require.Equal(t, "Type(99)", lattice.Type(99).String())
	for _, s := range samples() {
		require.Equal(t, s.Type(), lattice.Type(lattice.Encode(s)[0]))
	}
}
