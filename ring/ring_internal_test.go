package ring

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// The bucket index leaves every point reachable: each bucket's range holds
// exactly the points sharing its top bits.
func TestBucketIndex(t *testing.T) {
	for _, n := range []int{1, 2, 3, 100} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = string(rune('A'+i%26)) + string(rune('a'+i/26))
		}
		r, err := New(ids, 7)
		require.NoError(t, err)
		require.Equal(t, uint32(0), r.bucket[0])
		require.Equal(t, uint32(len(r.points)), r.bucket[len(r.bucket)-1])
		for b := 0; b+1 < len(r.bucket); b++ {
			for j := r.bucket[b]; j < r.bucket[b+1]; j++ {
				require.Equal(t, uint64(b), r.points[j]>>r.shift)
			}
		}
	}
}

// Equal points are ordered by member id, bytewise, then by vnode index.
func TestTiesBreakByMemberThenVnode(t *testing.T) {
	// Every vnode of every member lands on point 0x100: a total collision.
	collide := func([]byte) uint64 { return 0x100 }
	r, err := build([]string{"b", "a", "c", "B"}, 3, collide)
	require.NoError(t, err)
	var got []string
	for j := range r.points {
		got = append(got, r.members[r.owners[j]])
	}
	require.Equal(t, []string{"B", "B", "B", "a", "a", "a", "b", "b", "b", "c", "c", "c"}, got)
	require.Equal(t, "B", r.Member(r.Owner(0x100)))
	require.Equal(t, "B", r.Member(r.Owner(0x101))) // wraps to the first point
	var ids []string
	for _, m := range r.Replicas(0x100, 10, nil) {
		ids = append(ids, r.Member(m))
	}
	require.Equal(t, []string{"B", "a", "b", "c"}, ids)

	// Partial collisions: vnodes 0 and 1 of both members land on point 0,
	// vnodes 2 and 3 on point 1. (The order of a member's own vnodes at one
	// point, by index, cannot change any owner; it only makes the sorted
	// list unique.)
	byIndex := func(in []byte) uint64 { return uint64(in[len(in)-1] / 2) }
	r, err = build([]string{"y", "x"}, 4, byIndex)
	require.NoError(t, err)
	var order []string
	for j := range r.points {
		order = append(order, r.members[r.owners[j]])
	}
	require.Equal(t, []string{"x", "x", "y", "y", "x", "x", "y", "y"}, order)
}
