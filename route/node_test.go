package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/trellisdb/trellis/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.VerifyTestMain(m)
}

// deadline bounds every wait in these tests; elections take a few
// ElectionTimeouts (100ms here), so it only matters when something is wrong.
const deadline = 10 * time.Second

// testConfig returns a node config with test timings and DataDir dir/id.
func testConfig(t *testing.T, dir, id string) Config {
	cfg := Config{
		ID:                 id,
		DataDir:            filepath.Join(dir, id),
		HeartbeatTimeout:   100 * time.Millisecond,
		ElectionTimeout:    100 * time.Millisecond,
		LeaderLeaseTimeout: 50 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		WALSegmentSize:     1 << 20,
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", id)
	}
	return cfg
}

// cluster is a set of routing nodes on in-memory transports, all connected.
type cluster struct {
	t     *testing.T
	dir   string // removed after the nodes are closed
	nodes map[string]*Node
	cfgs  map[string]Config
	trans map[string]*raft.InmemTransport
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t, dir: t.TempDir(), nodes: map[string]*Node{}, cfgs: map[string]Config{}, trans: map[string]*raft.InmemTransport{}}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if err := n.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	})
	return c
}

// start starts (or restarts, on its old DataDir) node id on a new in-memory
// transport at address id, connected both ways to every other transport.
func (c *cluster) start(id string, bootstrap bool, adjust func(*Config)) *Node {
	c.t.Helper()
	n := c.startIsolated(id, bootstrap, adjust)
	c.connect(id)
	return n
}

// connect connects node id's transport both ways to every other one.
func (c *cluster) connect(id string) {
	tr := c.trans[id]
	for addr, other := range c.trans {
		if addr != id {
			tr.Connect(other.LocalAddr(), other)
			other.Connect(tr.LocalAddr(), tr)
		}
	}
}

// startIsolated is start without connecting the transport.
func (c *cluster) startIsolated(id string, bootstrap bool, adjust func(*Config)) *Node {
	c.t.Helper()
	cfg, ok := c.cfgs[id]
	if !ok {
		cfg = testConfig(c.t, c.dir, id)
		if adjust != nil {
			adjust(&cfg)
		}
	}
	cfg.Bootstrap = bootstrap
	_, tr := raft.NewInmemTransport(raft.ServerAddress(id))
	c.trans[id] = tr
	cfg.Transport = tr
	n, err := NewNode(cfg)
	if err != nil {
		c.t.Fatalf("NewNode %s: %v", id, err)
	}
	cfg.Transport = nil
	c.cfgs[id] = cfg
	c.nodes[id] = n
	return n
}

// stop closes node id and disconnects the others from it, as if it died.
func (c *cluster) stop(id string) {
	c.t.Helper()
	if err := c.nodes[id].Close(); err != nil {
		c.t.Fatalf("close %s: %v", id, err)
	}
	delete(c.nodes, id)
	for addr, tr := range c.trans {
		if addr != id {
			tr.Disconnect(raft.ServerAddress(id))
		}
	}
	delete(c.trans, id)
}

