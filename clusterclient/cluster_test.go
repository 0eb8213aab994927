package clusterclient

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/route"
)

// Tests against a real cluster (harness_test.go): a routing node and
// storage nodes in this process over loopback.

func sortedIDs(ms []route.Member) []uint64 {
	out := ids(ms)
	slices.Sort(out)
	return out
}

// Writes through the cluster client land on exactly the key's replicas (as
// the storage nodes compute them), and every typed call works through it.
func TestClusterWritesLandOnReplicas(t *testing.T) {
	h := startHarness(t, harnessConfig{Nodes: 3, RF: 2})
	c := h.dial(Options{})
	ctx := testCtx(t)
	require.Equal(t, h.state().Epoch, c.Epoch())

	keys := make([]string, 60)
	for i := range keys {
		keys[i] = fmt.Sprintf("user:%d", i)
		require.NoError(t, c.Set(ctx, keys[i], []byte("v-"+keys[i])))
	}
	placed := map[uint64]int{}
	for _, k := range keys {
		reps := c.Replicas(k)
		require.Equal(t, h.node(1).node.Replicas([]byte(k), nil), reps, "the client's replicas are the nodes'")
		// Quorum of 2 replicas: both hold the write when Set returns, and
		// no other node does.
		require.Equal(t, sortedIDs(reps), h.holders(k), "key %s", k)
		placed[reps[0].ID]++
		v, err := c.GetBytes(ctx, k)
		require.NoError(t, err)
		require.Equal(t, "v-"+k, string(v))
	}
	require.Len(t, placed, 3, "keys spread over every node: %v", placed)

	for range 3 {
		_, err := c.CounterAdd(ctx, "hits", 2)
		require.NoError(t, err)
	}
	n, err := c.CounterValue(ctx, "hits")
	require.NoError(t, err)
	require.EqualValues(t, 6, n)

	added, err := c.SetAdd(ctx, "tags", []byte("a"), []byte("b"))
	require.NoError(t, err)
	require.Equal(t, 2, added)
	removed, err := c.SetRemove(ctx, "tags", []byte("a"))
	require.NoError(t, err)
	require.Equal(t, 1, removed)
	members, err := c.SetMembers(ctx, "tags")
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("b")}, members)

	require.NoError(t, c.Put(ctx, "max", &lattice.Max{Value: 7}))
	v, err := c.Get(ctx, "max")
	require.NoError(t, err)
	require.Equal(t, &lattice.Max{Value: 7}, v)

	existed, err := c.Delete(ctx, keys[0])
	require.NoError(t, err)
	require.True(t, existed)
	_, err = c.Get(ctx, keys[0])
	require.ErrorIs(t, err, ErrNotFound)
	require.ErrorIs(t, c.Set(ctx, "hits", []byte("x")), ErrTypeMismatch)

	b := c.Batch()
	for _, k := range keys {
		b.Get([]byte(k))
	}
	res, err := b.Exec(ctx)
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, ErrNotFound)
	for i, k := range keys[1:] {
		r := res[i+1]
		require.NoError(t, r.Err, k)
		lww, err := lattice.Decode(r.Value)
		require.NoError(t, err)
		require.Equal(t, "v-"+k, string(lww.(*lattice.LWW).Value))
	}

	require.Zero(t, c.Stats().WrongOwner)
	require.Zero(t, c.Stats().Failovers)
	require.EqualValues(t, 61, c.Stats().FanOuts, "the quorum Sets and the Put went out by fan-out")
	require.EqualValues(t, 1, c.Stats().FanOutFailed, "the Set of a counter's key")
}

