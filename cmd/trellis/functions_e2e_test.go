package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// trellisCmd runs the trellis binary with args and returns stdout, stderr
// and the exit status.
func trellisCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	requireBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, trellisBin, args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errorsAs(err, &ee) {
		t.Fatalf("trellis %q: %v", args, err)
	}
	return out.String(), errb.String(), cmd.ProcessState.ExitCode()
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// TestFunctionsQuickStart is the README's quick start of functions, as a
// newcomer runs it: build the example WebAssembly functions, register them,
// register the chain DAG, call it, get 16.
func TestFunctionsQuickStart(t *testing.T) {
	n := startNode(t, "--addr", "127.0.0.1:0", "--resp-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	defer n.stop(t)
	dir := t.TempDir()
	// A race-enabled node compiles a module in seconds, not milliseconds.
	const timeout = "--timeout=2m"
	ok := func(want string, args ...string) string {
		t.Helper()
		out, errOut, code := trellisCmd(t, append(args, timeout)...)
		require.Equal(t, 0, code, "trellis %q: %s", args, errOut)
		assert.Contains(t, out, want, "trellis %q", args)
		return out
	}
	addr := "--addr=" + n.native
	repo := filepath.Join("..", "..")
	for _, f := range []string{"increment", "square"} {
		wasm := filepath.Join(dir, f+".wasm")
		ok("built", "fn", "build", filepath.Join(repo, "examples", "functions", f), "-o", wasm)
		ok("registered "+f, "fn", "register", f, wasm, addr)
	}
	ok("registered chain", "dag", "register", "chain", "--fn", "increment", "--fn", "square", "--edge", "increment:square", addr)
	assert.Equal(t, "16\n", ok("16", "dag", "call", "chain", "--arg", "3", addr))
	// Stored under a result key, acknowledged once on disk; read back.
	ok("stored under r", "dag", "call", "chain", "--arg", "4", "--result-key", "r", "--ack", "durable", "--consistency", "repeatable-read", addr)
	got, _ := cli(t, n.native, "", "get", "r")
	assert.Contains(t, got, "25")
	assert.Equal(t, "144\n", ok("144", "fn", "call", "native/square", "--arg", "12", addr))
	assert.Equal(t, "increment\nsquare\nnative/increment\nnative/sleep\nnative/square\n", ok("square", "fn", "list", addr))
	assert.Equal(t, "chain\n", ok("chain", "dag", "list", addr))

	// Typed errors, exit status 1.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dag", "call", "nosuch", addr}, "not found: DAG nosuch"},
		{[]string{"dag", "register", "loop", "--fn", "increment", "--fn", "square", "--edge", "increment:square", "--edge", "square:increment", addr}, "cycle"},
		{[]string{"dag", "register", "ghost", "--fn", "increment", "--fn", "ghost", "--edge", "increment:ghost", addr}, "function ghost does not exist"},
		{[]string{"dag", "call", "chain", "--arg", "three", addr}, "function failed"},
		{[]string{"fn", "register", "bad", filepath.Join(repo, "README.md"), addr}, "invalid WebAssembly module"},
	} {
		_, errOut, code := trellisCmd(t, c.args...)
		assert.Equal(t, 1, code, "trellis %q", c.args)
		assert.Contains(t, errOut, c.want, "trellis %q", c.args)
	}

	// The reserved namespace is closed to ordinary writes.
	out, _ := cli(t, n.native, "", "set", "_trellis/dag/chain", "x")
	assert.True(t, strings.Contains(out, "unauthorized"), out)

	ok("deleted chain", "dag", "delete", "chain", addr)
	assert.Empty(t, ok("", "dag", "list", addr))
}

// startRole runs `trellis coordinator|executor args...` and returns the
// process and its native address.
func startRole(t *testing.T, role string, args ...string) (*node, string) {
	t.Helper()
	n := startProcess(t, append([]string{role, "--addr", "127.0.0.1:0"}, args...)...)
	lines := waitLines(t, n, "native")
	require.Contains(t, lines[0], role)
	return n, field(t, lines, "native")
}

