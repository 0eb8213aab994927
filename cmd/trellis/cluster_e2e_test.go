package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/route"
)

// waitLines reads a started process's stdout until a line starts with last,
// and returns the lines read.
func waitLines(t *testing.T, n *node, last string) []string {
	t.Helper()
	var lines []string
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-n.lines:
			if !ok {
				<-n.exited
				t.Fatalf("process exited early (%v); stderr:\n%s", n.cmd.ProcessState, n.stderr.String())
			}
			lines = append(lines, l)
			if strings.HasPrefix(strings.TrimSpace(l), last) {
				return lines
			}
		case <-deadline:
			t.Fatalf("no %q line within 30s; got %q; stderr:\n%s", last, lines, n.stderr.String())
		}
	}
}

// field returns the value after a banner label ("native", "redis", "raft").
func field(t *testing.T, lines []string, label string) string {
	t.Helper()
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 2 && f[0] == label {
			return f[1]
		}
	}
	t.Fatalf("no %s line in %q", label, lines)
	return ""
}

type routeProc struct {
	*node
	native, raft string
}

func startRoute(t *testing.T, dir, join string) *routeProc {
	args := []string{"route", "--addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn"}
	if join != "" {
		args = append(args, "--join", join)
	}
	n := startProcess(t, args...)
	lines := waitLines(t, n, "raft")
	return &routeProc{node: n, native: field(t, lines, "native"), raft: field(t, lines, "raft")}
}

type kvsProc struct {
	*node
	native, redis string
}

func startKVS(t *testing.T, dir, routeAddrs string, extra ...string) *kvsProc {
	n := startProcess(t, append([]string{"kvs", "--addr", "127.0.0.1:0", "--resp-addr", "127.0.0.1:0", "--route", routeAddrs,
		"--data-dir", dir, "--log-level", "warn"}, extra...)...)
	lines := waitLines(t, n, "redis")
	var id uint64
	_, err := fmt.Sscanf(lines[0], "trellis %s kvs: node %d", new(string), &id)
	require.NoError(t, err, lines[0])
	n.id = id
	return &kvsProc{node: n, native: field(t, lines, "native"), redis: field(t, lines, "redis")}
}

// waitServing waits until the node at p reports itself an active member
// (it has caught up) by an epoch at least min.
func waitServing(t *testing.T, p *kvsProc, min uint64) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		info := respInfo(c, p.redis)
		epoch, _ := strconv.ParseUint(info["epoch"], 10, 64)
		assert.Equal(c, "active", info["member_state"], "node %d", p.id)
		assert.GreaterOrEqual(c, epoch, min, "node %d", p.id)
	}, 30*time.Second, 20*time.Millisecond, "node %d not serving", p.id)
}

// respInfo returns the fields of a node's INFO reply.
func respInfo(t require.TestingT, addr string) map[string]string {
	r := respCall(t, addr, "INFO")
	out := map[string]string{}
	for _, l := range strings.Split(string(r.Str), "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			out[k] = v
		}
	}
	return out
}

// waitActive waits until the routing state has want active members.
func waitActive(t *testing.T, routeAddrs []string, want int) route.State {
	t.Helper()
	rc := route.NewClient(routeAddrs, client.Options{Conns: 1})
	defer rc.Close()
	var st route.State
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		got, err := rc.State(ctx)
		require.NoError(c, err)
		active := 0
		for _, m := range got.Members {
			if m.State == route.Active {
				active++
			}
		}
		require.Equal(c, want, active, "active storage nodes in %+v", got.Members)
		st = got
	}, 30*time.Second, 50*time.Millisecond)
	return st
}