// waitAny blocks until one of chans is closed, or fails the test at the
// deadline.
func waitAny(t *testing.T, timer *time.Timer, what string, chans ...<-chan struct{}) {
	t.Helper()
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)}}
	for _, ch := range chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	if i, _, _ := reflect.Select(cases); i == 0 {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// waitState waits until cond holds for every node's State.
func waitState(t *testing.T, what string, cond func(State) bool, nodes ...*Node) {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for _, n := range nodes {
		for {
			ch := n.Watch()
			if cond(n.State()) {
				break
			}
			waitAny(t, timer, what, ch)
		}
	}
}

// waitLeader waits until exactly one of nodes leads and every other one of
// them that still runs Raft (a removed node shuts its Raft down) knows it,
// and returns the leader.
func waitLeader(t *testing.T, nodes ...*Node) *Node {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	for {
		var chans []<-chan struct{}
		for _, n := range nodes {
			chans = append(chans, n.WatchLeader())
		}
		var leader *Node
		for _, n := range nodes {
			if n.IsLeader() {
				if leader != nil {
					leader = nil
					break
				}
				leader = n
			}
		}
		agreed := leader != nil
		for _, n := range nodes {
			if n.raft.State() == raft.Shutdown {
				continue
			}
			if id, addr := n.Leader(); agreed && (id != leader.cfg.ID || addr != leader.RaftAddr()) {
				agreed = false
			}
		}
		if agreed {
			return leader
		}
		waitAny(t, timer, "a leader", chans...)
	}
}

func propose(t *testing.T, n *Node, c Command) State {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	s, err := n.Propose(ctx, c)
	if err != nil {
		t.Fatalf("Propose(%+v): %v", c, err)
	}
	return s
}

// onLeader runs op on whichever of nodes leads, again on the next leader
// while it fails with ErrNotLeader (leadership moved, as it may when a loaded
// machine delays heartbeats), as a client does. Commands, AddVoter and
// RemoveServer are idempotent, so a retry of one that did take effect
// changes nothing.
func onLeader(t *testing.T, nodes []*Node, what string, op func(context.Context, *Node) error) {
	t.Helper()
	end := time.Now().Add(deadline)
	for {
		leader := waitLeader(t, nodes...)
		ctx, cancel := context.WithDeadline(context.Background(), end)
		err := op(ctx, leader)
		cancel()
		if err == nil {
			return
		}
		if !errors.Is(err, ErrNotLeader) || time.Now().After(end) {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("retrying %s: %v", what, err)
	}
}

// proposeAny commits c through onLeader and returns the resulting state.
func proposeAny(t *testing.T, nodes []*Node, c Command) State {
	t.Helper()
	var s State
	onLeader(t, nodes, c.Op.String(), func(ctx context.Context, leader *Node) (err error) {
		s, err = leader.Propose(ctx, c)
		return err
	})
	return s
}

// addVoter adds n to voters, the nodes already in the group.
func addVoter(t *testing.T, voters []*Node, n *Node) {
	t.Helper()
	onLeader(t, voters, "AddVoter "+n.cfg.ID, func(ctx context.Context, leader *Node) error {
		return leader.AddVoter(ctx, n.cfg.ID, n.RaftAddr())
	})
}

func registerCmd(id uint64) Command {
	return Command{Op: OpRegister, Member: Member{ID: id, Addr: fmt.Sprintf("10.0.0.%d:7000", id)}}
}

// threeNodes starts a bootstrapped n1 and adds n2 and n3 as voters.
func threeNodes(t *testing.T, adjust func(*Config)) (*cluster, []*Node) {
	c := newCluster(t)
	n1 := c.start("n1", true, func(cfg *Config) {
		cfg.DefaultRF = 2
		if adjust != nil {
			adjust(cfg)
		}
	})
	n2 := c.start("n2", false, adjust)
	n3 := c.start("n3", false, adjust)
	waitLeader(t, n1)
	addVoter(t, []*Node{n1}, n2)
	addVoter(t, []*Node{n1, n2}, n3)
	nodes := []*Node{n1, n2, n3}
	waitState(t, "DefaultRF", func(s State) bool { return s.DefaultRF == 2 }, nodes...)
	return c, nodes
}

func equalTo(want State) func(State) bool {
	return func(s State) bool { return s.Equal(want) }
}

func TestClusterReplicates(t *testing.T) {
	// threeNodes waits for the bootstrapping node's DefaultRF to commit.
	_, nodes := threeNodes(t, nil)

	var last State
	cmds := []Command{registerCmd(1), registerCmd(2), {Op: OpActivate, ID: 1},
		{Op: OpSetRF, Key: "hot", RF: 3}, {Op: OpActivate, ID: 2}, {Op: OpLeave, ID: 1}}
	for _, c := range cmds {
		last = proposeAny(t, nodes, c)
	}
	// One epoch per change: the DefaultRF, then each command.
	if last.Epoch != uint64(1+len(cmds)) {
		t.Fatalf("epoch %d after %d changes", last.Epoch, 1+len(cmds))
	}
	waitState(t, "convergence", equalTo(last), nodes...)
	if m, _ := last.Member(1); m.State != Leaving {
		t.Fatalf("member 1: %+v", m)
	}
	if last.RF([]byte("hot")) != 3 || last.RF([]byte("cold")) != 2 {
		t.Fatalf("factors: %+v", last)
	}
}

func TestProposeOnFollower(t *testing.T) {
	_, nodes := threeNodes(t, nil)
	leader := waitLeader(t, nodes...)
	ctx := context.Background()
	for _, n := range nodes {
		if n == leader {
			continue
		}
		_, err := n.Propose(ctx, registerCmd(1))
		var nle *NotLeaderError
		if !errors.Is(err, ErrNotLeader) || !errors.As(err, &nle) {
			t.Fatalf("%s: Propose err = %v, want ErrNotLeader", n.cfg.ID, err)
		}
		if nle.LeaderID != leader.cfg.ID || nle.LeaderAddr != leader.RaftAddr() {
			t.Fatalf("%s: NotLeaderError names %q at %q, want %q at %q", n.cfg.ID, nle.LeaderID, nle.LeaderAddr, leader.cfg.ID, leader.RaftAddr())
		}
		if err := n.AddVoter(ctx, "x", "x"); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("AddVoter on a follower: %v", err)
		}
		if err := n.RemoveServer(ctx, "n1"); !errors.Is(err, ErrNotLeader) {
			t.Fatalf("RemoveServer on a follower: %v", err)
		}
	}
	if n := len(leader.State().Members); n != 0 {
		t.Fatalf("a follower's proposal took effect: %d members", n)
	}
}

func TestProposeRefusals(t *testing.T) {
	c := newCluster(t)
	n := c.start("solo", true, nil)
	waitLeader(t, n)
	waitState(t, "DefaultRF", func(s State) bool { return s.DefaultRF != 0 }, n)
	s := propose(t, n, registerCmd(5))
	ctx := context.Background()

	// Invalid: refused before the log.
	last := n.raft.LastIndex()
	if _, err := n.Propose(ctx, Command{Op: OpSetDefaultRF}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid command: %v", err)
	}
	if n.raft.LastIndex() != last {
		t.Fatalf("an invalid command reached the log")
	}

	// Refused by the state: committed, no change, the state returned.
	got, err := n.Propose(ctx, Command{Op: OpLeave, ID: 5})
	if !errors.Is(err, ErrBadTransition) || !got.Equal(s) {
		t.Fatalf("Leave of a joining member: %v, %+v", err, got)
	}
	if _, err := n.Propose(ctx, Command{Op: OpActivate, ID: 6}); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("Activate of an unknown member: %v", err)
	}
	if !n.State().Equal(s) {
		t.Fatalf("refused commands changed the state")
	}

	// A context that ends first.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := n.Propose(cctx, registerCmd(6)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
}