// With three replicas a quorum Set by fan-out is at the first two when it
// returns, and reaches the third by the targets' gossip.
func TestFanOutReachesEveryReplica(t *testing.T) {
	h := startHarness(t, harnessConfig{Nodes: 3, RF: 3})
	c := h.dial(Options{})
	ctx := testCtx(t)
	keys := make([]string, 30)
	for i := range keys {
		keys[i] = fmt.Sprintf("fan:%d", i)
		require.NoError(t, c.Set(ctx, keys[i], []byte("v")))
		reps := c.Replicas(keys[i])
		for _, m := range reps[:2] {
			require.True(t, h.node(m.ID).store.Exists([]byte(keys[i])), "key %s at node %d", keys[i], m.ID)
		}
	}
	require.EqualValues(t, len(keys), c.Stats().FanOuts)
	for _, k := range keys {
		require.Eventually(t, func() bool { return len(h.holders(k)) == 3 }, waitFor, 5*time.Millisecond, "key %s", k)
	}
}

// A client whose state predates a node's joining sends keys the new node
// took to their old owners; they answer wrong owner with the new epoch, the
// client refreshes and retries, and the caller sees only successes. The
// writes are at the key's new replicas.
//
// One replica per key: with more, a joining node displaces only the last
// member of a key's responsible set, which the client tries first only
// when the others fail (the old first replica still serves the key).
func TestStaleClientAfterJoin(t *testing.T) {
	h := startHarness(t, harnessConfig{Nodes: 3, RF: 1})
	c := h.dial(Options{RefreshEvery: -1})
	old := c.State()
	ctx := testCtx(t)
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
		require.NoError(t, c.Set(ctx, keys[i], []byte("before")))
	}

	h.startNode(4)
	cur := h.waitActive(4)
	require.Equal(t, old.Epoch, c.Epoch(), "the client has not heard of node 4")
	oldTab, err := newTable(old, route.DefaultVnodes)
	require.NoError(t, err)
	newTab, err := newTable(cur, route.DefaultVnodes)
	require.NoError(t, err)
	moved := 0
	for _, k := range keys {
		first := oldTab.replicas([]byte(k), nil)[0].ID
		if !slices.Contains(ids(newTab.replicas([]byte(k), nil)), first) {
			moved++
		}
	}
	require.NotZero(t, moved, "some keys left their old first replica")

	for _, k := range keys {
		require.NoError(t, c.Set(ctx, k, []byte("after")), k)
	}
	require.Equal(t, cur.Epoch, c.Epoch())
	st := c.Stats()
	require.GreaterOrEqual(t, st.WrongOwner, uint64(1))
	require.GreaterOrEqual(t, st.Refreshes, uint64(1))
	for _, k := range keys {
		for _, m := range newTab.replicas([]byte(k), nil) {
			v, err := h.node(m.ID).store.GetString([]byte(k), nil)
			require.NoError(t, err, "key %s at node %d", k, m.ID)
			require.Equal(t, "after", string(v), "key %s at node %d", k, m.ID)
		}
		v, err := c.GetBytes(ctx, k)
		require.NoError(t, err)
		require.Equal(t, "after", string(v))
	}
}

// A node the routing tier marked down (it missed its heartbeats) but that
// still answers refuses its old keys with wrong owner; clients whose state
// predates the mark recover: they refresh and go to the keys' new owners,
// for writes and reads.
func TestStaleClientAfterMarkDown(t *testing.T) {
	h := startHarness(t, harnessConfig{Nodes: 3, RF: 1})
	writer := h.dial(Options{RefreshEvery: -1})
	reader := h.dial(Options{RefreshEvery: -1})
	before := writer.Epoch()
	var keys []string
	for i := 0; len(keys) < 20; i++ {
		if k := fmt.Sprintf("k%d", i); writer.Replicas(k)[0].ID == 3 {
			keys = append(keys, k)
		}
	}

	n3 := h.node(3)
	n3.stopMember() // no more heartbeats, refreshes or re-registration
	st := h.propose(route.Command{Op: route.OpMarkDown, ID: 3})
	require.NoError(t, n3.node.SetState(st)) // what its driver would have fetched
	h.waitNodesAt(st.Epoch)

	ctx := testCtx(t)
	for _, k := range keys {
		require.NoError(t, writer.Set(ctx, k, []byte("v")), k)
	}
	require.Equal(t, st.Epoch, writer.Epoch())
	require.GreaterOrEqual(t, writer.Stats().WrongOwner, uint64(1))
	for _, k := range keys {
		reps := writer.Replicas(k)
		require.NotEqual(t, uint64(3), reps[0].ID)
		require.Equal(t, sortedIDs(reps), h.holders(k), "key %s only at its new owner", k)

		v, err := reader.GetBytes(ctx, k)
		require.NoError(t, err, k)
		require.Equal(t, "v", string(v))
	}
	require.Equal(t, st.Epoch, reader.Epoch())
	require.GreaterOrEqual(t, reader.Stats().WrongOwner, uint64(1))
	require.Greater(t, st.Epoch, before)
}

