package consistency

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

func TestParse(t *testing.T) {
	for name, want := range map[string]Level{"": LWW, "lww": LWW, "repeatable-read": RepeatableRead, "causal": Causal} {
		l, err := Parse(name)
		require.NoError(t, err, name)
		assert.Equal(t, want, l)
	}
	_, err := Parse("serializable")
	require.ErrorIs(t, err, wire.ErrBadRequest)
}

func TestSnapshotPinsFirstRead(t *testing.T) {
	s := NewSnapshot(nil)
	version := []byte("v1")
	fetches := 0
	fetch := func() ([]byte, error) { fetches++; return version, nil }
	v, err := s.Read("k", fetch)
	require.NoError(t, err)
	assert.Equal(t, "v1", string(v))
	version = []byte("v2") // a write lands in the store
	v, err = s.Read("k", fetch)
	require.NoError(t, err)
	assert.Equal(t, "v1", string(v), "the call keeps reading its first version")
	assert.Equal(t, 1, fetches)

	s.Wrote("k", []byte("mine"))
	v, _ = s.Read("k", fetch)
	assert.Equal(t, "mine", string(v), "the call reads its own write")

	// Absence is a version too.
	_, err = s.Read("gone", func() ([]byte, error) { return nil, wire.Errorf(wire.CodeNotFound, "no") })
	require.ErrorIs(t, err, wire.ErrNotFound)
	_, err = s.Read("gone", func() ([]byte, error) { return []byte("later"), nil })
	require.ErrorIs(t, err, wire.ErrNotFound, "a key the call found absent stays absent")

	// Other errors are not remembered.
	_, err = s.Read("x", func() ([]byte, error) { return nil, errors.New("down") })
	require.Error(t, err)
	v, err = s.Read("x", func() ([]byte, error) { return []byte("up"), nil })
	require.NoError(t, err)
	assert.Equal(t, "up", string(v))

	// The successor's snapshot starts from these versions.
	next := NewSnapshot(s.Versions())
	v, _ = next.Read("k", fetch)
	assert.Equal(t, "mine", string(v))
}

func TestJoin(t *testing.T) {
	a := map[string][]byte{"x": []byte("1"), "y": []byte("2")}
	b := map[string][]byte{"y": []byte("2"), "z": []byte("3")}
	j, err := Join(a, b)
	require.NoError(t, err)
	assert.Len(t, j, 3)
	_, err = Join(a, map[string][]byte{"x": []byte("other")})
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, wire.CodeConflict, wire.CodeOf(err))
	j, err = Join(nil, nil)
	require.NoError(t, err)
	assert.Empty(t, j)
}

func TestSnapshotBound(t *testing.T) {
	s := NewSnapshot(nil)
	for i := range MaxKeys {
		s.Wrote(string(rune(i+1))+"k", []byte("v"))
	}
	_, err := s.Read("one more", func() ([]byte, error) { return []byte("v"), nil })
	require.ErrorIs(t, err, wire.ErrTooLarge)
}

func FuzzReadVersions(f *testing.F) {
	f.Add(AppendVersions(nil, map[string][]byte{"a": []byte("1"), "b": {}}))
	f.Add(AppendVersions(nil, nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := pack.NewReader(b)
		got, err := ReadVersions(&rd)
		if err != nil {
			return
		}
		rd2 := pack.NewReader(AppendVersions(nil, got))
		again, err := ReadVersions(&rd2)
		require.NoError(t, err)
		require.Equal(t, len(got), len(again))
		for k, v := range got {
			require.Equal(t, string(v), string(again[k]))
		}
	})
}