func TestLeaderFailover(t *testing.T) {
	c, nodes := threeNodes(t, nil)
	s := proposeAny(t, nodes, registerCmd(1))
	waitState(t, "replication", equalTo(s), nodes...)

	leader := waitLeader(t, nodes...)
	c.stop(leader.cfg.ID)
	var rest []*Node
	for _, n := range nodes {
		if n != leader {
			rest = append(rest, n)
		}
	}
	start := time.Now()
	next := waitLeader(t, rest...)
	t.Logf("new leader %s after %v", next.cfg.ID, time.Since(start))

	proposeAny(t, rest, Command{Op: OpActivate, ID: 1})
	s = proposeAny(t, rest, registerCmd(2))
	waitState(t, "replication after failover", equalTo(s), rest...)
	if m, _ := s.Member(1); m.State != Active || len(s.Members) != 2 {
		t.Fatalf("state after failover: %+v", s)
	}
}

func TestRestartReplaysLog(t *testing.T) {
	c := newCluster(t)
	n := c.start("solo", true, nil)
	waitLeader(t, n)
	waitState(t, "DefaultRF", func(s State) bool { return s.DefaultRF == DefaultReplication }, n)
	propose(t, n, registerCmd(1))
	propose(t, n, registerCmd(2))
	propose(t, n, Command{Op: OpSetDefaultRF, RF: 5})
	want := propose(t, n, Command{Op: OpSetRF, Key: "k", RF: 4})
	c.stop("solo")

	// The log holds everything; no snapshot exists. Bootstrap is set again:
	// it must neither form a second cluster over the existing state nor
	// commit the configured DefaultRF over the one the log sets.
	n = c.start("solo", true, nil)
	waitState(t, "log replay", equalTo(want), n)
	waitLeader(t, n)
	s := propose(t, n, Command{Op: OpActivate, ID: 1})
	if s.Epoch != want.Epoch+1 || s.DefaultRF != 5 {
		t.Fatalf("after restart: epoch %d, DefaultRF %d; want %d, 5", s.Epoch, s.DefaultRF, want.Epoch+1)
	}
}

