package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/internal/leakcheck"
)

// trellisBin is the binary TestMain builds for the end-to-end tests;
// buildErr is why it could not be built.
var (
	trellisBin string
	buildErr   error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trellis-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	trellisBin, buildErr = buildTrellis(dir)
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := leakcheck.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines left behind:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// e2eVersion is the version the test binary is linked with.
const e2eVersion = "v0.0.0-e2e"

// buildTrellis builds this package into dir, with the race detector when the
// tests run with it, so the end-to-end tests check the server for races too.
func buildTrellis(dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "trellis")
	args := []string{"build", "-o", bin, "-ldflags=-X main.version=" + e2eVersion}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command(goBin, append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
}

// runMain runs the command line in this process and returns its exit status
// and outputs.
func runMain(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runMain(t, "", "version")
	require.Equal(t, exitOK, code)
	assert.Equal(t, fmt.Sprintf("trellis %s (%s, %s/%s)\n", buildVersion(), runtime.Version(), runtime.GOOS, runtime.GOARCH), out)
}

func TestVersionFromBuildInfo(t *testing.T) {
	info := func(v string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/trellisdb/trellis", Version: v}, Settings: settings}
	}
	rev := debug.BuildSetting{Key: "vcs.revision", Value: "0123456789abcdef0123"}
	dirty := debug.BuildSetting{Key: "vcs.modified", Value: "true"}
	assert.Equal(t, "v1.2.3", versionFromBuildInfo(info("v1.2.3", rev)))
	assert.Equal(t, "0123456789ab", versionFromBuildInfo(info("(devel)", rev)))
	assert.Equal(t, "0123456789ab-dirty", versionFromBuildInfo(info("", rev, dirty)))
	assert.Equal(t, "dev", versionFromBuildInfo(info("(devel)")))
}

func TestUsageErrorsExit2(t *testing.T) {
	clearEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"up", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"up", "extra"}, "takes no arguments"},
		{[]string{"version", "extra"}, "takes no arguments"},
		{[]string{"up", "--shards", "abc"}, `invalid argument "abc" for "--shards"`},
		{[]string{"up", "--shards", "-1"}, "invalid value -1 for shards (from flag --shards): must be between 1 and 4096"},
		{[]string{"up", "--log-level", "loud"}, `invalid value "loud" for log-level (from flag --log-level): must be one of debug, info, warn, error`},
		{[]string{"up", "--addr", "off", "--resp-addr", "off"}, "both listeners are off"},
		{[]string{"cli", "--timeout", "0s", "ping"}, "invalid value"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := runMain(t, "", tc.args...)
			assert.Equal(t, exitUsage, code)
			assert.Empty(t, out)
			assert.Contains(t, errOut, tc.want)
			assert.True(t, strings.HasPrefix(errOut, "trellis: "), errOut)
		})
	}
}

func TestHelpHasExamples(t *testing.T) {
	for _, cmd := range []string{"up", "cli", "version"} {
		code, out, _ := runMain(t, "", cmd, "--help")
		assert.Equal(t, exitOK, code, cmd)
		assert.Contains(t, out, "Examples:", cmd)
	}
	code, out, _ := runMain(t, "", "--help")
	assert.Equal(t, exitOK, code)
	for _, sub := range []string{"up", "cli", "version", "bench"} {
		assert.Regexp(t, `(?m)^  (trellis )?`+sub+` +\S`, out, "root help lists %s", sub)
	}
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func TestCLIUnreachableNode(t *testing.T) {
	clearEnv(t)
	addr := deadAddr(t)
	code, out, errOut := runMain(t, "", "cli", "--addr", addr, "--timeout", "2s", "get", "k")
	assert.Equal(t, exitFailure, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "could not connect to Trellis at "+addr)
}

func TestCLIChecksArgumentsBeforeConnecting(t *testing.T) {
	clearEnv(t)
	addr := deadAddr(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"get"}, "(error) ERR wrong number of arguments for 'get' command\n"},
		{[]string{"SET", "k"}, "(error) ERR wrong number of arguments for 'set' command\n"},
		{[]string{"ping", "x"}, "(error) ERR wrong number of arguments for 'ping' command\n"},
		{[]string{"nosuch", "a"}, "(error) ERR unknown command 'nosuch' (type HELP for the list)\n"},
		{[]string{"incrby", "k", "ten"}, "(error) ERR value is not an integer or out of range\n"},
	} {
		code, out, errOut := runMain(t, "", append([]string{"cli", "--addr", addr}, tc.args...)...)
		assert.Equal(t, exitFailure, code, tc.args)
		assert.Equal(t, tc.want, out, tc.args)
		assert.Empty(t, errOut, tc.args)
	}
	code, out, _ := runMain(t, "", "cli", "--addr", addr, "help")
	assert.Equal(t, exitOK, code)
	for _, c := range commands {
		assert.Contains(t, out, c.name)
	}
}

func TestCLIInteractiveWithoutNode(t *testing.T) {
	clearEnv(t)
	addr := deadAddr(t)
	// stdin is not a terminal: no prompt. Errors do not end the session;
	// QUIT does.
	code, out, _ := runMain(t, "\n get 'unbalanced\nnosuch\nping\nquit\nget never\n", "cli", "--addr", addr, "--timeout", "2s")
	assert.Equal(t, exitOK, code)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.Len(t, lines, 3, out)
	assert.Equal(t, "Invalid argument(s)", lines[0])
	assert.Equal(t, "(error) ERR unknown command 'nosuch' (type HELP for the list)", lines[1])
	assert.Contains(t, lines[2], "could not connect to Trellis at "+addr)
}
