package cluster_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/internal/leakcheck"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/memnet"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// clock is a settable wall clock shared by a test cluster's stores.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testCluster is storage nodes on a memnet network, with a static routing
// state (every member active).
type testCluster struct {
	t     testing.TB
	net   *memnet.Network
	clk   *clock
	state route.State
	nodes []*testNode
	// router, when set, is where nodes refresh their routing state.
	router cluster.StateSource
}

type testNode struct {
	id    uint64
	addr  string
	store *kvs.Store
	node  *cluster.Node
}

func newTestCluster(t testing.TB, n, rf int, seed uint64) *testCluster {
	tc := &testCluster{t: t, net: memnet.New(seed), clk: &clock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}}
	tc.state = route.State{Epoch: 1, DefaultRF: rf}
	for i := range n {
		id := uint64(i + 1)
		tc.state.Members = append(tc.state.Members, route.Member{ID: id, Addr: fmt.Sprintf("node%d", id), State: route.Active})
	}
	for _, m := range tc.state.Members {
		tn := &testNode{id: m.ID, addr: m.Addr}
		tc.nodes = append(tc.nodes, tn)
		tc.start(tn)
	}
	return tc
}

// start gives tn a fresh empty store and node (a restart that lost the
// node's data, or its first start) and attaches it.
func (tc *testCluster) start(tn *testNode) {
	var err error
	tn.store, err = kvs.NewStore(kvs.StoreConfig{NodeID: tn.id, Shards: 4, Now: tc.clk.Now, Logger: quiet})
	require.NoError(tc.t, err)
	tn.node, err = cluster.New(cluster.Config{ID: tn.id, Store: tn.store, Transport: tc.net.Endpoint(tn.addr),
		Logger: quiet, BucketBits: 4, Router: tc.router})
	require.NoError(tc.t, err)
	require.NoError(tc.t, tn.node.SetState(tc.state))
	tc.net.Attach(tn.addr, tn.node)
}

// broadcast gives every node the cluster's routing state.
func (tc *testCluster) broadcast() {
	for _, tn := range tc.nodes {
		require.NoError(tc.t, tn.node.SetState(tc.state))
	}
}

// apply applies a membership command to the cluster's routing state and
// gives every node the result.
func (tc *testCluster) apply(c route.Command) {
	next, err := route.Apply(tc.state, c)
	require.NoError(tc.t, err)
	tc.state = next
	tc.broadcast()
}

// node returns the test node with id.
func (tc *testCluster) node(id uint64) *testNode {
	for _, tn := range tc.nodes {
		if tn.id == id {
			return tn
		}
	}
	tc.t.Fatalf("no node %d", id)
	return nil
}

// describeState prints a routing state's members.
func describeState(st route.State) string {
	s := fmt.Sprintf("epoch %d:", st.Epoch)
	for _, m := range st.Members {
		s += fmt.Sprintf(" %d:%s", m.ID, m.State)
	}
	return s
}

// replicas returns the test nodes responsible for key, by the newest
// routing state a node has.
func (tc *testCluster) replicas(key string) []*testNode {
	newest := tc.nodes[0]
	for _, tn := range tc.nodes {
		if tn.node.Epoch() > newest.node.Epoch() {
			newest = tn
		}
	}
	var out []*testNode
	for _, m := range newest.node.Replicas([]byte(key), nil) {
		for _, tn := range tc.nodes {
			if tn.id == m.ID {
				out = append(out, tn)
			}
		}
	}
	return out
}

// do sends req from a client to the node at addr.
func (tc *testCluster) do(addr string, req *wire.Request) *wire.Response {
	tc.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := tc.net.Endpoint("client").Call(ctx, addr, req)
	require.NoError(tc.t, err)
	return resp
}

// settle waits for every node's background replication calls.
func (tc *testCluster) settle() {
	for _, tn := range tc.nodes {
		tn.node.Wait()
	}
}

func (tc *testCluster) close() {
	tc.settle()
	for _, tn := range tc.nodes {
		tn.node.Close()
	}
}

// value reads key's LWW value straight from a store.
func value(t testing.TB, s *kvs.Store, key string) (string, bool) {
	v, err := s.GetString([]byte(key), nil)
	if err != nil {
		return "", false
	}
	return string(v), true
}

