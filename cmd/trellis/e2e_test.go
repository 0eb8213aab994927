package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests run the real binary that TestMain built: `trellis up` in a
// child process on ports the OS picks, and `trellis cli` against it.

// lockedBuffer is a bytes.Buffer safe for the writer goroutine of exec.Cmd
// and the test reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// node is a running `trellis up` process.
type node struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	lines  chan string   // stdout, line by line; closed at EOF
	exited chan struct{} // closed once the process has been waited for

	id                  uint64
	native, redis, http string
	banner              []string
}

func requireBinary(t *testing.T) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building trellis: %v", buildErr)
	}
}

// startProcess starts `trellis args...`; the process is killed when the test
// ends if it is still running.
func startProcess(t *testing.T, args ...string) *node {
	t.Helper()
	return startProcessIn(t, "", args...)
}

// startProcessIn is startProcess with the working directory dir.
func startProcessIn(t *testing.T, dir string, args ...string) *node {
	t.Helper()
	requireBinary(t)
	n := &node{
		cmd:    exec.Command(trellisBin, args...),
		stderr: &lockedBuffer{},
		lines:  make(chan string, 64),
		exited: make(chan struct{}),
	}
	n.cmd.Dir = dir
	n.cmd.Env = cleanEnv()
	n.cmd.Stderr = n.stderr
	stdout, err := n.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, n.cmd.Start())
	go func() {
		defer close(n.exited)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			n.lines <- sc.Text()
		}
		close(n.lines)
		_, _ = io.Copy(io.Discard, stdout)
		_ = n.cmd.Wait() // after every read from the pipe, as exec requires
	}()
	t.Cleanup(func() {
		select {
		case <-n.exited:
		default:
			_ = n.cmd.Process.Kill()
			<-n.exited
		}
		if t.Failed() {
			t.Logf("trellis %s stderr:\n%s", strings.Join(args, " "), n.stderr.String())
		}
	})
	return n
}

// cleanEnv is the test process's environment without TRELLIS_* variables.
// A binary built with the race detector exits with status 66 if it saw a
// race; it is told not to sleep for a second before exiting.
func cleanEnv() []string {
	var env []string
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, envPrefix):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=") + " " + gorace
		default:
			env = append(env, kv)
		}
	}
	return append(env, "GORACE="+gorace)
}

var bannerFirst = regexp.MustCompile(`^trellis (\S+) up: node ([1-9][0-9]*)$`)

// startNode runs `trellis up args...` and waits for its banner.
func startNode(t *testing.T, args ...string) *node {
	t.Helper()
	return startNodeIn(t, "", args...)
}

// startNodeIn is startNode with the working directory dir.
func startNodeIn(t *testing.T, dir string, args ...string) *node {
	t.Helper()
	n := startProcessIn(t, dir, append([]string{"up"}, args...)...)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case line, ok := <-n.lines:
			if !ok {
				<-n.exited
				t.Fatalf("trellis up exited (%v) before printing its banner; stderr:\n%s", n.cmd.ProcessState, n.stderr.String())
			}
			n.banner = append(n.banner, line)
			switch {
			case len(n.banner) == 1:
				m := bannerFirst.FindStringSubmatch(line)
				require.NotNil(t, m, "first banner line %q", line)
				assert.Equal(t, e2eVersion, m[1], "the version set with -ldflags")
				id, err := strconv.ParseUint(m[2], 10, 64)
				require.NoError(t, err)
				n.id = id
			case strings.HasPrefix(line, "  native  "):
				n.native = strings.TrimPrefix(line, "  native  ")
			case strings.HasPrefix(line, "  redis   "):
				n.redis = strings.TrimPrefix(line, "  redis   ")
			case strings.HasPrefix(line, "  http    "):
				n.http = strings.TrimPrefix(line, "  http    ")
			case strings.HasPrefix(line, "try: "):
				return n
			default:
				t.Fatalf("unexpected banner line %q", line)
			}
		case <-deadline:
			t.Fatalf("no banner from trellis up within 30s; got %q; stderr:\n%s", n.banner, n.stderr.String())
		}
	}
}

