package consistency

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

// causal returns a MultiCausal version's encoding.
func causal(clock map[uint64]uint64, deps map[string]map[uint64]uint64, value string) []byte {
	d := make(map[string]lattice.VClock)
	for k, c := range deps {
		d[k] = *lattice.NewVClock(c)
	}
	return lattice.Encode(lattice.NewMultiCausal(lattice.NewVClock(clock), d, []byte(value)))
}

func val(b []byte) func() ([]byte, error) { return func() ([]byte, error) { return b, nil } }

var absent = func() ([]byte, error) { return nil, wire.Errorf(wire.CodeNotFound, "no") }

func payload(t *testing.T, enc []byte) string {
	l, err := lattice.Decode(enc)
	require.NoError(t, err)
	return string(Payload(l.(*lattice.MultiCausal)))
}

func TestCausalReadFetchesWhatADependencyNeeds(t *testing.T) {
	s := NewSnapshot(nil)
	a := causal(map[uint64]uint64{1: 1}, map[string]map[uint64]uint64{"b": {7: 2}}, "a1")
	_, err := s.ReadCausal("a", val(a), nil)
	require.NoError(t, err)
	// The cache has b at {7:1}, older than a's dependency: the KVS's copy.
	fresh := 0
	b, err := s.ReadCausal("b", val(causal(map[uint64]uint64{7: 1}, nil, "old")),
		func() ([]byte, error) { fresh++; return causal(map[uint64]uint64{7: 2}, nil, "new"), nil })
	require.NoError(t, err)
	assert.Equal(t, "new", payload(t, b))
	assert.Equal(t, 1, fresh)
	// Read again: the call's version, no fetch.
	b, err = s.ReadCausal("b", nil, nil)
	require.NoError(t, err)
	assert.Equal(t, "new", payload(t, b))
}

func TestCausalReadConflicts(t *testing.T) {
	// The dependency is nowhere yet.
	s := NewSnapshot(nil)
	_, err := s.ReadCausal("a", val(causal(map[uint64]uint64{1: 1}, map[string]map[uint64]uint64{"b": {7: 2}}, "a1")), nil)
	require.NoError(t, err)
	_, err = s.ReadCausal("b", absent, absent)
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, wire.CodeConflict, wire.CodeOf(err))

	// The call read b before a version that needs a newer b.
	s = NewSnapshot(nil)
	_, err = s.ReadCausal("b", val(causal(map[uint64]uint64{7: 1}, nil, "old")), nil)
	require.NoError(t, err)
	_, err = s.ReadCausal("a", val(causal(map[uint64]uint64{1: 1}, map[string]map[uint64]uint64{"b": {7: 2}}, "a1")), nil)
	require.ErrorIs(t, err, ErrConflict)

	// A dependency the call read at a newer version is fine.
	s = NewSnapshot(nil)
	_, err = s.ReadCausal("b", val(causal(map[uint64]uint64{7: 3}, nil, "newer")), nil)
	require.NoError(t, err)
	_, err = s.ReadCausal("a", val(causal(map[uint64]uint64{1: 1}, map[string]map[uint64]uint64{"b": {7: 2}}, "a1")), nil)
	require.NoError(t, err)

	// Absent everywhere with nothing required: absent, and stays so.
	_, err = s.ReadCausal("z", absent, absent)
	require.ErrorIs(t, err, wire.ErrNotFound)
	_, err = s.ReadCausal("z", val(causal(map[uint64]uint64{1: 1}, nil, "late")), nil)
	require.ErrorIs(t, err, wire.ErrNotFound)
}

func TestCausalWriteDependsOnReads(t *testing.T) {
	s := NewSnapshot(nil)
	_, err := s.ReadCausal("a", val(causal(map[uint64]uint64{1: 4}, nil, "a")), nil)
	require.NoError(t, err)
	_, err = s.ReadCausal("plain", val(lattice.Encode(lattice.NewLWW(1, 1, []byte("x")))), nil)
	require.NoError(t, err)
	enc, err := s.CausalWrite("c", causal(map[uint64]uint64{9: 2}, nil, "before"), 5, []byte("mine"))
	require.NoError(t, err)
	l, err := lattice.Decode(enc)
	require.NoError(t, err)
	m := l.(*lattice.MultiCausal)
	assert.Equal(t, "mine", string(Payload(m)))
	assert.Equal(t, map[uint64]uint64{9: 2, 5: 1}, m.Clock().Counters(), "follows the version it replaces")
	deps := m.Deps()
	require.Contains(t, deps, "a")
	assert.Equal(t, map[uint64]uint64{1: 4}, func() map[uint64]uint64 { c := deps["a"]; return c.Counters() }())
	assert.NotContains(t, deps, "plain", "a value without a clock is no dependency")
}