func set(key, v string, ack wire.Ack) *wire.Request {
	return &wire.Request{ID: 1, Op: wire.OpSet, Key: []byte(key), Value: []byte(v), Opts: wire.Options{Ack: ack}}
}

func TestQuorumWriteReachesEveryReplica(t *testing.T) {
	tc := newTestCluster(t, 5, 3, 1)
	defer tc.close()
	rs := tc.replicas("k")
	require.Len(t, rs, 3)
	resp := tc.do(rs[1].addr, set("k", "v", wire.AckQuorum))
	require.NoError(t, resp.Err())
	tc.settle()
	for _, tn := range tc.nodes {
		v, ok := value(t, tn.store, "k")
		if containsNode(rs, tn) {
			require.True(t, ok, "replica %d", tn.id)
			require.Equal(t, "v", v)
		} else {
			require.False(t, ok, "node %d is not a replica", tn.id)
		}
	}
}

func containsNode(ns []*testNode, tn *testNode) bool {
	for _, n := range ns {
		if n == tn {
			return true
		}
	}
	return false
}

func TestWrongOwner(t *testing.T) {
	tc := newTestCluster(t, 5, 3, 1)
	defer tc.close()
	rs := tc.replicas("k")
	var other *testNode
	for _, tn := range tc.nodes {
		if !containsNode(rs, tn) {
			other = tn
			break
		}
	}
	resp := tc.do(other.addr, set("k", "v", wire.AckQuorum))
	require.ErrorIs(t, resp.Err(), wire.ErrWrongOwner)
	require.EqualValues(t, 1, resp.Epoch)
	_, ok := value(t, other.store, "k")
	require.False(t, ok, "nothing written")
}

// A quorum of 3 replicas is 2: one replica down is fine, two is not; a
// replica that missed writes gets them by gossip when it is back.
func TestQuorumWithReplicasDown(t *testing.T) {
	tc := newTestCluster(t, 3, 3, 1)
	defer tc.close()
	rs := tc.replicas("k")
	tc.net.Detach(rs[2].addr)
	require.NoError(t, tc.do(rs[0].addr, set("k", "one-down", wire.AckQuorum)).Err())
	tc.net.Detach(rs[1].addr)
	resp := tc.do(rs[0].addr, set("k", "two-down", wire.AckQuorum))
	require.ErrorIs(t, resp.Err(), wire.ErrUnavailable)
	// Local acknowledgement still works, and is applied locally.
	require.NoError(t, tc.do(rs[0].addr, set("k", "local", wire.AckLocal)).Err())
	tc.settle()

	tc.net.Attach(rs[1].addr, rs[1].node)
	tc.net.Attach(rs[2].addr, rs[2].node)
	require.NotZero(t, rs[0].node.Pending())
	require.NotZero(t, rs[0].node.GossipOnce(context.Background()))
	require.Zero(t, rs[0].node.Pending())
	for _, tn := range rs {
		v, _ := value(t, tn.store, "k")
		require.Equal(t, "local", v, "replica %d", tn.id)
	}
}

// A replica that lost all its data is repaired by anti-entropy, for keys
// that are never written again.
func TestAntiEntropyRepairsALostReplica(t *testing.T) {
	tc := newTestCluster(t, 4, 3, 1)
	defer tc.close()
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-%d", i)
		rs := tc.replicas(keys[i])
		require.NoError(t, tc.do(rs[0].addr, set(keys[i], "v"+keys[i], wire.AckQuorum)).Err())
	}
	tc.settle()
	lost := tc.nodes[2]
	held := lost.store.Len()
	require.NotZero(t, held)
	tc.start(lost) // restarted with nothing
	require.Zero(t, lost.store.Len())

	sum := lost.node.AntiEntropyOnce(context.Background())
	require.Zero(t, sum.Errors)
	require.Equal(t, held, sum.Fetched)
	require.Equal(t, held, lost.store.Len())
	for _, k := range keys {
		for _, tn := range tc.replicas(k) {
			v, ok := value(t, tn.store, k)
			require.True(t, ok)
			require.Equal(t, "v"+k, v)
		}
	}
	// Nothing left to do.
	for _, tn := range tc.nodes {
		require.Zero(t, tn.node.AntiEntropyOnce(context.Background()).DiffBuckets)
	}
}