// stop sends SIGTERM and requires a clean exit (status 0) within 5 s.
func (n *node) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, n.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("trellis up still running 5s after SIGTERM; stderr:\n%s", n.stderr.String())
	}
	require.Equal(t, 0, n.cmd.ProcessState.ExitCode(), "exit status after SIGTERM; stderr:\n%s", n.stderr.String())
}

// cli runs `trellis cli --addr addr args...` with stdin and returns its
// stdout and exit status.
func cli(t *testing.T, addr, stdin string, args ...string) (string, int) {
	t.Helper()
	requireBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, trellisBin, append([]string{"cli", "--addr", addr}, args...)...)
	cmd.Env = cleanEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("trellis cli %q: %v", args, err)
	}
	if errb.Len() > 0 {
		t.Logf("trellis cli %q stderr: %s", args, errb.String())
	}
	return out.String(), cmd.ProcessState.ExitCode()
}

func TestUpEndToEnd(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	n := startNode(t, "--addr", "127.0.0.1:0", "--resp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--data-dir", dataDir, "--shards", "4")
	require.NotEmpty(t, n.native)
	require.NotEmpty(t, n.redis)
	require.NotEmpty(t, n.http)
	_, redisPort, err := net.SplitHostPort(n.redis)
	require.NoError(t, err)
	assert.Equal(t, fmt.Sprintf("try: redis-cli -p %s set hello world   or   trellis cli --addr %s", redisPort, n.native),
		n.banner[len(n.banner)-1])

	out, code := cli(t, n.native, "", "ping")
	require.Equal(t, "PONG\n", out, "cli reaches the node")
	require.Equal(t, 0, code)

	t.Run("cli one-shot", func(t *testing.T) {
		for _, step := range []struct {
			args []string
			want string
			code int
		}{
			{[]string{"set", "k", "v"}, "OK\n", 0},
			{[]string{"get", "k"}, "\"v\"\n", 0},
			{[]string{"SET", "spaced", "hello world\n"}, "OK\n", 0},
			{[]string{"GET", "spaced"}, "\"hello world\\n\"\n", 0},
			{[]string{"get", "missing"}, "(nil)\n", 0},
			{[]string{"incr", "c"}, "(integer) 1\n", 0},
			{[]string{"incrby", "c", "10"}, "(integer) 11\n", 0},
			{[]string{"decrby", "c", "-4"}, "(integer) 15\n", 0},
			{[]string{"decr", "c"}, "(integer) 14\n", 0},
			{[]string{"get", "c"}, "(integer) 14\n", 0},
			{[]string{"sadd", "s", "a", "b"}, "(integer) 2\n", 0},
			{[]string{"sadd", "s", "b", "c"}, "(integer) 1\n", 0},
			{[]string{"smembers", "s"}, "1) \"a\"\n2) \"b\"\n3) \"c\"\n", 0},
			{[]string{"srem", "s", "a", "z"}, "(integer) 1\n", 0},
			{[]string{"smembers", "s"}, "1) \"b\"\n2) \"c\"\n", 0},
			{[]string{"smembers", "nothing"}, "(empty array)\n", 0},
			{[]string{"type", "k"}, "lww\n", 0},
			{[]string{"type", "c"}, "counter\n", 0},
			{[]string{"type", "s"}, "orset\n", 0},
			{[]string{"type", "missing"}, "none\n", 0},
			{[]string{"del", "k", "missing"}, "(integer) 1\n", 0},
			{[]string{"del", "k"}, "(integer) 0\n", 0},
			{[]string{"get", "k"}, "(nil)\n", 0},
		} {
			out, code := cli(t, n.native, "", step.args...)
			assert.Equal(t, step.want, out, "trellis cli %q", step.args)
			assert.Equal(t, step.code, code, "trellis cli %q", step.args)
		}
	})

	t.Run("cli server error exits 1", func(t *testing.T) {
		out, code := cli(t, n.native, "", "incr", "s") // s is a set
		assert.Equal(t, 1, code)
		assert.True(t, strings.HasPrefix(out, "(error) "), out)
		assert.Contains(t, out, "type mismatch")
	})

	t.Run("cli stats and info", func(t *testing.T) {
		out, code := cli(t, n.native, "", "stats")
		require.Equal(t, 0, code)
		lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
		require.Len(t, lines, 1+1+4+1, out) // summary, header, 4 shards, total
		assert.True(t, strings.HasPrefix(lines[0], fmt.Sprintf("node %d: ", n.id)), lines[0])
		out, code = cli(t, n.native, "", "info")
		require.Equal(t, 0, code)
		assert.Contains(t, out, "version: "+e2eVersion+"\n")
		assert.Contains(t, out, fmt.Sprintf("node: %d\n", n.id))
	})

	t.Run("cli interactive from a pipe", func(t *testing.T) {
		in := "set greeting \"hi there\"\nget greeting\nbogus\nsadd letters x\n\nquit\nget greeting\n"
		out, code := cli(t, n.native, in)
		assert.Equal(t, 0, code)
		assert.Equal(t, "OK\n\"hi there\"\n(error) ERR unknown command 'bogus' (type HELP for the list)\n(integer) 1\n", out,
			"no prompt when stdin is not a terminal; QUIT ends the session")
	})

	t.Run("resp", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", n.redis, 5*time.Second)
		require.NoError(t, err)
		defer conn.Close()
		require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
		r := bufio.NewReader(conn)
		_, err = conn.Write([]byte("*1\r\n$4\r\nPING\r\n"))
		require.NoError(t, err)
		line, err := r.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "+PONG\r\n", line)

		// Both ports serve one store.
		_, err = conn.Write([]byte("*3\r\n$3\r\nSET\r\n$4\r\nfrom\r\n$4\r\nresp\r\n"))
		require.NoError(t, err)
		line, err = r.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "+OK\r\n", line)
		out, code := cli(t, n.native, "", "get", "from")
		assert.Equal(t, 0, code)
		assert.Equal(t, "\"resp\"\n", out)
	})

	t.Run("http", func(t *testing.T) {
		hc := &http.Client{Timeout: 10 * time.Second}
		for path, want := range map[string]int{
			"/healthz":      http.StatusOK,
			"/readyz":       http.StatusOK,
			"/debug/pprof/": http.StatusOK,
			"/nothing":      http.StatusNotFound,
		} {
			resp, err := hc.Get("http://" + n.http + path)
			require.NoError(t, err, path)
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			assert.Equal(t, want, resp.StatusCode, path)
		}
	})

	n.stop(t)
	assert.Contains(t, n.stderr.String(), "node stopped", "logs go to stderr")

	stored, err := os.ReadFile(filepath.Join(dataDir, nodeIDFile))
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatUint(n.id, 10)+"\n", string(stored))

	// Restarted on the same data directory, the node has the same id.
	again := startNode(t, "--addr", "127.0.0.1:0", "--resp-addr", "off", "--data-dir", dataDir)
	assert.Equal(t, n.id, again.id)
	assert.Empty(t, again.redis, "no redis line when the listener is off")
	assert.Equal(t, "try: trellis cli --addr "+again.native, again.banner[len(again.banner)-1])
	again.stop(t)
}

