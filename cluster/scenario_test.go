package cluster_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

var updateScenarios = flag.Bool("update", false, "rewrite the expected output of testdata/scenarios")

// TestScenarios runs the scripts in testdata/scenarios. A script is a
// sequence of steps, each a command line, a line "----", and the output
// the command must print, ended by a blank line:
//
//	put 1 k v
//	----
//	ok
//
// Lines starting with # between steps are comments. The commands (see
// scenario.run) drive an in-process cluster on the in-memory network, one
// step at a time: each step waits for every call it started, so a script's
// output is deterministic. Run with -update to rewrite the outputs, then
// review the diff.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/scenarios/*.txt")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) { runScenarioFile(t, f) })
	}
}

type step struct {
	line    int
	cmd     string
	want    string
	comment []string // comment lines before the step
}

func parseScript(t *testing.T, path string) ([]step, []string) {
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var steps []step
	var comments []string
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			continue
		case strings.HasPrefix(line, "#"):
			comments = append(comments, line)
			continue
		}
		s := step{line: n, cmd: line, comment: comments}
		comments = nil
		require.True(t, sc.Scan(), "%s:%d: command without ----", path, n)
		n++
		require.Equal(t, "----", sc.Text(), "%s:%d: want ---- after the command", path, n)
		var out []string
		for sc.Scan() {
			n++
			if sc.Text() == "" {
				break
			}
			out = append(out, sc.Text())
		}
		s.want = strings.Join(out, "\n")
		steps = append(steps, s)
	}
	require.NoError(t, sc.Err())
	return steps, comments
}

func runScenarioFile(t *testing.T, path string) {
	steps, trailing := parseScript(t, path)
	sc := &scenario{t: t}
	defer sc.close()
	var out strings.Builder
	for _, s := range steps {
		got := sc.run(s.cmd)
		if *updateScenarios {
			for _, c := range s.comment {
				out.WriteString(c + "\n")
			}
			fmt.Fprintf(&out, "%s\n----\n%s\n\n", s.cmd, got)
			continue
		}
		require.Equal(t, s.want, got, "%s:%d: %s", path, s.line, s.cmd)
	}
	if *updateScenarios {
		for _, c := range trailing {
			out.WriteString(c + "\n")
		}
		require.NoError(t, os.WriteFile(path, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644))
	}
}

// scenario is a test cluster driven by script commands. Its routing state
// lives in the scenario (the routing tier's part): membership commands
// apply to it and tell every node, as the nodes' polling would.
type scenario struct {
	t  *testing.T
	tc *testCluster

	mu        sync.Mutex // guards the state the nodes' router reads, and routerOff
	state     route.State
	routerOff bool
}

// State is the nodes' router: they fetch the routing state here when a peer
// shows them a newer epoch.
func (sc *scenario) State(context.Context) (route.State, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.routerOff {
		return route.State{}, errors.New("routing tier unreachable")
	}
	return sc.state.Clone(), nil
}

func (sc *scenario) close() {
	if sc.tc != nil {
		sc.tc.close()
	}
}

func (sc *scenario) node(arg string) *testNode {
	id, err := strconv.ParseUint(arg, 10, 64)
	require.NoError(sc.t, err, "node id %q", arg)
	for _, tn := range sc.tc.nodes {
		if tn.id == id {
			return tn
		}
	}
	sc.t.Fatalf("no node %d", id)
	return nil
}