// Writes on both sides of a partition, acknowledged locally, converge once
// it heals (gossip, then anti-entropy for anything gossip gave up on).
func TestPartitionHeals(t *testing.T) {
	tc := newTestCluster(t, 3, 3, 1)
	defer tc.close()
	a, b := tc.nodes[0], tc.nodes[1]
	tc.net.Partition([]string{a.addr}, []string{b.addr, tc.nodes[2].addr})
	require.NoError(t, tc.do(a.addr, set("x", "from-a", wire.AckLocal)).Err())
	tc.clk.Advance(time.Millisecond)
	require.NoError(t, tc.do(b.addr, set("x", "from-b", wire.AckLocal)).Err())
	ctr := &wire.Request{ID: 2, Op: wire.OpCounterAdd, Key: []byte("c"), Int: 5, Opts: wire.Options{Ack: wire.AckLocal}}
	require.NoError(t, tc.do(a.addr, ctr).Err())
	require.NoError(t, tc.do(b.addr, ctr).Err())
	tc.settle()
	for _, tn := range tc.nodes {
		tn.node.GossipOnce(context.Background()) // fails across the partition
	}
	tc.net.Heal()
	for _, tn := range tc.nodes {
		tn.node.GossipOnce(context.Background())
	}
	for _, tn := range tc.nodes {
		v, _ := value(t, tn.store, "x")
		require.Equal(t, "from-b", v, "the later write wins everywhere (node %d)", tn.id)
		c, _ := value(t, tn.store, "c")
		require.Equal(t, "10", c, "both increments count (node %d)", tn.id)
	}
}

var _ = lattice.TypeLWW

// A healthy replica's anti-entropy pushes to one that lost its data, without
// the lost one doing anything.
func TestAntiEntropyPushesToALostReplica(t *testing.T) {
	tc := newTestCluster(t, 3, 3, 1)
	defer tc.close()
	for i := range 50 {
		k := fmt.Sprintf("key-%d", i)
		require.NoError(t, tc.do(tc.replicas(k)[0].addr, set(k, "v", wire.AckQuorum)).Err())
	}
	tc.settle()
	lost := tc.nodes[1]
	tc.start(lost)
	sum := tc.nodes[0].node.AntiEntropyOnce(context.Background())
	require.Zero(t, sum.Errors)
	require.Equal(t, 50, sum.Pushed)
	require.Equal(t, 50, lost.store.Len())
}

// A replica confirms a hand-off only at its own epoch and only for keys it
// replicates; a refused batch merges nothing.
func TestHandoffRefusals(t *testing.T) {
	tc := newTestCluster(t, 4, 2, 1)
	defer tc.close()
	var mine, other string
	for i := 0; mine == "" || other == ""; i++ {
		k := fmt.Sprintf("key-%d", i)
		if containsNode(tc.replicas(k), tc.nodes[0]) {
			mine = k
		} else {
			other = k
		}
	}
	cell := func(v string) []byte {
		b, err := lattice.Cell{Value: lattice.NewLWW(lattice.Timestamp(1), 9, []byte(v))}.AppendBinary(nil)
		require.NoError(t, err)
		return b
	}
	handoff := func(epoch uint64, keys ...string) *wire.Request {
		r := &wire.Request{ID: 1, Op: wire.OpHandoff, Opts: wire.Options{Epoch: epoch}}
		for _, k := range keys {
			r.Keys, r.Values = append(r.Keys, []byte(k)), append(r.Values, cell("v"))
		}
		return r
	}
	for _, tt := range []struct {
		name string
		req  *wire.Request
	}{
		{"older epoch", handoff(0, mine)},
		{"newer epoch", handoff(2, mine)},
		{"key it does not replicate", handoff(1, mine, other)},
	} {
		resp := tc.do(tc.nodes[0].addr, tt.req)
		require.ErrorIs(t, resp.Err(), wire.ErrWrongOwner, tt.name)
		require.EqualValues(t, 1, resp.Epoch, tt.name)
		require.Zero(t, tc.nodes[0].store.Len(), "%s: nothing merged", tt.name)
	}
	require.NoError(t, tc.do(tc.nodes[0].addr, handoff(1, mine)).Err())
	v, ok := value(t, tc.nodes[0].store, mine)
	require.True(t, ok)
	require.Equal(t, "v", v)
}