func TestDataDirInUse(t *testing.T) {
	c := newCluster(t)
	n := c.start("solo", true, nil)
	cfg := c.cfgs["solo"]
	_, cfg.Transport = raft.NewInmemTransport("")
	if _, err := NewNode(cfg); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second node on a DataDir: %v", err)
	}
	waitLeader(t, n) // the first one is unharmed
}

func TestRestartFromSnapshot(t *testing.T) {
	c, nodes := threeNodes(t, nil)
	leader := waitLeader(t, nodes...)
	proposeAny(t, nodes, registerCmd(1))
	proposeAny(t, nodes, registerCmd(2))
	atSnapshot := proposeAny(t, nodes, Command{Op: OpActivate, ID: 1})

	// Snapshot a follower, then commit more.
	var f *Node
	for _, n := range nodes {
		if n != leader {
			f = n
		}
	}
	waitState(t, "replication", equalTo(atSnapshot), f)
	if err := f.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	want := proposeAny(t, nodes, Command{Op: OpSetRF, Key: "k", RF: 2})
	waitState(t, "replication", equalTo(want), f)
	id := f.cfg.ID
	c.stop(id)

	// Restarted, the follower restores the snapshot before NewNode returns
	// (it is not connected yet, so nothing else can have reached it), then,
	// connected, applies the rest of the log.
	f = c.startIsolated(id, false, nil)
	if !f.State().Equal(atSnapshot) {
		t.Fatalf("state right after restart = %+v, want the snapshot's %+v", f.State(), atSnapshot)
	}
	c.connect(id)
	waitState(t, "catch-up", equalTo(want), f)
}

func TestNewVoterInstallsSnapshot(t *testing.T) {
	// The leader keeps no log behind its snapshots, so a new voter can only
	// catch up from a snapshot sent over the transport.
	compact := func(cfg *Config) { cfg.raftConfig = func(rc *raft.Config) { rc.TrailingLogs = 0 } }
	c := newCluster(t)
	n1 := c.start("n1", true, compact)
	waitLeader(t, n1)
	for id := uint64(1); id <= 5; id++ {
		propose(t, n1, registerCmd(id))
	}
	want := propose(t, n1, Command{Op: OpMarkDown, ID: 3})
	if err := n1.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if first, _ := n1.stores.wal.FirstIndex(); first == 1 {
		t.Fatalf("log not compacted: first index %d", first)
	}
	n2 := c.start("n2", false, compact)
	addVoter(t, []*Node{n1}, n2)
	waitState(t, "snapshot install", equalTo(want), n2)
}

