package clusterclient

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wireserver"
)

// A real cluster in this process, wired as cmd/trellis wires one (a routing
// node: Raft, its service and listener; storage nodes: store, server,
// cluster node, member driver), on loopback ports picked by the system,
// with test timings. Everything it starts stops when the test ends.

// harnessConfig sets what differs between tests.
type harnessConfig struct {
	Nodes     int           // storage nodes started at once, ids 1..Nodes
	RF        int           // the cluster's default replication factor
	DownAfter time.Duration // how long the routing leader waits for a heartbeat; default 30 s (never, in a test)
}

type harness struct {
	t         *testing.T
	cfg       harnessConfig
	routeAddr string
	admin     *route.Client // for the test's own commands and state checks
	log       *slog.Logger

	mu    sync.Mutex
	nodes map[uint64]*testNode
}

// testNode is a running storage node.
type testNode struct {
	id    uint64
	addr  string
	store *kvs.Store
	node  *cluster.Node

	stopMember func() // stops heartbeats, state refreshes, re-registration
	stop       func() // stops everything (idempotent)
}

// waitFor bounds every wait on the cluster: generous, it matters only when
// something is broken.
const waitFor = 15 * time.Second

func startHarness(t *testing.T, cfg harnessConfig) *harness {
	t.Helper()
	if cfg.DownAfter == 0 {
		cfg.DownAfter = 30 * time.Second
	}
	h := &harness{t: t, cfg: cfg, nodes: map[uint64]*testNode{}, log: slog.New(slog.DiscardHandler)}
	if testing.Verbose() && os.Getenv("TRELLIS_TEST_LOG") != "" {
		h.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h.startRoute()
	h.admin = route.NewClient([]string{h.routeAddr}, client.Options{Conns: 1})
	t.Cleanup(func() { h.admin.Close() })
	t.Cleanup(h.stopNodes) // before the routing node's cleanup: last in, first out
	for i := range cfg.Nodes {
		h.startNode(uint64(i + 1))
	}
	h.waitActive(cfg.Nodes)
	return h
}

func (h *harness) startRoute() {
	t := h.t
	rn, err := route.NewNode(route.Config{
		ID: "r1", RaftAddr: "127.0.0.1:0", DataDir: filepath.Join(t.TempDir(), "route"),
		Bootstrap: true, DefaultRF: h.cfg.RF, Logger: h.log.With("role", "raft"),
		HeartbeatTimeout: 100 * time.Millisecond, ElectionTimeout: 100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond, CommitTimeout: 5 * time.Millisecond,
		WALSegmentSize: 1 << 20,
	})
	require.NoError(t, err)
	svc, err := route.NewService(route.ServiceConfig{Node: rn, DownAfter: h.cfg.DownAfter,
		CheckEvery: 50 * time.Millisecond, Logger: h.log})
	require.NoError(t, err)
	srv, err := wireserver.New(wireserver.Config{Addr: "127.0.0.1:0", Logger: h.log}, svc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Run(ctx) })
	wg.Go(func() { _ = svc.Run(ctx) })
	t.Cleanup(func() { // after every storage node (cleanups run last-in first-out)
		cancel()
		wg.Wait()
		require.NoError(t, rn.Close())
	})
	<-srv.Ready()
	h.routeAddr = srv.Addr()
}