// Anti-entropy and gossip move many keys in many bounded calls: with tiny
// batch limits a wiped replica is still fully repaired, and a backlog of
// queued keys is still fully sent.
func TestBatchesAreBounded(t *testing.T) {
	defer cluster.SetBatchLimits(7, 300, 3)()
	tc := newTestCluster(t, 3, 3, 1)
	defer tc.close()
	for i := range 300 {
		k := fmt.Sprintf("key-%d", i)
		require.NoError(t, tc.do(tc.nodes[0].addr, set(k, "v"+k, wire.AckLocal)).Err())
	}
	tc.settle()
	require.Equal(t, 300, tc.nodes[0].node.Pending())
	before := tc.net.Stats().Delivered
	require.Equal(t, 600, tc.nodes[0].node.GossipOnce(context.Background()), "300 keys to 2 peers")
	calls := tc.net.Stats().Delivered - before
	require.GreaterOrEqual(t, calls, uint64(2*300/7), "gossip is split into batches of at most 7 keys")
	for _, tn := range tc.nodes {
		require.Equal(t, 300, tn.store.Len(), "node %d", tn.id)
	}

	// A fetch reply carries a few cells at most: the fetcher asks again for
	// the rest.
	defer cluster.SetFetchReplyLimit(60)()
	lost := tc.nodes[2]
	tc.start(lost)
	sum := lost.node.AntiEntropyOnce(context.Background())
	require.Zero(t, sum.Errors)
	require.Equal(t, 300, sum.Fetched)
	for i := range 300 {
		k := fmt.Sprintf("key-%d", i)
		v, ok := value(t, lost.store, k)
		require.True(t, ok, k)
		require.Equal(t, "v"+k, v)
	}

	// A bucket request names at most wire.MaxBuckets buckets.
	uints := []uint64{1, 10}
	for b := range wire.MaxBuckets + 1 {
		uints = append(uints, uint64(b))
	}
	_, err := tc.net.Endpoint("client").Call(context.Background(), tc.nodes[0].addr, &wire.Request{ID: 1, Op: wire.OpBucket, Uints: uints})
	require.ErrorIs(t, err, wire.ErrBadRequest)
}

// A hand-off of many keys goes in many bounded batches, and completes.
func TestHandoffInBatches(t *testing.T) {
	defer cluster.SetBatchLimits(7, 300, 3)()
	tc := newTestCluster(t, 4, 2, 1)
	defer tc.close()
	tc.state.Members = tc.state.Members[:3]
	tc.state.Epoch++
	tc.broadcast()
	for i := range 200 {
		k := fmt.Sprintf("key-%d", i)
		require.NoError(t, tc.do(tc.replicas(k)[0].addr, set(k, "v", wire.AckQuorum)).Err())
	}
	tc.settle()
	tc.apply(route.Command{Op: route.OpRegister, Member: route.Member{ID: 4, Addr: tc.nodes[3].addr}})
	require.Zero(t, tc.nodes[3].node.AntiEntropyOnce(context.Background()).Errors)
	tc.apply(route.Command{Op: route.OpActivate, ID: 4})
	before := tc.net.Stats().Delivered
	var sum cluster.HandoffSummary
	for _, tn := range tc.nodes {
		s := tn.node.HandoffOnce(context.Background())
		sum.Orphans += s.Orphans
		sum.Dropped += s.Dropped
		sum.Kept += s.Kept + s.Errors
	}
	require.NotZero(t, sum.Orphans)
	require.Equal(t, sum.Orphans, sum.Dropped)
	require.Zero(t, sum.Kept)
	require.GreaterOrEqual(t, tc.net.Stats().Delivered-before, uint64(sum.Orphans/7))
	total := 0
	for _, tn := range tc.nodes {
		total += tn.store.Len()
	}
	require.Equal(t, 2*200, total, "two copies of each key, no more")
}