// TestExecutorKilledMidDAG runs the function roles as processes of their
// own: a storage node (`trellis up`), a coordinator, an executor. The
// executor is SIGKILLed while it runs the first function of a DAG call; a
// second executor starts; the call completes on it within its deadline.
func TestExecutorKilledMidDAG(t *testing.T) {
	const token = "e2e-token"
	n := startNode(t, "--addr", "127.0.0.1:0", "--resp-addr", "127.0.0.1:0", "--system-token", token)
	defer n.stop(t)
	coord, coordAddr := startRole(t, "coordinator", "--kvs", n.native, "--system-token", token, "--log-level", "warn")
	defer coord.stop(t)
	execArgs := []string{"--kvs", n.native, "--coordinator", coordAddr}
	victim, _ := startRole(t, "executor", execArgs...)
	addr := "--addr=" + coordAddr

	// The coordinator knows the native functions once the executor reported.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		out, _, code := trellisCmd(t, "fn", "list", addr)
		assert.Equal(c, 0, code)
		assert.Contains(c, out, "native/sleep")
	}, 30*time.Second, 50*time.Millisecond)
	out, errOut, code := trellisCmd(t, "dag", "register", "slow", "--fn", "native/sleep", "--fn", "native/square",
		"--edge", "native/sleep:native/square", addr)
	require.Equal(t, 0, code, "%s%s", out, errOut)

	type result struct {
		out, err string
		code     int
		took     time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		out, errOut, code := trellisCmd(t, "dag", "call", "slow", "--arg", "1500", "--timeout", "60s", addr)
		done <- result{out, errOut, code, time.Since(start)}
	}()
	require.Eventually(t, func() bool { return strings.Contains(victim.stderr.String(), "sleeping 1500 ms") },
		30*time.Second, 5*time.Millisecond, "the executor never ran the first function")
	require.NoError(t, victim.cmd.Process.Kill())
	<-victim.exited
	survivor, _ := startRole(t, "executor", execArgs...)
	defer survivor.stop(t)

	r := <-done
	require.Equal(t, 0, r.code, "dag call: %s%s", r.out, r.err)
	assert.Equal(t, "2250000\n", r.out)
	assert.Contains(t, survivor.stderr.String(), "sleeping 1500 ms", "the re-run went to the new executor")
	t.Logf("the call took %v, the killed executor's run included", r.took)

	// A coordinator without the system token cannot write definitions.
	plain, plainAddr := startRole(t, "coordinator", "--kvs", n.native, "--log-level", "warn")
	defer plain.stop(t)
	_, errOut, code = trellisCmd(t, "dag", "delete", "slow", "--addr="+plainAddr)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "unauthorized")
}

// TestFunctionsOnUpCluster: `trellis up --storage-nodes 3` runs a
// coordinator and an executor that keep their definitions and read their
// keys in the cluster; a key a function read is written through another
// node, and the function sees the new value (the executor's cache watches
// the key at every node).
func TestFunctionsOnUpCluster(t *testing.T) {
	n := startProcess(t, "up", "--storage-nodes", "3", "--addr", "127.0.0.1:0", "--resp-addr", "127.0.0.1:0", "--log-level", "warn")
	lines := waitLines(t, n, "try:")
	var natives, redis []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) == 6 && f[0] == "node" {
			natives, redis = append(natives, f[3]), append(redis, f[5])
		}
	}
	require.Len(t, natives, 3, "banner %q", lines)
	addr := "--addr=" + natives[0]
	out, errOut, code := trellisCmd(t, "dag", "register", "nchain", "--fn", "native/increment", "--fn", "native/square",
		"--edge", "native/increment:native/square", addr)
	require.Equal(t, 0, code, "%s%s", out, errOut)
	out, errOut, code = trellisCmd(t, "dag", "call", "nchain", "--arg", "3", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "16\n", out)
	out, errOut, code = trellisCmd(t, "dag", "call", "nchain", "--arg", "4", "--result-key", "r", "--ack", "quorum", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "stored under r\n", out)
	// A quorum write is at a majority of r's replicas when the call returns
	// (the executor's cluster client fans it out to two); node 3 may be
	// the third replica, which gets it by gossip within a period.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, "25", string(respCall(t, redis[2], "GET", "r").Str))
	}, 5*time.Second, 10*time.Millisecond)

	assert.Equal(t, "OK", string(respCall(t, redis[0], "SET", "k", "5").Str))
	out, errOut, code = trellisCmd(t, "fn", "call", "native/square", "--arg-key", "k", addr)
	require.Equal(t, 0, code, errOut)
	assert.Equal(t, "25\n", out)
	for i, v := range []string{"6", "7"} {
		assert.Equal(t, "OK", string(respCall(t, redis[i+1], "SET", "k", v).Str))
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			out, _, _ := trellisCmd(t, "fn", "call", "native/square", "--arg-key", "k", addr)
			assert.Equal(c, fmt.Sprintf("%d\n", (i+6)*(i+6)), out)
		}, 10*time.Second, 20*time.Millisecond)
	}
	// The reserved namespace is closed on every node.
	for _, r := range redis {
		assert.Contains(t, string(respCall(t, r, "SET", "_trellis/dag/nchain", "x").Str), "NOPERM")
	}
	n.stop(t)
}
