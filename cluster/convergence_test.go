package cluster_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/memnet"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// convergenceSeeds are the seeds CI runs; TRELLIS_SEED=n runs seed n alone.
var convergenceSeeds = []uint64{1, 2, 3, 4, 5, 6, 7, 8}

// TestRandomizedConvergence drives a cluster through random writes of
// several lattice types on random replicas, with lost and duplicated
// messages, partitions and heals, and nodes crashing and coming back, then
// heals everything and lets gossip and anti-entropy run. At the end every
// replica of a key holds the same cell, and that cell contains every
// write the cluster acknowledged (merging the acknowledged state into it
// changes nothing). It logs its seed; TRELLIS_SEED=<seed> replays one run
// exactly (each step waits for the calls it started, and the network's
// fault decisions are seeded per pair of nodes).
func TestRandomizedConvergence(t *testing.T) {
	seeds := convergenceSeeds
	if s := os.Getenv("TRELLIS_SEED"); s != "" {
		seed, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "TRELLIS_SEED")
		seeds = []uint64{seed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runConvergence(t, seed) })
	}
}

type ackedWrite struct {
	step int
	key  string
	cell []byte // the coordinator's cell for key right after the write
}

func runConvergence(t *testing.T, seed uint64) {
	t.Logf("seed %d; replay with TRELLIS_SEED=%d go test -run 'TestRandomizedConvergence' ./cluster/", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	// Five nodes, four of them members: the fifth joins later, and members
	// leave, so copies move (and are handed off) while writes go on.
	// The replication factor varies with the seed: with fewer copies a
	// hand-off that drops a copy too early has nowhere to hide.
	rf := []int{1, 2, 3}[seed%3]
	tc := newTestCluster(t, 5, rf, seed)
	defer tc.close()
	tc.state.Members = tc.state.Members[:4]
	tc.state.Epoch++
	tc.broadcast()
	keys := []string{"a", "b", "c", "d", "e", "f"}
	members := []string{"x", "y", "z"}
	detached := map[*testNode]bool{}
	var acked []ackedWrite
	var counts struct{ writes, acked, faults, partitions, crashes, gossip, membership int }

	const steps = 400
	for step := range steps {
		tc.clk.Advance(time.Duration(rng.IntN(3)) * time.Millisecond)
		switch r := rng.IntN(100); {
		case r < 64:
			key := keys[rng.IntN(len(keys))]
			rs := tc.replicas(key)
			coord := rs[rng.IntN(len(rs))]
			if detached[coord] {
				continue // a client cannot reach a crashed node
			}

			ack := wire.AckLocal
			if rng.IntN(2) == 0 {
				ack = wire.AckQuorum
			}
			req := &wire.Request{ID: uint64(step), Key: []byte(key), Opts: wire.Options{Ack: ack}}
			switch rng.IntN(6) {
			case 0, 1:
				req.Op, req.Value = wire.OpSet, []byte(fmt.Sprintf("v%d", step))
			case 2:
				req.Op, req.Int = wire.OpCounterAdd, int64(rng.IntN(11)-5)
			case 3:
				req.Op, req.Members = wire.OpSetAdd, [][]byte{[]byte(members[rng.IntN(len(members))])}
			case 4:
				req.Op, req.Members = wire.OpSetRemove, [][]byte{[]byte(members[rng.IntN(len(members))])}
			case 5:
				req.Op = wire.OpDelete
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := tc.net.Endpoint("client").Call(ctx, coord.addr, req)
			cancel()
			tc.settle()
			counts.writes++
			if err == nil && resp.Err() == nil {
				counts.acked++
				// (A removal from a missing set leaves nothing to check.)
				if cell, ok := coord.store.Cell([]byte(key), nil); ok {
					acked = append(acked, ackedWrite{step, key, cell})
				}
			}
		case r < 78:
			counts.faults++
			if rng.IntN(3) == 0 {
				tc.net.SetFaults(memnet.Faults{})
			} else {
				tc.net.SetFaults(memnet.Faults{
					DropRequest:  rng.Float64() * 0.2,
					DropResponse: rng.Float64() * 0.2,
					Duplicate:    rng.Float64() * 0.2,
				})
			}
		case r < 86:
			counts.partitions++
			if rng.IntN(2) == 0 {
				tc.net.Heal()
			} else {
				perm := rng.Perm(len(tc.nodes))
				cut := 1 + rng.IntN(len(tc.nodes)-1)
				var g1, g2 []string
				for i, p := range perm {
					if i < cut {
						g1 = append(g1, tc.nodes[p].addr)
					} else {
						g2 = append(g2, tc.nodes[p].addr)
					}
				}
				tc.net.Partition(g1, g2)
			}
		case r < 90:
			counts.gossip++
			tc.nodes[rng.IntN(len(tc.nodes))].node.GossipOnce(context.Background())
			tc.settle()
		case r < 97:
			counts.membership++
			tc.membershipStep(rng)
		default:
			counts.crashes++
			tn := tc.nodes[rng.IntN(len(tc.nodes))]
			if detached[tn] {
				tc.net.Attach(tn.addr, tn.node) // back, with its data (its disk)
				delete(detached, tn)
			} else {
				tc.net.Detach(tn.addr)
				detached[tn] = true
			}
		}
	}

	// Heal everything and let replication finish.
	tc.net.Heal()
	tc.net.SetFaults(memnet.Faults{})
	for tn := range detached {
		tc.net.Attach(tn.addr, tn.node)
	}
	ctx := context.Background()
	for range 5 {
		for _, tn := range tc.nodes {
			tn.node.GossipOnce(ctx)
		}
		tc.settle()
	}
	// Members still joining or leaving finish: joiners sync and activate,
	// leavers push their keys and are removed.
	for _, m := range tc.state.Members {
		if m.State == route.Joining || m.State == route.Leaving {
			tn := tc.node(m.ID)
			tn.node.AntiEntropyOnce(ctx)
			tc.settle()
			op := route.OpActivate
			if m.State == route.Leaving {
				op = route.OpRemove
			}
			tc.apply(route.Command{Op: op, ID: m.ID})
		}
	}
	quiet := false
	for round := 0; round < 5 && !quiet; round++ {
		quiet = true
		for _, tn := range tc.nodes {
			s := tn.node.AntiEntropyOnce(ctx)
			require.Zero(t, s.Errors, "anti-entropy errors after healing")
			if s.DiffBuckets > 0 {
				quiet = false
			}
			tc.settle()
		}
	}
	require.True(t, quiet, "anti-entropy still finds differences after 5 rounds")
	for _, tn := range tc.nodes {
		s := tn.node.HandoffOnce(ctx)
		require.Zero(t, s.Errors+s.Kept, "node %d: hand-off after healing: %+v", tn.id, s)
		tc.settle()
	}
	t.Logf("RF %d: %d writes (%d acknowledged), %d fault changes, %d partition changes, %d crash/restarts, %d gossip steps, %d membership steps; final %s",
		rf, counts.writes, counts.acked, counts.faults, counts.partitions, counts.crashes, counts.gossip, counts.membership, describeState(tc.state))

	// Every replica of a key holds the same cell...
	final := map[string]lattice.Cell{}
	for _, key := range keys {
		var first []byte
		for i, tn := range tc.replicas(key) {
			cell, ok := tn.store.Cell([]byte(key), nil)
			if i == 0 {
				first = cell
				if ok {
					c, err := lattice.DecodeCell(cell)
					require.NoError(t, err)
					final[key] = c
				}
				continue
			}
			require.Equal(t, string(first), string(cell), "key %q: replicas differ", key)
		}
		// ...and, once hand-offs are done, nobody else holds a copy.
		for _, tn := range tc.nodes {
			if !containsNode(tc.replicas(key), tn) {
				_, ok := tn.store.Cell([]byte(key), nil)
				require.False(t, ok, "key %q: node %d holds a copy it does not replicate", key, tn.id)
			}
		}
	}
	// ...which contains every acknowledged write.
	for _, w := range acked {
		got := final[w.key].Clone()
		in, err := lattice.DecodeCell(w.cell)
		require.NoError(t, err)
		require.False(t, got.Merge(in), "key %q: the write acknowledged at step %d is missing from the final cell", w.key, w.step)
	}
}

// membershipStep makes one random membership move: a node outside the
// cluster joins; a joining node syncs (anti-entropy) or is activated; a
// member is asked to leave (while at least three stay active); a leaving
// node pushes its keys or is removed; a node hands off what it no longer
// replicates. Every node hears of a change at once (their polls are not what
// this test is about), except that a crashed node cannot be reached.
func (tc *testCluster) membershipStep(rng *rand.Rand) {
	ctx := context.Background()
	var outside, joining, active, leaving []uint64
	for _, tn := range tc.nodes {
		m, ok := tc.state.Member(tn.id)
		switch {
		case !ok:
			outside = append(outside, tn.id)
		case m.State == route.Joining:
			joining = append(joining, tn.id)
		case m.State == route.Active:
			active = append(active, tn.id)
		case m.State == route.Leaving:
			leaving = append(leaving, tn.id)
		}
	}
	pick := func(ids []uint64) uint64 { return ids[rng.IntN(len(ids))] }
	switch rng.IntN(6) {
	case 0:
		if len(outside) > 0 {
			id := pick(outside)
			tc.apply(route.Command{Op: route.OpRegister, Member: route.Member{ID: id, Addr: tc.node(id).addr}})
		}
	case 1:
		if len(joining) > 0 {
			id := pick(joining)
			if rng.IntN(2) == 0 {
				tc.node(id).node.AntiEntropyOnce(ctx)
			} else {
				tc.apply(route.Command{Op: route.OpActivate, ID: id})
			}
		}
	case 2:
		if len(active) > 3 {
			tc.apply(route.Command{Op: route.OpLeave, ID: pick(active)})
		}
	case 3:
		if len(leaving) > 0 {
			id := pick(leaving)
			if rng.IntN(2) == 0 {
				tc.node(id).node.AntiEntropyOnce(ctx)
			} else {
				tc.apply(route.Command{Op: route.OpRemove, ID: id})
			}
		}
	default:
		tc.nodes[rng.IntN(len(tc.nodes))].node.HandoffOnce(ctx)
	}
	tc.settle()
}
