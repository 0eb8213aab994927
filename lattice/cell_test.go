package lattice_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

func TestCellDeleteWinsOverConcurrentWrites(t *testing.T) {
	var w fakeWall
	w.ms.Store(100)
	clock1, clock2 := lattice.NewClock(w.now), lattice.NewClock(w.now)

	// Replicas 1 and 2 both hold a set.
	var r1, r2 lattice.Cell
	_, err := r1.Write(lattice.NewGSet(b("a")))
	require.NoError(t, err)
	r2.Merge(r1)

	// Replica 1 deletes; replica 2 concurrently writes.
	require.True(t, r1.Delete(lattice.Stamp{TS: clock1.Observe(r1.Epoch.TS), Writer: 1}))
	require.True(t, r1.Deleted())
	_, err = r2.Write(lattice.NewGSet(b("b")))
	require.NoError(t, err)

	r1.Merge(r2)
	r2.Merge(r1)
	require.True(t, r1.Equal(r2))
	require.True(t, r2.Deleted(), "a delete wins over concurrent writes")

	// A write that reaches a replica after the delete survives, and reaches
	// the other replica through merge.
	changed, err := r2.Write(lattice.NewGSet(b("c")))
	require.NoError(t, err)
	require.True(t, changed)
	require.False(t, r2.Deleted())
	require.True(t, r1.Merge(r2))
	require.True(t, r1.Equal(r2))
	require.Equal(t, [][]byte{b("c")}, r1.Value.(*lattice.GSet).Elements())

	// A delete whose stamp is not later does nothing; one taken after
	// observing the epoch always is.
	require.False(t, r1.Delete(lattice.Stamp{TS: 1, Writer: 9}))
	require.True(t, r1.Delete(lattice.Stamp{TS: clock2.Observe(r1.Epoch.TS), Writer: 2}))
}

func TestCellWriteTypeMismatch(t *testing.T) {
	var c lattice.Cell
	_, err := c.Write(&lattice.Max{Value: 1})
	require.NoError(t, err)
	changed, err := c.Write(lattice.NewGSet(b("x")))
	require.True(t, errors.Is(err, lattice.ErrTypeMismatch))
	require.False(t, changed)
	require.True(t, c.Value.Equal(&lattice.Max{Value: 1}), "the stored value is untouched")
	changed, err = c.Write(nil)
	require.NoError(t, err)
	require.False(t, changed)
}

func TestCellEncoding(t *testing.T) {
	for _, c := range sampleCells() {
		enc, err := c.AppendBinary(nil)
		require.NoError(t, err)
		got, err := lattice.DecodeCell(enc)
		require.NoError(t, err)
		require.True(t, got.Equal(c))
		if c.Epoch.IsZero() && c.Value != nil {
			require.Equal(t, lattice.Encode(c.Value), enc, "a plain cell encodes as its value")
		}
	}
	require.False(t, lattice.Cell{}.Deleted())

	// The TypeCell form with a zero epoch and a value is not canonical.
	bad := unhex(t, "40 01 93 cf0000000000000000 cf0000000000000000 c403 0801c3")
	_, err := lattice.DecodeCell(bad)
	require.True(t, errors.Is(err, lattice.ErrMalformed), "%v", err)
	_, err = lattice.DecodeCell(unhex(t, "40 02 c0"))
	require.True(t, errors.Is(err, lattice.ErrUnsupportedVersion), "%v", err)
	_, err = lattice.DecodeCell(unhex(t, "40"))
	require.True(t, errors.Is(err, lattice.ErrMalformed), "%v", err)
	_, err = lattice.DecodeCell(unhex(t, "40 01 93 cf0000000000000001 cf0000000000000000 c0 c0"))
	require.True(t, errors.Is(err, lattice.ErrMalformed), "%v", err)
}
