package lattice_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

func TestGSet(t *testing.T) {
	s := lattice.NewGSet(b("b"), b("a"), b("b"))
	require.Equal(t, 2, s.Len())
	require.Equal(t, 1, s.Add(b("c"), b("a")))
	require.True(t, s.Contains(b("c")))
	require.False(t, s.Contains(b("d")))
	require.Equal(t, [][]byte{b("a"), b("b"), b("c")}, s.Elements())
	e := s.Elements()
	e[0][0] = 'z'
	require.True(t, s.Contains(b("a")), "Elements returns copies")
}

func TestOrderedSetRange(t *testing.T) {
	s := lattice.NewOrderedSet(b("d"), b("b"), b("a"), b("c"), b("e"))
	require.Equal(t, 5, s.Len())
	require.Equal(t, 0, s.Add(b("c")))
	require.True(t, s.Contains(b("e")))
	for _, tc := range []struct {
		from, to []byte
		limit    int
		want     []string
	}{
		{nil, nil, 0, []string{"a", "b", "c", "d", "e"}},
		{b("b"), b("d"), 0, []string{"b", "c"}},
		{b("bb"), nil, 0, []string{"c", "d", "e"}},
		{nil, b("c"), 0, []string{"a", "b"}},
		{b("a"), nil, 2, []string{"a", "b"}},
		{b("d"), b("b"), 0, nil},
		{nil, b(""), 0, nil},
		{b("z"), nil, 0, nil},
	} {
		var got []string
		for _, e := range s.Range(tc.from, tc.to, tc.limit) {
			got = append(got, string(e))
		}
		require.Equal(t, tc.want, got, "Range(%q, %q, %d)", tc.from, tc.to, tc.limit)
	}
}