// Three storage nodes and a routing node as separate processes; a client
// writes through one node's Redis port (quorum, the default) while another
// node is killed with SIGKILL. Every acknowledged write is then read back
// through a survivor, and through the killed node once it is back.
func TestClusterSurvivesKill(t *testing.T) {
	base := t.TempDir()
	r := startRoute(t, base+"/route", "")
	var nodes []*kvsProc
	for i := range 3 {
		nodes = append(nodes, startKVS(t, fmt.Sprintf("%s/kvs%d", base, i), r.native))
	}
	st := waitActive(t, []string{r.native}, 3)
	for _, n := range nodes {
		waitServing(t, n, st.Epoch)
	}

	writer, victim, reader := nodes[0], nodes[2], nodes[1]
	acked := map[string]string{}
	for i := range 400 {
		if i == 150 {
			require.NoError(t, victim.cmd.Process.Signal(syscall.SIGKILL))
			<-victim.exited
		}
		k, v := fmt.Sprintf("key-%d", i), fmt.Sprintf("value-%d", i)
		if respDo(t, writer.redis, "SET", k, v) == "+OK" {
			acked[k] = v
		}
	}
	require.GreaterOrEqual(t, len(acked), 390, "with one of three replicas down, quorum writes go on")
	check := func(p *kvsProc) {
		t.Helper()
		for k, v := range acked {
			require.Equal(t, "$"+fmt.Sprint(len(v)), respDo(t, p.redis, "GET", k), "key %s via node %d", k, p.id)
		}
	}
	check(reader)

	again := startKVS(t, base+"/kvs2", r.native)
	require.Equal(t, victim.id, again.id, "same data directory, same node")
	// It comes back through joining (it may have missed writes) and serves
	// once it has caught up.
	waitServing(t, again, st.Epoch+2)
	check(again)
}

// A three-node routing group keeps answering and accepting changes when
// its leader is killed.
func TestRoutingLeaderFailover(t *testing.T) {
	base := t.TempDir()
	r1 := startRoute(t, base+"/r1", "")
	r2 := startRoute(t, base+"/r2", r1.native)
	r3 := startRoute(t, base+"/r3", r1.native)
	addrs := []string{r1.native, r2.native, r3.native}
	rc := route.NewClient(addrs, client.Options{Conns: 1})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := rc.Propose(ctx, route.Command{Op: route.OpSetRF, Key: "hot", RF: 2})
	require.NoError(t, err)
	require.Equal(t, 2, st.RF([]byte("hot")))

	// r1 formed the group and leads it; kill it.
	require.NoError(t, r1.cmd.Process.Signal(syscall.SIGKILL))
	<-r1.exited
	st, err = rc.Propose(ctx, route.Command{Op: route.OpSetRF, Key: "hot", RF: 3})
	require.NoError(t, err, "a new leader takes proposals")
	require.Equal(t, 3, st.RF([]byte("hot")))
	// Lookups keep working on the survivors; a follower answers from its own
	// copy, which applies the change a moment after the leader commits it.
	for _, a := range addrs[1:] {
		one := route.NewClient([]string{a}, client.Options{Conns: 1})
		var s route.State
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var err error
			s, err = one.State(ctx)
			require.NoError(c, err, "lookups keep working at %s", a)
			require.GreaterOrEqual(c, s.Epoch, st.Epoch)
		}, 20*time.Second, 10*time.Millisecond)
		require.Equal(t, 3, s.RF([]byte("hot")))
		one.Close()
	}
}

