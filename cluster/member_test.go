package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/memnet"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// fakeRouter is a routing tier in memory: commands apply at once.
type fakeRouter struct {
	mu    sync.Mutex
	state route.State
	beats map[uint64]int
}

func (r *fakeRouter) State(context.Context) (route.State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Clone(), nil
}

func (r *fakeRouter) Propose(_ context.Context, c route.Command) (route.State, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	next, err := route.Apply(r.state, c)
	if err != nil {
		return route.State{}, err
	}
	r.state = next
	return next.Clone(), nil
}

func (r *fakeRouter) Heartbeat(_ context.Context, id uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.beats[id]++
	return nil
}

func (r *fakeRouter) stateEpoch() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Epoch
}

func (r *fakeRouter) member(id uint64) (route.Member, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state.Member(id)
}

// waitFor waits until cond holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, 5*time.Millisecond, "waiting for %s", what)
}

// running is a member driver started by runMember.
type running struct {
	cancel context.CancelFunc
	done   chan error // Run's result
}

// runMember starts tn's member driver (heartbeats and state every 10 ms).
func runMember(t *testing.T, ctx context.Context, router *fakeRouter, tn *testNode) running {
	m, err := cluster.NewMember(cluster.MemberConfig{Node: tn.node, Router: router, Logger: quiet,
		Self: route.Member{ID: tn.id, Addr: tn.addr}, Every: 10 * time.Millisecond})
	require.NoError(t, err)
	mctx, mcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(mctx) }()
	return running{mcancel, done}
}

// startMembers starts a member driver for every node of tc and waits until
// all are active and route by the newest epoch.
func startMembers(t *testing.T, ctx context.Context, router *fakeRouter, tc *testCluster) map[uint64]running {
	members := map[uint64]running{}
	for _, tn := range tc.nodes {
		members[tn.id] = runMember(t, ctx, router, tn)
	}
	var ids []uint64
	for _, tn := range tc.nodes {
		ids = append(ids, tn.id)
	}
	waitFor(t, "every node active", allActive(router, ids...))
	waitFor(t, "every node at the newest epoch", func() bool {
		for _, tn := range tc.nodes {
			if tn.node.Epoch() != router.stateEpoch() {
				return false
			}
		}
		return true
	})
	return members
}

// allActive reports whether every member named is active.
func allActive(router *fakeRouter, ids ...uint64) func() bool {
	return func() bool {
		for _, id := range ids {
			if m, ok := router.member(id); !ok || m.State != route.Active {
				return false
			}
		}
		return true
	}
}

// memberTest is three nodes (RF 2) whose member drivers run against a
// fake routing tier; until ctx ends, every node is active and holds its
// share of 60 keys written with quorum acks.
func memberTest(t *testing.T) (tc *testCluster, router *fakeRouter, ctx context.Context, members map[uint64]running, keys []string) {
	tc = newTestCluster(t, 3, 2, 1)
	t.Cleanup(tc.close)
	router = &fakeRouter{state: route.State{Epoch: 1, DefaultRF: 2}, beats: map[uint64]int{}}
	tc.state = route.State{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	members = startMembers(t, ctx, router, tc)
	keys = make([]string, 60)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%d", i)
		require.NoError(t, tc.do(tc.replicas(keys[i])[0].addr, set(keys[i], "v", wire.AckQuorum)).Err())
	}
	tc.settle()
	return tc, router, ctx, members, keys
}

// requireRemoved waits for the member driver that done reports on to
// return ErrRemoved, and checks that node 3 is gone and nodes 1 and 2 route
// by the newest state.
func requireRemoved(t *testing.T, tc *testCluster, router *fakeRouter, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		require.ErrorIs(t, err, cluster.ErrRemoved)
	case <-time.After(10 * time.Second):
		t.Fatal("the leaving node was not removed")
	}
	_, still := router.member(3)
	require.False(t, still)
	waitFor(t, "nodes 1 and 2 at the newest epoch", func() bool {
		return tc.nodes[0].node.Epoch() == router.stateEpoch() && tc.nodes[1].node.Epoch() == router.stateEpoch()
	})
}

