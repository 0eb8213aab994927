package clusterclient

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// noTransport is a cluster.Transport for nodes that never call a peer.
type noTransport struct{}

func (noTransport) Call(context.Context, string, *wire.Request) (*wire.Response, error) {
	return nil, fmt.Errorf("%w: no transport in this test", wire.ErrUnavailable)
}

// randomState returns a state of 1 to 12 members in random member states,
// with a random default factor and a few per-key overrides.
func randomState(r *rand.Rand) route.State {
	st := route.State{Epoch: r.Uint64N(1000) + 1, DefaultRF: r.IntN(5)} // 0: DefaultReplication
	id := uint64(0)
	for range r.IntN(12) + 1 {
		id += r.Uint64N(1 << 40)
		st.Members = append(st.Members, route.Member{
			ID: id + 1, Addr: fmt.Sprintf("10.0.0.%d:7700", len(st.Members)),
			State: route.MemberState(r.IntN(4) + 1),
		})
	}
	st.KeyRF = map[string]int{}
	for range r.IntN(4) {
		st.KeyRF[fmt.Sprintf("key-%d", r.IntN(200))] = r.IntN(6) + 1
	}
	return st
}

// The client's responsible set of every key is exactly the one a storage
// node checks requests against (cluster.Node.Replicas), whatever the
// members' states and the replication factors: otherwise the client would
// send requests to nodes that refuse them.
func TestReplicasMatchStorageNodes(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	store, err := kvs.NewStore(kvs.StoreConfig{NodeID: 1})
	require.NoError(t, err)
	for range 30 {
		st := randomState(r)
		n, err := cluster.New(cluster.Config{ID: 1, Store: store, Transport: noTransport{}})
		require.NoError(t, err)
		require.NoError(t, n.SetState(st))
		tab, err := newTable(st, route.DefaultVnodes)
		require.NoError(t, err)
		require.Equal(t, st.Epoch, tab.epoch())
		for i := range 200 {
			key := []byte(fmt.Sprintf("key-%d", i))
			want := n.Replicas(key, nil)
			require.Equal(t, want, tab.replicas(key, nil), "seed %d, key %s, state %+v", seed, key, st)
			onRing := 0
			for _, m := range st.Members {
				if m.State == route.Active || m.State == route.Leaving {
					onRing++
				}
			}
			require.Len(t, want, min(st.RF(key), onRing))
		}
		n.Close()
	}
}

// Only active and leaving members serve keys, a per-key factor overrides the
// default, and a pool is kept only for a member on the ring at the address
// the state gives.
func TestReplicasFollowState(t *testing.T) {
	st := route.State{Epoch: 3, DefaultRF: 2, KeyRF: map[string]int{"hot": 3}, Members: []route.Member{
		{ID: 1, Addr: "a:1", State: route.Active},
		{ID: 2, Addr: "b:1", State: route.Leaving},
		{ID: 3, Addr: "c:1", State: route.Joining},
		{ID: 4, Addr: "d:1", State: route.Down},
		{ID: 5, Addr: "e:1", State: route.Active},
	}}
	tab, err := newTable(st, route.DefaultVnodes)
	require.NoError(t, err)
	rg, err := st.Ring(route.DefaultVnodes)
	require.NoError(t, err)
	for _, k := range []string{"a", "abc", "user:42", "hot", ""} {
		want := st.Responsible(rg, []byte(k), nil)
		require.Equal(t, want, tab.replicas([]byte(k), nil), "key %q", k)
	}
	require.Len(t, tab.replicas([]byte("hot"), nil), 3, "a per-key factor, capped at the ring's 3 members")
	for _, m := range tab.replicas([]byte("hot"), nil) {
		require.Contains(t, []uint64{1, 2, 5}, m.ID, "joining and down members serve nothing")
	}
	require.True(t, tab.serves(2, "b:1"))
	require.False(t, tab.serves(2, "b:2"), "a new address is a new pool")
	require.False(t, tab.serves(3, "c:1"), "joining: not on the ring")
	require.False(t, tab.serves(4, "d:1"), "down: not on the ring")

	empty, err := newTable(route.State{}, route.DefaultVnodes)
	require.NoError(t, err)
	require.Empty(t, empty.replicas([]byte("k"), nil))
}

func TestPreferReachable(t *testing.T) {
	ms := func(ids ...uint64) []route.Member {
		var out []route.Member
		for _, id := range ids {
			out = append(out, route.Member{ID: id})
		}
		return out
	}
	for _, tc := range []struct {
		reps, suspect, want []uint64
	}{
		{reps: []uint64{1, 2, 3}, want: []uint64{1, 2, 3}},
		{reps: []uint64{1, 2, 3}, suspect: []uint64{1}, want: []uint64{2, 3, 1}},
		{reps: []uint64{1, 2, 3}, suspect: []uint64{2}, want: []uint64{1, 3, 2}},
		{reps: []uint64{1, 2, 3}, suspect: []uint64{3, 1}, want: []uint64{2, 1, 3}},
		{reps: []uint64{1, 2, 3}, suspect: []uint64{1, 2, 3}, want: []uint64{1, 2, 3}},
		{reps: nil, suspect: []uint64{1}, want: nil},
	} {
		reps := ms(tc.reps...)
		sus := map[uint64]bool{}
		for _, id := range tc.suspect {
			sus[id] = true
		}
		preferReachable(reps, func(id uint64) bool { return sus[id] })
		require.Equal(t, ms(tc.want...), reps, "reps %v, suspect %v", tc.reps, tc.suspect)
	}
}