func TestUpWithoutDataDirPersistsNothing(t *testing.T) {
	dir := t.TempDir()
	n := startNodeIn(t, dir, "--addr", "127.0.0.1:0", "--resp-addr", "off", "--log-format", "json")
	require.NoError(t, n.cmd.Process.Signal(syscall.SIGINT))
	select {
	case <-n.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("trellis up still running 5s after SIGINT")
	}
	assert.Equal(t, 0, n.cmd.ProcessState.ExitCode())
	for _, l := range strings.Split(strings.TrimSpace(n.stderr.String()), "\n") {
		assert.True(t, strings.HasPrefix(l, "{"), "json log line: %s", l)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing written to the working directory")
}

func TestUpPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	busy := ln.Addr().String()

	n := startProcess(t, "up", "--addr", busy, "--resp-addr", "127.0.0.1:0")
	select {
	case <-n.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("trellis up did not exit although its port is in use")
	}
	assert.Equal(t, exitFailure, n.cmd.ProcessState.ExitCode())
	stderr := n.stderr.String()
	assert.Equal(t, 1, strings.Count(stderr, "\n"), "one line on stderr: %q", stderr)
	assert.True(t, strings.HasPrefix(stderr, "trellis: "), "error line %q", stderr)
	assert.Contains(t, stderr, busy, "the error names the address")
	assert.Contains(t, stderr, "address already in use")
}