// A node joins a running cluster and another leaves it, as separate
// processes: every key stays readable through every node, the leaving
// node's process exits by itself once it has handed its keys off, and in
// the end each key has exactly three copies (the old owners dropped theirs).
func TestClusterJoinAndLeave(t *testing.T) {
	base := t.TempDir()
	r := startRoute(t, base+"/route", "")
	fast := []string{"--ae-every", "200ms"} // hand-offs within a second, not ten
	var nodes []*kvsProc
	for i := range 3 {
		nodes = append(nodes, startKVS(t, fmt.Sprintf("%s/kvs%d", base, i), r.native, fast...))
	}
	st := waitActive(t, []string{r.native}, 3)
	for _, n := range nodes {
		waitServing(t, n, st.Epoch)
	}
	const keys = 300
	for i := range keys {
		require.Equal(t, "+OK", respDo(t, nodes[i%3].redis, "SET", fmt.Sprintf("key-%d", i), fmt.Sprintf("value-%d", i)))
	}
	checkAll := func(via []*kvsProc) {
		t.Helper()
		for i := range keys {
			v := fmt.Sprintf("value-%d", i)
			p := via[i%len(via)]
			require.Equal(t, "$"+fmt.Sprint(len(v)), respDo(t, p.redis, "GET", fmt.Sprintf("key-%d", i)), "key-%d via node %d", i, p.id)
		}
	}
	// copies waits until the nodes hold want copies of the keys in all.
	copies := func(via []*kvsProc, want int) {
		t.Helper()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			total := 0
			for _, p := range via {
				total += int(respCall(c, p.redis, "DBSIZE").Int)
			}
			require.Equal(c, want, total, "copies of the keys")
		}, 30*time.Second, 50*time.Millisecond)
	}
	copies(nodes, 3*keys)

	joiner := startKVS(t, base+"/kvs3", r.native, fast...)
	st = waitActive(t, []string{r.native}, 4)
	waitServing(t, joiner, st.Epoch)
	nodes = append(nodes, joiner)
	checkAll(nodes)
	copies(nodes, 3*keys) // the old owners dropped what the joiner took

	leaver := nodes[0]
	var out, errOut strings.Builder
	code := run(context.Background(), []string{"cluster", "leave", fmt.Sprint(leaver.id), "--route", r.native}, strings.NewReader(""), &out, &errOut)
	require.Zero(t, code, errOut.String())
	require.Contains(t, out.String(), "is leaving")
	select {
	case <-leaver.exited:
		require.True(t, leaver.cmd.ProcessState.Success(), "the leaving node exits cleanly: %v\n%s", leaver.cmd.ProcessState, leaver.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("the leaving node did not exit; stderr:\n%s", leaver.stderr.String())
	}
	st = waitActive(t, []string{r.native}, 3)
	require.Len(t, st.Members, 3)
	checkAll(nodes[1:])
	copies(nodes[1:], 3*keys)

	out.Reset()
	code = run(context.Background(), []string{"cluster", "status", "--route", r.native}, strings.NewReader(""), &out, &errOut)
	require.Zero(t, code, errOut.String())
	require.Contains(t, out.String(), "3 storage nodes")
	require.NotContains(t, out.String(), fmt.Sprint(leaver.id))
}

// A storage node killed for good is marked down by the routing tier, and
// `trellis cluster remove` forgets it; a running node cannot be removed
// that way.
func TestClusterRemoveDownNode(t *testing.T) {
	base := t.TempDir()
	rp := startProcess(t, "route", "--addr", "127.0.0.1:0", "--raft-addr", "127.0.0.1:0", "--data-dir", base+"/route",
		"--log-level", "warn", "--down-after", "500ms")
	lines := waitLines(t, rp, "raft")
	routeAddr := field(t, lines, "native")
	a := startKVS(t, base+"/a", routeAddr)
	b := startKVS(t, base+"/b", routeAddr)
	waitActive(t, []string{routeAddr}, 2)

	out, errOut, code := trellisCmd(t, "cluster", "remove", fmt.Sprint(a.id), "--route", routeAddr)
	assert.Equal(t, 1, code, "removing a running node: %s", out)
	assert.Contains(t, errOut, "active")

	require.NoError(t, b.cmd.Process.Signal(syscall.SIGKILL))
	<-b.exited
	rc := route.NewClient([]string{routeAddr}, client.Options{Conns: 1})
	defer rc.Close()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := rc.State(ctx)
		require.NoError(c, err)
		m, ok := st.Member(b.id)
		require.True(c, ok)
		require.Equal(c, route.Down, m.State)
	}, 30*time.Second, 50*time.Millisecond, "the killed node marked down")

	out, errOut, code = trellisCmd(t, "cluster", "remove", fmt.Sprint(b.id), "--route", routeAddr)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, fmt.Sprintf("node %d removed", b.id))
	out, _, code = trellisCmd(t, "cluster", "status", "--route", routeAddr)
	require.Equal(t, 0, code)
	assert.NotContains(t, out, fmt.Sprint(b.id))
	assert.Contains(t, out, fmt.Sprint(a.id))
}