func TestTCPTransport(t *testing.T) {
	dir := t.TempDir()
	var nodes []*Node
	t.Cleanup(func() {
		for _, n := range nodes {
			if err := n.Close(); err != nil {
				t.Errorf("close: %v", err)
			}
		}
	})
	for i := range 3 {
		cfg := testConfig(t, dir, fmt.Sprintf("tcp%d", i))
		cfg.RaftAddr = "127.0.0.1:0"
		cfg.Bootstrap = i == 0
		n, err := NewNode(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		if addr := n.RaftAddr(); addr == "127.0.0.1:0" || addr == "" {
			t.Fatalf("RaftAddr %q is not the bound address", addr)
		}
	}
	waitLeader(t, nodes[0])
	addVoter(t, nodes[:1], nodes[1])
	addVoter(t, nodes[:2], nodes[2])
	proposeAny(t, nodes, registerCmd(1))
	want := proposeAny(t, nodes, Command{Op: OpActivate, ID: 1})
	waitState(t, "replication over TCP", equalTo(want), nodes...)
}

func TestRemoveServer(t *testing.T) {
	c, nodes := threeNodes(t, nil)
	leader := waitLeader(t, nodes...)
	var gone *Node
	for _, n := range nodes {
		if n != leader {
			gone = n
		}
	}
	onLeader(t, nodes, "RemoveServer", func(ctx context.Context, leader *Node) error {
		return leader.RemoveServer(ctx, gone.cfg.ID)
	})
	c.stop(gone.cfg.ID)
	// Two voters remain; both are needed, and both are there.
	var rest []*Node
	for _, n := range nodes {
		if n != gone {
			rest = append(rest, n)
		}
	}
	s := proposeAny(t, rest, registerCmd(9))
	waitState(t, "replication", equalTo(s), rest...)
	cf := waitLeader(t, rest...).raft.GetConfiguration()
	if err := cf.Error(); err != nil || len(cf.Configuration().Servers) != 2 {
		t.Fatalf("configuration %v, %v", cf.Configuration(), err)
	}
}

func TestClose(t *testing.T) {
	c := newCluster(t)
	n := c.start("solo", true, nil)
	waitLeader(t, n)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	if _, err := n.Propose(ctx, registerCmd(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Propose after Close: %v", err)
	}
	if err := n.AddVoter(ctx, "x", "x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("AddVoter after Close: %v", err)
	}
	_ = n.State() // still answers
}

func TestConfigValidate(t *testing.T) {
	ok := Config{ID: "a", DataDir: "/tmp/x", RaftAddr: "127.0.0.1:0"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*Config){
		"no id":             func(c *Config) { c.ID = "" },
		"no data dir":       func(c *Config) { c.DataDir = "" },
		"no address":        func(c *Config) { c.RaftAddr = "" },
		"negative rf":       func(c *Config) { c.DefaultRF = -1 },
		"huge rf":           func(c *Config) { c.DefaultRF = MaxRF + 1 },
		"short heartbeat":   func(c *Config) { c.HeartbeatTimeout = time.Millisecond },
		"lease > heartbeat": func(c *Config) { c.LeaderLeaseTimeout = time.Second },
		"election < hb":     func(c *Config) { c.ElectionTimeout = 100 * time.Millisecond },
		"negative segment":  func(c *Config) { c.WALSegmentSize = -1 },
	} {
		c := ok
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
		if _, err := NewNode(c); err == nil {
			t.Errorf("%s: NewNode accepted it", name)
		}
	}
	d := Config{}.withDefaults()
	if d.HeartbeatTimeout != 500*time.Millisecond || d.ElectionTimeout != 500*time.Millisecond ||
		d.LeaderLeaseTimeout != 250*time.Millisecond || d.CommitTimeout != 50*time.Millisecond || d.DefaultRF != 3 {
		t.Errorf("defaults %+v", d)
	}
}
