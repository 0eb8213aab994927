package route

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/wire"
	"github.com/trellisdb/trellis/wireserver"
)

// fakeClock is the Services' clock: it moves only when the test says so.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// served is a Service on a wireserver on loopback.
type served struct {
	svc  *Service
	addr string
	stop func()
}

// tier is three routing nodes (threeNodes) with their Services, on one fake
// clock.
type tier struct {
	c     *cluster
	nodes []*Node
	clock *fakeClock
	svcs  map[string]*served // by node id
}

// newTier starts the tier. Run's own checks are off (CheckEvery an hour)
// unless adjust changes it: tests call CheckOnce.
func newTier(t *testing.T, adjust func(*ServiceConfig)) *tier {
	c, nodes := threeNodes(t, nil)
	tr := &tier{c: c, nodes: nodes, clock: &fakeClock{t: time.Unix(1_700_000_000, 0)}, svcs: map[string]*served{}}
	for _, n := range nodes {
		cfg := ServiceConfig{Node: n, Now: tr.clock.Now, CheckEvery: time.Hour}
		if adjust != nil {
			adjust(&cfg)
		}
		tr.svcs[n.cfg.ID] = serve(t, cfg)
	}
	return tr
}

// serve runs a Service for cfg on a wireserver until the test ends (the
// services stop before the nodes close: cleanups run last-in first-out).
func serve(t *testing.T, cfg ServiceConfig) *served {
	t.Helper()
	svc, err := NewService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := wireserver.New(wireserver.Config{Addr: "127.0.0.1:0"}, svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() { errs <- srv.Run(ctx) })
	wg.Go(func() { errs <- svc.Run(ctx) })
	stop := sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("service of %s: %v", cfg.Node.cfg.ID, err)
			}
		}
	})
	t.Cleanup(stop)
	select {
	case <-srv.Ready():
	case err := <-errs:
		t.Fatalf("wireserver: %v", err)
	}
	return &served{svc: svc, addr: srv.Addr(), stop: stop}
}

func (tr *tier) addrs(ids ...string) []string {
	var out []string
	for _, id := range ids {
		out = append(out, tr.svcs[id].addr)
	}
	return out
}

func (tr *tier) allAddrs() []string {
	var ids []string
	for _, n := range tr.nodes {
		ids = append(ids, n.cfg.ID)
	}
	return tr.addrs(ids...)
}

// stop stops node id's service, then the node, as if it died.
func (tr *tier) stop(id string) {
	tr.svcs[id].stop()
	delete(tr.svcs, id)
	tr.c.stop(id)
	var rest []*Node
	for _, n := range tr.nodes {
		if n.cfg.ID != id {
			rest = append(rest, n)
		}
	}
	tr.nodes = rest
}

func newClient(t *testing.T, addrs []string) *Client {
	c := NewClient(addrs, client.Options{})
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("client close: %v", err)
		}
	})
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func memberState(t *testing.T, n *Node, id uint64) MemberState {
	t.Helper()
	m, ok := n.State().Member(id)
	if !ok {
		t.Fatalf("member %d absent from %s's state", id, n.cfg.ID)
	}
	return m.State
}

func TestServiceState(t *testing.T) {
	tr := newTier(t, nil)
	ctx := testCtx(t)
	want := proposeAny(t, tr.nodes, registerCmd(1))
	waitState(t, "replication", equalTo(want), tr.nodes...)
	for _, n := range tr.nodes { // every routing node answers, leader or not
		got, err := newClient(t, tr.addrs(n.cfg.ID)).State(ctx)
		if err != nil || !got.Equal(want) {
			t.Fatalf("State from %s: %+v, %v; want %+v", n.cfg.ID, got, err, want)
		}
	}
	got, err := newClient(t, tr.allAddrs()).State(ctx)
	if err != nil || !got.Equal(want) {
		t.Fatalf("State: %+v, %v", got, err)
	}
}