// run runs one command and returns what it prints.
func (sc *scenario) run(line string) string {
	f := strings.Fields(line)
	cmd, args := f[0], f[1:]
	if sc.tc == nil && cmd != "cluster" {
		sc.t.Fatalf("a script starts with: cluster nodes=N rf=R")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer func() {
		if sc.tc != nil {
			sc.tc.settle()
		}
	}()
	switch cmd {
	case "cluster": // cluster nodes=N rf=R: N active nodes
		opts := options(args)
		n, _ := strconv.Atoi(opts["nodes"])
		rf, _ := strconv.Atoi(opts["rf"])
		sc.tc = newTestCluster(sc.t, 0, rf, 1)
		sc.state = route.State{Epoch: 1, DefaultRF: rf}
		for i := range n {
			id := uint64(i + 1)
			sc.state.Members = append(sc.state.Members, route.Member{ID: id, Addr: fmt.Sprintf("node%d", id), State: route.Active})
		}
		for _, m := range sc.state.Members {
			sc.addNode(m.ID)
		}
		return sc.epoch()
	case "put": // put NODE KEY VALUE [ack=local|quorum]: a client's SET sent to NODE
		ack := wire.AckQuorum
		if options(args[3:])["ack"] == "local" {
			ack = wire.AckLocal
		}
		return describe(sc.call(ctx, sc.node(args[0]), set(args[1], args[2], ack)))
	case "get": // get NODE KEY: a client's GET sent to NODE
		return describe(sc.call(ctx, sc.node(args[0]), &wire.Request{ID: 1, Op: wire.OpGet, Key: []byte(args[1])}))
	case "fill": // fill PREFIX COUNT VALUE: PREFIX0... set to VALUE, each through its first replica
		n, _ := strconv.Atoi(args[1])
		failed := 0
		for i := range n {
			k := args[0] + strconv.Itoa(i)
			if sc.call(ctx, sc.tc.replicas(k)[0], set(k, args[2], wire.AckQuorum)).Err() != nil {
				failed++
			}
		}
		return fmt.Sprintf("%d written, %d failed", n-failed, failed)
	case "check": // check PREFIX COUNT VALUE: every replica holds VALUE; nobody else holds a copy
		return sc.check(args[0], args[1], args[2])
	case "replicas": // replicas KEY: the key's responsible nodes
		var ids []string
		for _, tn := range sc.tc.replicas(args[0]) {
			ids = append(ids, strconv.FormatUint(tn.id, 10))
		}
		return strings.Join(ids, " ")
	case "holders": // holders KEY: the nodes whose store holds a copy, and its value
		var out []string
		for _, tn := range sc.tc.nodes {
			if v, ok := value(sc.t, tn.store, args[0]); ok {
				out = append(out, fmt.Sprintf("%d=%s", tn.id, v))
			}
		}
		if len(out) == 0 {
			return "none"
		}
		return strings.Join(out, " ")
	case "keys": // keys: how many keys each node holds
		var out []string
		for _, tn := range sc.tc.nodes {
			out = append(out, fmt.Sprintf("%d:%d", tn.id, tn.store.Len()))
		}
		return strings.Join(out, " ")
	// Membership commands change the routing state and tell every node, or
	// with tell=1,2 only those (the others learn it when a peer shows them
	// the newer epoch, or never).
	case "join": // join NODE: a node registers (joining); a new one starts
		id, _ := strconv.ParseUint(args[0], 10, 64)
		if !slices.ContainsFunc(sc.tc.nodes, func(tn *testNode) bool { return tn.id == id }) {
			sc.addNode(id)
		}
		return sc.apply(route.Command{Op: route.OpRegister, Member: route.Member{ID: id, Addr: fmt.Sprintf("node%d", id)}}, args[1:])
	case "activate":
		return sc.apply(route.Command{Op: route.OpActivate, ID: sc.node(args[0]).id}, args[1:])
	case "leave":
		return sc.apply(route.Command{Op: route.OpLeave, ID: sc.node(args[0]).id}, args[1:])
	case "remove":
		return sc.apply(route.Command{Op: route.OpRemove, ID: sc.node(args[0]).id}, args[1:])
	case "down":
		return sc.apply(route.Command{Op: route.OpMarkDown, ID: sc.node(args[0]).id}, args[1:])
	case "epochs": // epochs: the epoch each node routes by
		var out []string
		for _, tn := range sc.tc.nodes {
			out = append(out, fmt.Sprintf("%d:%d", tn.id, tn.node.Epoch()))
		}
		return strings.Join(out, " ")
	case "ae": // ae [NODE...]: one anti-entropy round on the nodes (default all)
		var s cluster.AESummary
		for _, tn := range sc.nodesOf(args) {
			r := tn.node.AntiEntropyOnce(ctx)
			sc.tc.settle()
			s.Fetched += r.Fetched
			s.Pushed += r.Pushed
			s.Errors += r.Errors
		}
		return fmt.Sprintf("fetched %d, pushed %d, errors %d", s.Fetched, s.Pushed, s.Errors)
	case "gossip": // gossip: one gossip round on every node
		sent := 0
		for _, tn := range sc.tc.nodes {
			sent += tn.node.GossipOnce(ctx)
			sc.tc.settle()
		}
		return fmt.Sprintf("sent %d", sent)
	case "handoff": // handoff [NODE...]: one hand-off pass on the nodes (default all)
		var out []string
		for _, tn := range sc.nodesOf(args) {
			s := tn.node.HandoffOnce(ctx)
			sc.tc.settle() // a refusal may have started a refresh elsewhere
			if s.Orphans > 0 {
				out = append(out, fmt.Sprintf("node %d: %d orphans, %d dropped, %d kept, %d errors",
					tn.id, s.Orphans, s.Dropped, s.Kept, s.Errors))
			}
		}
		if len(out) == 0 {
			return "nothing to hand off"
		}
		return strings.Join(out, "\n")
	case "partition": // partition 1 2 | 3: nodes in different groups cannot talk
		var groups [][]string
		var g []string
		for _, a := range args {
			if a == "|" {
				groups, g = append(groups, g), nil
				continue
			}
			g = append(g, sc.node(a).addr)
		}
		sc.tc.net.Partition(append(groups, g)...)
		return "ok"
	case "router": // router off|on: whether nodes can fetch the routing state
		sc.mu.Lock()
		sc.routerOff = args[0] == "off"
		sc.mu.Unlock()
		return "ok"
	case "heal":
		sc.tc.net.Heal()
		return "ok"
	case "stop": // stop NODE: unreachable (a crash that keeps its data)
		sc.tc.net.Detach(sc.node(args[0]).addr)
		return "ok"
	case "start": // start NODE: reachable again
		tn := sc.node(args[0])
		sc.tc.net.Attach(tn.addr, tn.node)
		return "ok"
	case "wipe": // wipe NODE: restarted with an empty store
		tn := sc.node(args[0])
		tn.node.Close()
		sc.tc.start(tn)
		sc.mu.Lock()
		require.NoError(sc.t, tn.node.SetState(sc.state))
		sc.mu.Unlock()
		return "ok"
	}
	sc.t.Fatalf("unknown command %q", cmd)
	return ""
}

// addNode starts node id, knowing the current state.
func (sc *scenario) addNode(id uint64) {
	tn := &testNode{id: id, addr: fmt.Sprintf("node%d", id)}
	sc.tc.nodes = append(sc.tc.nodes, tn)
	sc.tc.router = sc
	sc.tc.state = sc.state
	sc.tc.start(tn)
}

// apply applies a membership command to the routing state and tells the
// nodes a tell=ID,ID option names (default every node).
func (sc *scenario) apply(c route.Command, args []string) string {
	sc.mu.Lock()
	next, err := route.Apply(sc.state, c)
	if err != nil {
		sc.mu.Unlock()
		return "error: " + err.Error()
	}
	sc.state = next
	sc.tc.state = next
	sc.mu.Unlock()
	tell := options(args)["tell"]
	for _, tn := range sc.tc.nodes {
		if tell == "" || slices.Contains(strings.Split(tell, ","), strconv.FormatUint(tn.id, 10)) {
			require.NoError(sc.t, tn.node.SetState(next))
		}
	}
	return sc.epoch()
}

func (sc *scenario) epoch() string {
	var ms []string
	for _, m := range sc.state.Members {
		ms = append(ms, fmt.Sprintf("%d:%s", m.ID, m.State))
	}
	return fmt.Sprintf("epoch %d: %s", sc.state.Epoch, strings.Join(ms, " "))
}

func (sc *scenario) nodesOf(args []string) []*testNode {
	if len(args) == 0 {
		return sc.tc.nodes
	}
	var out []*testNode
	for _, a := range args {
		out = append(out, sc.node(a))
	}
	return out
}

func (sc *scenario) call(ctx context.Context, tn *testNode, req *wire.Request) *wire.Response {
	resp, err := sc.tc.net.Endpoint("client").Call(ctx, tn.addr, req)
	if err != nil {
		return &wire.Response{Code: wire.CodeUnavailable, Msg: err.Error()}
	}
	return resp
}

// check reports whether every replica of PREFIX0..PREFIXn-1 holds value and
// no other node holds a copy.
func (sc *scenario) check(prefix, count, want string) string {
	n, _ := strconv.Atoi(count)
	var problems []string
	for i := range n {
		k := prefix + strconv.Itoa(i)
		rs := sc.tc.replicas(k)
		for _, tn := range sc.tc.nodes {
			v, ok := value(sc.t, tn.store, k)
			switch {
			case slices.Contains(rs, tn) && (!ok || v != want):
				problems = append(problems, fmt.Sprintf("%s: replica %d holds %q", k, tn.id, v))
			case !slices.Contains(rs, tn) && ok:
				problems = append(problems, fmt.Sprintf("%s: node %d holds a stray copy", k, tn.id))
			}
		}
	}
	if len(problems) == 0 {
		return fmt.Sprintf("%d keys on their replicas, no stray copies", n)
	}
	if len(problems) > 6 {
		problems = append(problems[:6], fmt.Sprintf("... %d problems", len(problems)))
	}
	return strings.Join(problems, "\n")
}

// options parses key=value arguments.
func options(args []string) map[string]string {
	m := map[string]string{}
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			m[k] = v
		}
	}
	return m
}

// describe prints a response: ok, a GET's value, or its error.
func describe(r *wire.Response) string {
	if err := r.Err(); err != nil {
		var we *wire.Error
		if errors.As(err, &we) && we.Code == wire.CodeWrongOwner {
			return fmt.Sprintf("wrong owner (epoch %d)", we.Epoch)
		}
		if errors.Is(err, wire.ErrNotFound) {
			return "not found"
		}
		return "error: " + err.Error()
	}
	if b, err := r.Bytes(); err == nil && len(b) > 0 {
		if _, _, v, err := lattice.ParseLWW(b); err == nil {
			return string(v)
		}
	}
	return "ok"
}
