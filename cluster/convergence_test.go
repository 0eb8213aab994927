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
	tc := newTestCluster(t, 4, 3, seed)
	defer tc.close()
	keys := []string{"a", "b", "c", "d", "e", "f"}
	members := []string{"x", "y", "z"}
	detached := map[*testNode]bool{}
	var acked []ackedWrite
	var counts struct{ writes, acked, faults, partitions, crashes, gossip int }

	const steps = 400
	for step := range steps {
		tc.clk.Advance(time.Duration(rng.IntN(3)) * time.Millisecond)
		switch r := rng.IntN(100); {
		case r < 70:
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
		case r < 94:
			counts.gossip++
			tc.nodes[rng.IntN(len(tc.nodes))].node.GossipOnce(context.Background())
			tc.settle()
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
	quiet := false
	for round := 0; round < 5 && !quiet; round++ {
		quiet = true
		for _, tn := range tc.nodes {
			s := tn.node.AntiEntropyOnce(ctx)
			require.Zero(t, s.Errors, "anti-entropy errors after healing")
			if s.DiffBuckets > 0 {
				quiet = false
			}
		}
	}
	require.True(t, quiet, "anti-entropy still finds differences after 5 rounds")
	t.Logf("%d writes (%d acknowledged), %d fault changes, %d partition changes, %d crash/restarts, %d gossip steps",
		counts.writes, counts.acked, counts.faults, counts.partitions, counts.crashes, counts.gossip)

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
	}
	// ...which contains every acknowledged write.
	for _, w := range acked {
		got := final[w.key].Clone()
		in, err := lattice.DecodeCell(w.cell)
		require.NoError(t, err)
		require.False(t, got.Merge(in), "key %q: the write acknowledged at step %d is missing from the final cell", w.key, w.step)
	}
}