func TestServiceProposeFollowerFirst(t *testing.T) {
	tr := newTier(t, nil)
	ctx := testCtx(t)
	leader := waitLeader(t, tr.nodes...)
	var ids []string // followers first
	for _, n := range tr.nodes {
		if n != leader {
			ids = append(ids, n.cfg.ID)
		}
	}
	follower := ids[0]
	ids = append(ids, leader.cfg.ID)
	cl := newClient(t, tr.addrs(ids...))

	s, err := cl.Propose(ctx, registerCmd(7))
	if err != nil {
		t.Fatalf("Propose: %v", err)
	}
	if m, ok := s.Member(7); !ok || m.State != Joining {
		t.Fatalf("state after Register: %+v", s)
	}
	if s, err = cl.Propose(ctx, Command{Op: OpActivate, ID: 7}); err != nil || memberOf(s, 7).State != Active {
		t.Fatalf("Activate: %+v, %v", s, err)
	}

	// Refusals come back as errors of their kind.
	if _, err := cl.Propose(ctx, Command{Op: OpActivate, ID: 99}); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("Activate of an unknown member: %v", err)
	}
	if _, err := cl.Propose(ctx, Command{Op: OpLeave, ID: 7}); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if _, err := cl.Propose(ctx, Command{Op: OpActivate, ID: 7}); !errors.Is(err, wire.ErrBadRequest) {
		t.Fatalf("Activate of a leaving member: %v", err)
	}
	if _, err := cl.Propose(ctx, Command{Op: OpSetRF, Key: "k", RF: MaxRF + 1}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid command: %v", err)
	}

	// A follower's own answer: unavailable, naming the leader.
	raw, err := client.Dial(ctx, tr.addrs(follower)[0], client.Options{Conns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	b, _ := Command{Op: OpRemove, ID: 7}.AppendBinary(nil)
	r, err := raw.Do(ctx, &wire.Request{Op: wire.OpCommand, Value: b})
	if err != nil || r.Code != wire.CodeUnavailable || !strings.Contains(r.Msg, leader.cfg.ID) {
		t.Fatalf("command on a follower: %+v, %v", r, err)
	}
	r, err = raw.Do(ctx, &wire.Request{Op: wire.OpHeartbeat, Uints: []uint64{7}})
	if err != nil || r.Code != wire.CodeUnavailable {
		t.Fatalf("heartbeat on a follower: %+v, %v", r, err)
	}
	// Malformed and foreign requests.
	for _, req := range []*wire.Request{
		{Op: wire.OpCommand, Value: []byte{0xc1}},
		{Op: wire.OpCommand},
		{Op: wire.OpGet, Key: []byte("k")},
	} {
		if r, err := raw.Do(ctx, req); err != nil || r.Code != wire.CodeBadRequest {
			t.Fatalf("%s: %+v, %v", req.Op, r, err)
		}
	}
	if r, err := raw.Do(ctx, &wire.Request{Op: wire.OpPing, Value: []byte("x")}); err != nil || r.Code != wire.CodeOK {
		t.Fatalf("ping: %+v, %v", r, err)
	}
}

func memberOf(s State, id uint64) Member {
	m, _ := s.Member(id)
	return m
}

func TestServiceLiveness(t *testing.T) {
	tr := newTier(t, nil)
	ctx := testCtx(t)
	cl := newClient(t, tr.allAddrs())
	for _, id := range []uint64{1, 2} {
		if _, err := cl.Propose(ctx, registerCmd(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Heartbeat(ctx, 99); !errors.Is(err, ErrUnknownMember) {
		t.Fatalf("heartbeat of a non-member: %v", err)
	}
	leader := waitLeader(t, tr.nodes...)
	svc := tr.svcs[leader.cfg.ID].svc
	check := func() {
		t.Helper()
		if err := svc.CheckOnce(ctx); err != nil {
			t.Fatalf("CheckOnce: %v", err)
		}
	}
	check() // both members' clocks start now, T0

	// Member 1 heartbeats every second, member 2 never. DownAfter is 5 s:
	// member 2 is expired once more than 5 s have passed, at T0+6s.
	for step := 1; step <= 8; step++ {
		tr.clock.Advance(time.Second)
		if err := cl.Heartbeat(ctx, 1); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
		check()
		if st := memberState(t, leader, 1); st == Down {
			t.Fatalf("T0+%ds: the heartbeating member is down", step)
		}
		switch st := memberState(t, leader, 2); {
		case step <= 5 && st == Down:
			t.Fatalf("T0+%ds: member 2 down before DownAfter", step)
		case step >= 6 && st != Down:
			t.Fatalf("T0+%ds: member 2 is %s, want down", step, st)
		}
	}

	// Followers keep no liveness and mark nothing.
	tr.clock.Advance(time.Hour)
	for _, n := range tr.nodes {
		if n != leader {
			if err := tr.svcs[n.cfg.ID].svc.CheckOnce(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := memberState(t, leader, 1); st == Down {
		t.Fatal("a follower marked member 1 down")
	}
}

func TestServiceRunMarksDown(t *testing.T) {
	tr := newTier(t, func(cfg *ServiceConfig) { cfg.CheckEvery = 2 * time.Millisecond })
	ctx := testCtx(t)
	cl := newClient(t, tr.allAddrs())
	if _, err := cl.Propose(ctx, registerCmd(1)); err != nil {
		t.Fatal(err)
	}
	leader := waitLeader(t, tr.nodes...)
	// Make sure the leader's liveness has met member 1 before the clock
	// moves (Run's ticks may not have come yet).
	if err := tr.svcs[leader.cfg.ID].svc.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if memberState(t, leader, 1) == Down {
		t.Fatal("down at once")
	}
	tr.clock.Advance(5*time.Second + time.Millisecond)
	waitState(t, "member 1 down by Run", func(s State) bool { return memberOf(s, 1).State == Down }, tr.nodes...)
}

func TestServiceFailover(t *testing.T) {
	tr := newTier(t, nil)
	ctx := testCtx(t)
	cl := newClient(t, tr.allAddrs())
	if _, err := cl.Propose(ctx, registerCmd(1)); err != nil {
		t.Fatal(err)
	}
	old := waitLeader(t, tr.nodes...)
	if err := tr.svcs[old.cfg.ID].svc.CheckOnce(ctx); err != nil { // member 1's clock starts
		t.Fatal(err)
	}
	tr.clock.Advance(time.Minute)
	tr.stop(old.cfg.ID)

	// The client last talked to the old leader; it moves on to the new one.
	s, err := cl.Propose(ctx, Command{Op: OpActivate, ID: 1})
	if err != nil {
		t.Fatalf("Propose after failover: %v", err)
	}
	if memberOf(s, 1).State != Active {
		t.Fatalf("state after failover: %+v", s)
	}
	next := waitLeader(t, tr.nodes...)
	// A fresh leader gives every member a full DownAfter, however long ago
	// the old leader heard from it.
	svc := tr.svcs[next.cfg.ID].svc
	if err := svc.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st := memberState(t, next, 1); st != Active {
		t.Fatalf("member 1 is %s right after failover, want active", st)
	}
	if err := cl.Heartbeat(ctx, 1); err != nil {
		t.Fatalf("heartbeat after failover: %v", err)
	}
	tr.clock.Advance(6 * time.Second)
	if err := svc.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st := memberState(t, next, 1); st != Down {
		t.Fatalf("member 1 is %s 6 s after its last heartbeat, want down", st)
	}
}

func TestServiceRegainedLeadershipStartsFresh(t *testing.T) {
	tr := newTier(t, nil)
	ctx := testCtx(t)
	cl := newClient(t, tr.allAddrs())
	if _, err := cl.Propose(ctx, registerCmd(1)); err != nil {
		t.Fatal(err)
	}
	a := waitLeader(t, tr.nodes...)
	if err := cl.Heartbeat(ctx, 1); err != nil { // recorded by a at T0
		t.Fatal(err)
	}
	tr.clock.Advance(time.Minute)

	// Leadership goes to b and comes back to a: a's T0 record is stale
	// (member 1 may have heartbeated to b all along) and must not count.
	if err := a.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("transfer away: %v", err)
	}
	b := waitLeader(t, tr.nodes...)
	if b == a {
		t.Fatal("leadership did not move")
	}
	if err := b.raft.LeadershipTransferToServer(raft.ServerID(a.cfg.ID), raft.ServerAddress(a.RaftAddr())).Error(); err != nil {
		t.Fatalf("transfer back: %v", err)
	}
	if waitLeader(t, tr.nodes...) != a {
		t.Fatal("leadership did not come back")
	}
	if err := tr.svcs[a.cfg.ID].svc.CheckOnce(ctx); err != nil {
		t.Fatal(err)
	}
	if st := memberState(t, a, 1); st == Down {
		t.Fatal("a leader that regained leadership judged by its old heartbeats")
	}
}

func TestServiceConfig(t *testing.T) {
	if _, err := NewService(ServiceConfig{}); err == nil {
		t.Error("no Node accepted")
	}
	n := &Node{}
	if _, err := NewService(ServiceConfig{Node: n, DownAfter: -1}); err == nil {
		t.Error("negative DownAfter accepted")
	}
	d := ServiceConfig{}.withDefaults()
	if d.DownAfter != 5*time.Second || d.CheckEvery != time.Second || d.ProposeTimeout != 10*time.Second || d.Now == nil {
		t.Errorf("defaults %+v", d)
	}
}

func TestClientClosed(t *testing.T) {
	cl := NewClient([]string{"127.0.0.1:1"}, client.Options{})
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.State(testCtx(t)); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("State after Close: %v", err)
	}
	// Nothing reachable: the call ends with its context, naming why.
	cl = newClient(t, []string{"127.0.0.1:1"})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := cl.State(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("State with nothing reachable: %v", err)
	}
}