// Members register, sync and activate on their own; a member asked to leave
// hands its keys to the others and is removed, and its Run returns
// ErrRemoved; a node that had been active and starts again comes back
// through joining.
func TestMemberLifecycle(t *testing.T) {
	tc, router, ctx, members, keys := memberTest(t)

	// Node 3 leaves.
	_, err := router.Propose(ctx, route.Command{Op: route.OpLeave, ID: 3})
	require.NoError(t, err)
	requireRemoved(t, tc, router, members[3].done)
	tc.net.Detach(tc.nodes[2].addr) // the process would exit now
	for _, k := range keys {
		for _, tn := range tc.nodes[:2] { // RF 2 over two nodes: both hold everything
			v, ok := value(t, tn.store, k)
			require.True(t, ok && v == "v", "node %d lacks %s", tn.id, k)
		}
	}

	// Node 1 restarts (its member driver starts again) while still active:
	// it comes back through joining, and is active again once synced.
	members[1].cancel()
	require.NoError(t, <-members[1].done)
	epoch := tc.nodes[0].node.Epoch()
	members[1] = runMember(t, ctx, router, tc.nodes[0])
	waitFor(t, "node 1 re-registered", func() bool { return tc.nodes[0].node.Epoch() > epoch })
	waitFor(t, "node 1 active again", allActive(router, 1, 2))
	router.mu.Lock()
	require.NotZero(t, router.beats[1])
	router.mu.Unlock()
	for _, id := range []uint64{1, 2} {
		members[id].cancel()
		require.NoError(t, <-members[id].done)
	}
}

// A joining node keeps heartbeating while its sync rounds are slow (here:
// every peer call delayed), so the routing tier does not mark it down
// before it can activate.
func TestHeartbeatsDuringSlowSync(t *testing.T) {
	tc := newTestCluster(t, 2, 2, 1)
	defer tc.close()
	for i := range 50 {
		k := fmt.Sprintf("k%d", i)
		require.NoError(t, tc.do(tc.nodes[0].addr, set(k, "v", wire.AckQuorum)).Err())
	}
	tc.settle()
	router := &fakeRouter{state: tc.state.Clone(), beats: map[uint64]int{}}
	tc.net.SetFaults(memnet.Faults{MaxDelay: 60 * time.Millisecond})
	defer tc.net.SetFaults(memnet.Faults{})
	tn := tc.nodes[1]
	tc.start(tn) // its data lost: a first round fetches, a second finds nothing
	const every = 5 * time.Millisecond
	m, err := cluster.NewMember(cluster.MemberConfig{Node: tn.node, Router: router, Logger: quiet,
		Self: route.Member{ID: tn.id, Addr: tn.addr}, Every: every})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- m.Run(ctx) }()
	waitFor(t, "the member re-registered and active", func() bool {
		me, ok := router.member(tn.id)
		return ok && me.State == route.Active && router.stateEpoch() > tc.state.Epoch+1
	})
	took := time.Since(start)
	cancel()
	require.NoError(t, <-done)
	router.mu.Lock()
	beats := router.beats[tn.id]
	router.mu.Unlock()
	// At least a third of the periods that passed had their heartbeat
	// (without its own goroutine, one per sync round of ~100 ms or more).
	require.GreaterOrEqual(t, beats, int(took/every)/3, "%d heartbeats in %v", beats, took)
}

// A node asked to leave while its process was down finishes the leave when
// it starts again (before, it registered anew and the leave was lost): it
// is marked down (it may have missed writes), hands its copies to the keys'
// replicas, and is removed.
func TestRestartedLeavingNodeFinishesLeave(t *testing.T) {
	tc, router, ctx, members, keys := memberTest(t)

	// Node 3's process stops; the operator asks it to leave meanwhile.
	members[3].cancel()
	require.NoError(t, <-members[3].done)
	_, err := router.Propose(ctx, route.Command{Op: route.OpLeave, ID: 3})
	require.NoError(t, err)

	again := runMember(t, ctx, router, tc.nodes[2])
	requireRemoved(t, tc, router, again.done)
	tc.net.Detach(tc.nodes[2].addr)
	for _, k := range keys {
		for _, tn := range tc.nodes[:2] { // RF 2 over two nodes: both hold everything
			waitFor(t, fmt.Sprintf("node %d holding %s", tn.id, k), func() bool {
				v, ok := value(t, tn.store, k)
				return ok && v == "v"
			})
		}
	}
	for _, id := range []uint64{1, 2} {
		members[id].cancel()
		require.NoError(t, <-members[id].done)
	}
}