// A killed storage node makes no read or write fail: calls fail over to
// another replica, before the routing tier has even noticed.
func TestKilledNodeFailsOver(t *testing.T) {
	h := startHarness(t, harnessConfig{Nodes: 3, RF: 3})
	c := h.dial(Options{})
	ctx := testCtx(t)
	keys := make([]string, 60)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
		require.NoError(t, c.Set(ctx, keys[i], []byte("v1")))
	}
	// Quorum is 2 of 3: wait for the third copies (in flight) too.
	require.Eventually(t, func() bool {
		for _, k := range keys {
			if len(h.holders(k)) != 3 {
				return false
			}
		}
		return true
	}, waitFor, 5*time.Millisecond)
	epoch := c.Epoch()
	victim := c.Replicas(keys[0])[0].ID
	first := 0
	for _, k := range keys {
		if c.Replicas(k)[0].ID == victim {
			first++
		}
	}

	h.node(victim).stop()
	for _, k := range keys {
		v, err := c.GetBytes(ctx, k)
		require.NoError(t, err, k)
		require.Equal(t, "v1", string(v))
	}
	for _, k := range keys {
		require.NoError(t, c.Set(ctx, k, []byte("v2")), k)
		v, err := c.GetBytes(ctx, k)
		require.NoError(t, err, k)
		require.Equal(t, "v2", string(v), "read-your-writes on the replica that took over")
	}
	st := c.Stats()
	require.GreaterOrEqual(t, st.Failovers, uint64(1))
	require.Equal(t, epoch, c.Epoch(), "no state change: the calls failed over")
	require.Equal(t, uint64(victim), c.Replicas(keys[0])[2].ID, "the dead node is tried last")
	t.Logf("%d keys had node %d first; %+v", first, victim, st)
}

// With two replicas per key, a quorum write on a key of a killed node cannot
// be acknowledged until the routing tier marks the node down and names a
// new replica: the client retries inside its deadline until then, and the
// caller sees a success.
func TestWritesRetryUntilMarkedDown(t *testing.T) {
	// DownAfter well above the time a node takes to stop (about 0.5 s), so
	// that the writes below start before the routing tier notices.
	h := startHarness(t, harnessConfig{Nodes: 3, RF: 2, DownAfter: 1500 * time.Millisecond})
	c := h.dial(Options{RefreshEvery: 100 * time.Millisecond})
	victim := uint64(2)
	var keys []string
	for i := 0; len(keys) < 10; i++ {
		if k := fmt.Sprintf("k%d", i); slices.Contains(ids(c.Replicas(k)), victim) {
			keys = append(keys, k)
		}
	}
	before := c.Epoch()
	h.node(victim).stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, k := range keys {
		require.NoError(t, c.Set(ctx, k, []byte("v")), k)
	}
	require.NotZero(t, c.Stats().Retries, "the writes waited for the mark")
	// The live replicas took the writes as soon as they knew of the mark;
	// the client learns of it by its background refresh, if not before.
	require.Eventually(t, func() bool { return c.Epoch() > before }, waitFor, 5*time.Millisecond)
	m, ok := c.State().Member(victim)
	require.True(t, ok)
	require.Equal(t, route.Down, m.State)
	for _, k := range keys {
		reps := c.Replicas(k)
		require.NotContains(t, ids(reps), victim)
		require.Equal(t, sortedIDs(reps), h.holders(k), "key %s at its two live replicas", k)
	}
}