// startNode starts storage node id and returns once it listens (it then
// registers and joins by itself).
func (h *harness) startNode(id uint64) *testNode {
	t := h.t
	log := h.log.With("node", id)
	store, err := kvs.NewStore(kvs.StoreConfig{NodeID: id, Shards: 2})
	require.NoError(t, err)
	transport := cluster.NewTCPTransport(client.Options{Conns: 1, Name: "trellis-peer"})
	router := route.NewClient([]string{h.routeAddr}, client.Options{Conns: 1, Name: "trellis-kvs"})
	node, err := cluster.New(cluster.Config{
		ID: id, Store: store, Transport: transport, Router: router, Logger: log,
		GossipEvery: 20 * time.Millisecond, AntiEntropyEvery: 200 * time.Millisecond,
		ReplicaTimeout: time.Second,
	})
	require.NoError(t, err)
	srv, err := kvs.NewServer(store, kvs.ServerConfig{Addr: "127.0.0.1:0", RESPAddr: kvs.AddrOff,
		Loops: 2, Cluster: node, Logger: log})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	mctx, mcancel := context.WithCancel(ctx)
	var wg, mwg sync.WaitGroup
	var once sync.Once
	ran := make(chan error, 1) // the server's Run's result
	n := &testNode{id: id, store: store, node: node,
		stopMember: func() { mcancel(); mwg.Wait() },
		stop: func() {
			once.Do(func() {
				cancel()
				mwg.Wait()
				wg.Wait()
				select {
				case err := <-ran:
					if err != nil {
						t.Errorf("storage node %d: %v", id, err)
					}
				default: // never started
				}
				node.Close()
				transport.Close()
				router.Close()
			})
		},
	}
	h.mu.Lock()
	h.nodes[id] = n // stopped by stopNodes from here on
	h.mu.Unlock()

	wg.Go(func() { ran <- srv.Run(ctx) })
	select {
	case <-srv.Ready():
	case err := <-ran:
		t.Fatalf("storage node %d did not start: %v", id, err)
	}
	n.addr = srv.Addr()
	m, err := cluster.NewMember(cluster.MemberConfig{Node: node, Router: router, Logger: log,
		Self: route.Member{ID: id, Addr: n.addr}, Every: 50 * time.Millisecond})
	require.NoError(t, err)
	mwg.Go(func() { _ = m.Run(mctx) })
	wg.Go(func() { _ = node.Run(ctx) })
	return n
}

// stopNodes stops every storage node, in parallel (a server takes a while
// to stop its event loops).
func (h *harness) stopNodes() {
	h.mu.Lock()
	defer h.mu.Unlock()
	var wg sync.WaitGroup
	for _, n := range h.nodes {
		wg.Go(n.stop)
	}
	wg.Wait()
}

func (h *harness) node(id uint64) *testNode {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.nodes[id]
}

// state returns the routing tier's state.
func (h *harness) state() route.State {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := h.admin.State(ctx)
	require.NoError(h.t, err)
	return st
}

// waitActive waits until the routing state has exactly n active members and
// none joining, and every running storage node routes by that state or a
// newer one; it returns the state.
func (h *harness) waitActive(n int) route.State {
	h.t.Helper()
	var st route.State
	require.Eventually(h.t, func() bool {
		st = h.state()
		active := 0
		for _, m := range st.Members {
			switch m.State {
			case route.Active:
				active++
			case route.Joining:
				return false
			}
		}
		return active == n
	}, waitFor, 10*time.Millisecond, "waiting for %d active storage nodes", n)
	h.waitNodesAt(st.Epoch)
	return st
}

// waitNodesAt waits until every running storage node that is a member routes
// by epoch or a newer one.
func (h *harness) waitNodesAt(epoch uint64) {
	h.t.Helper()
	h.mu.Lock()
	var nodes []*testNode
	for _, n := range h.nodes {
		nodes = append(nodes, n)
	}
	h.mu.Unlock()
	for _, n := range nodes {
		require.Eventually(h.t, func() bool { return n.node.Epoch() >= epoch }, waitFor, 5*time.Millisecond,
			"node %d at epoch %d, want %d", n.id, n.node.Epoch(), epoch)
	}
}

// propose commits cmd on the routing tier.
func (h *harness) propose(cmd route.Command) route.State {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	st, err := h.admin.Propose(ctx, cmd)
	require.NoError(h.t, err)
	return st
}

// dial returns a cluster client of h, closed when the test ends.
func (h *harness) dial(opts Options) *Client {
	h.t.Helper()
	opts.Route = []string{h.routeAddr}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 50 * time.Millisecond
	}
	c, err := Dial(testCtx(h.t), opts)
	require.NoError(h.t, err)
	h.t.Cleanup(func() { c.Close() })
	return c
}

// holders returns the ids of the running nodes whose store holds key.
func (h *harness) holders(key string) []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []uint64
	for id := uint64(1); id <= uint64(len(h.nodes)); id++ {
		if n := h.nodes[id]; n != nil && n.store.Exists([]byte(key)) {
			out = append(out, id)
		}
	}
	return out
}
