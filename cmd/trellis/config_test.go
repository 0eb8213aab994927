package main

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/wire"
)

var update = flag.Bool("update", false, "rewrite docs/configuration.md from the settings table")

// clearEnv hides every TRELLIS_* variable the settings read, so the
// environment the tests run in cannot change their outcome. An empty
// variable counts as unset.
func clearEnv(t *testing.T) {
	t.Helper()
	for _, s := range settings {
		t.Setenv(envName(s.name), "")
	}
}

// loadArgs resolves cmd's settings from a command line (and the
// environment).
func loadArgs(t *testing.T, cmd string, args ...string) (config, error) {
	t.Helper()
	fs := pflag.NewFlagSet(cmd, pflag.ContinueOnError)
	l := newConfigLoader(cmd, fs)
	require.NoError(t, fs.Parse(args))
	return l.load()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
	return path
}

func TestDefaultsAreTheKVSDefaults(t *testing.T) {
	clearEnv(t)
	c, err := loadArgs(t, cmdUp)
	require.NoError(t, err)
	assert.Equal(t, config{
		Addr: kvs.DefaultAddr, RESPAddr: kvs.DefaultRESPAddr,
		Shards: kvs.DefaultShards, VNodes: kvs.DefaultVNodes, MaxConns: kvs.DefaultMaxConns,
		MaxFrame: wire.DefaultMaxFrame, MaxKey: kvs.DefaultMaxKey, MaxValue: kvs.DefaultMaxValue,
		TombstoneGrace: kvs.DefaultTombstoneGrace, FlushEvery: kvs.DefaultFlushEvery, LogLevel: "info", LogFormat: "text",
		RF: 3, DownAfter: 5 * time.Second, Ack: "quorum", GossipEvery: 50 * time.Millisecond, AEEvery: 10 * time.Second,
	}, c)
	sc, vc, err := nodeConfigs(c, nil)
	require.NoError(t, err)
	assert.Equal(t, kvs.DefaultCollectEvery, sc.CollectEvery)
	assert.Equal(t, buildVersion(), vc.Version)

	c, err = loadArgs(t, cmdCLI)
	require.NoError(t, err)
	assert.Equal(t, config{Addr: kvs.DefaultAddr, Timeout: 10 * time.Second}, c)
}

func TestCommandsGetOnlyTheirFlags(t *testing.T) {
	fs := pflag.NewFlagSet("cli", pflag.ContinueOnError)
	newConfigLoader(cmdCLI, fs)
	assert.NotNil(t, fs.Lookup("addr"))
	assert.NotNil(t, fs.Lookup("config"))
	assert.Nil(t, fs.Lookup("shards"))
	fs = pflag.NewFlagSet("up", pflag.ContinueOnError)
	newConfigLoader(cmdUp, fs)
	assert.Nil(t, fs.Lookup("timeout"))
}

func TestPrecedence(t *testing.T) {
	clearEnv(t)
	file := writeFile(t, "trellis.yaml", `
shards: 32
resp-addr: 127.0.0.1:1001
tombstone-grace: 1m
vnodes: 7
`)
	// default < file
	c, err := loadArgs(t, cmdUp, "--config", file)
	require.NoError(t, err)
	assert.Equal(t, 32, c.Shards)
	assert.Equal(t, "127.0.0.1:1001", c.RESPAddr)
	assert.Equal(t, time.Minute, c.TombstoneGrace)
	assert.Equal(t, 7, c.VNodes)
	assert.Equal(t, kvs.DefaultMaxConns, c.MaxConns)

	// file < env
	t.Setenv("TRELLIS_SHARDS", "48")
	t.Setenv("TRELLIS_RESP_ADDR", "127.0.0.1:1002")
	t.Setenv("TRELLIS_TOMBSTONE_GRACE", "2m")
	c, err = loadArgs(t, cmdUp, "--config", file)
	require.NoError(t, err)
	assert.Equal(t, 48, c.Shards)
	assert.Equal(t, "127.0.0.1:1002", c.RESPAddr)
	assert.Equal(t, 2*time.Minute, c.TombstoneGrace)
	assert.Equal(t, 7, c.VNodes)

	// env < flag
	c, err = loadArgs(t, cmdUp, "--config", file, "--shards", "64", "--resp-addr", "off", "--tombstone-grace", "3m")
	require.NoError(t, err)
	assert.Equal(t, 64, c.Shards)
	assert.Equal(t, kvs.AddrOff, c.RESPAddr)
	assert.Equal(t, 3*time.Minute, c.TombstoneGrace)
	assert.Equal(t, 7, c.VNodes)

	// The config file can come from the environment too.
	t.Setenv("TRELLIS_CONFIG", file)
	c, err = loadArgs(t, cmdUp)
	require.NoError(t, err)
	assert.Equal(t, 7, c.VNodes)
}

func TestConfigFileFormats(t *testing.T) {
	clearEnv(t)
	want := config{
		Addr: "127.0.0.1:1", RESPAddr: kvs.AddrOff, DataDir: "/tmp/x", NodeID: 18446744073709551615,
		Shards: 8, VNodes: kvs.DefaultVNodes, MaxConns: kvs.DefaultMaxConns, MaxFrame: wire.DefaultMaxFrame,
		MaxKey: kvs.DefaultMaxKey, MaxValue: 1 << 20, TombstoneGrace: 90 * time.Second, FlushEvery: kvs.DefaultFlushEvery,
		LogLevel: "debug", LogFormat: "json",
		// up also runs a cluster with --storage-nodes, so it carries the cluster defaults.
		RF: 3, DownAfter: 5 * time.Second, Ack: "quorum", GossipEvery: 50 * time.Millisecond, AEEvery: 10 * time.Second,
	}
	for name, content := range map[string]string{
		"c.yaml": "addr: 127.0.0.1:1\nresp-addr: off\ndata-dir: /tmp/x\nnode-id: 18446744073709551615\nshards: 8\nmax-value: 1048576\ntombstone-grace: 90s\nlog-level: debug\nlog-format: json\n",
		"c.yml":  "addr: 127.0.0.1:1\nresp-addr: 'off'\ndata-dir: /tmp/x\nnode-id: \"18446744073709551615\"\nshards: 8\nmax-value: 1048576\ntombstone-grace: 1m30s\nlog-level: debug\nlog-format: json\n",
		"c.toml": "addr = \"127.0.0.1:1\"\nresp-addr = \"off\"\ndata-dir = \"/tmp/x\"\nnode-id = \"18446744073709551615\"\nshards = 8\nmax-value = 1048576\ntombstone-grace = \"90s\"\nlog-level = \"debug\"\nlog-format = \"json\"\n",
		"c.json": `{"addr": "127.0.0.1:1", "resp-addr": "off", "data-dir": "/tmp/x", "node-id": "18446744073709551615", "shards": 8, "max-value": 1048576, "tombstone-grace": "90s", "log-level": "debug", "log-format": "json"}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, name, content)
			c, err := loadArgs(t, cmdUp, "--config", path)
			require.NoError(t, err)
			w := want
			w.ConfigFile = path
			assert.Equal(t, w, c)
		})
	}
}

// TestInvalidValues checks that a bad value stops the command with a message
// naming the key and where the value came from.
func TestInvalidValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		file string // YAML
		args []string
		want string
	}{
		{name: "negative shards flag", args: []string{"--shards=-1"},
			want: "invalid value -1 for shards (from flag --shards): must be between 1 and 4096"},
		{name: "negative shards env", env: map[string]string{"TRELLIS_SHARDS": "-3"},
			want: `invalid value "-3" for shards (from environment variable TRELLIS_SHARDS): must be between 1 and 4096`},
		{name: "shards not a number env", env: map[string]string{"TRELLIS_SHARDS": "many"},
			want: `invalid value "many" for shards (from environment variable TRELLIS_SHARDS): not an integer`},
		{name: "shards not a number file", file: "shards: many\n",
			want: `invalid value "many" for shards (from config file `},
		{name: "fractional number file", file: "max-key: 1.5\n",
			want: "invalid value 1.5 for max-key (from config file "},
		{name: "duration without unit env", env: map[string]string{"TRELLIS_TOMBSTONE_GRACE": "10"},
			want: `invalid value "10" for tombstone-grace (from environment variable TRELLIS_TOMBSTONE_GRACE): not a duration`},
		{name: "duration as number file", file: "tombstone-grace: 10\n",
			want: "invalid value 10 for tombstone-grace (from config file "},
		{name: "unparsable duration flag", args: []string{"--tombstone-grace=0s"},
			want: `invalid value "0s" for tombstone-grace (from flag --tombstone-grace): must be positive`},
		{name: "unknown log level env", env: map[string]string{"TRELLIS_LOG_LEVEL": "verbose"},
			want: `invalid value "verbose" for log-level (from environment variable TRELLIS_LOG_LEVEL): must be one of debug, info, warn, error`},
		{name: "unknown log format file", file: "log-format: xml\n",
			want: `invalid value "xml" for log-format (from config file `},
		{name: "negative node id", env: map[string]string{"TRELLIS_NODE_ID": "-1"},
			want: `invalid value "-1" for node-id (from environment variable TRELLIS_NODE_ID): must not be negative`},
		{name: "node id too large", env: map[string]string{"TRELLIS_NODE_ID": "18446744073709551616"},
			want: "out of range"},
		{name: "bad address", args: []string{"--addr", "localhost"},
			want: `invalid value "localhost" for addr (from flag --addr): not a host:port address or "off"`},
		{name: "bad port", env: map[string]string{"TRELLIS_RESP_ADDR": "127.0.0.1:99999"},
			want: "the port must be a number from 0 to 65535"},
		{name: "http off is empty, not off", args: []string{"--http-addr", "off"},
			want: `invalid value "off" for http-addr (from flag --http-addr): not a host:port address`},
		{name: "unknown key in file", file: "shard: 3\n",
			want: `unknown key "shard"`},
		{name: "config key in file", file: "config: other.yaml\n",
			want: `key "config" cannot be set in a config file`},
		{name: "negative max-memory", args: []string{"--max-memory=-1"},
			want: "invalid value -1 for max-memory (from flag --max-memory): must be between 0 and"},
		{name: "malformed file", file: "shards: [\n",
			want: "config file "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", writeFile(t, "trellis.yaml", tc.file))
			}
			_, err := loadArgs(t, cmdUp, args...)
			require.Error(t, err)
			var ce *configError
			require.True(t, errors.As(err, &ce), "%T: %v", err, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestConfigFileProblems(t *testing.T) {
	clearEnv(t)
	_, err := loadArgs(t, cmdUp, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	require.ErrorContains(t, err, "missing.yaml")
	_, err = loadArgs(t, cmdUp, "--config", writeFile(t, "trellis.ini", "shards=3\n"))
	require.ErrorContains(t, err, `unsupported extension ".ini"`)

	// A key another command uses is fine in a shared file.
	c, err := loadArgs(t, cmdUp, "--config", writeFile(t, "shared.yaml", "timeout: 3s\nshards: 2\n"))
	require.NoError(t, err)
	assert.Equal(t, 2, c.Shards)
	c, err = loadArgs(t, cmdCLI, "--config", writeFile(t, "shared.yaml", "timeout: 3s\nshards: 2\n"))
	require.NoError(t, err)
	assert.Equal(t, 3*time.Second, c.Timeout)
}

func TestInvalidConfigExits2(t *testing.T) {
	clearEnv(t)
	t.Setenv("TRELLIS_SHARDS", "-5")
	code, out, errOut := runMain(t, "", "up")
	assert.Equal(t, exitUsage, code)
	assert.Empty(t, out)
	assert.Equal(t, "trellis: invalid value \"-5\" for shards (from environment variable TRELLIS_SHARDS): must be between 1 and 4096\n", errOut)
}

// max-memory becomes the store's memory budget, and needs a data directory
// to keep the keys that leave memory in.
func TestMaxMemory(t *testing.T) {
	clearEnv(t)
	c, err := loadArgs(t, cmdKVS, "--max-memory", "1073741824", "--data-dir", t.TempDir())
	require.NoError(t, err)
	assert.Equal(t, 1<<30, c.MaxMemory)
	sc, _, err := nodeConfigs(c, nil)
	require.NoError(t, err)
	assert.EqualValues(t, 1<<30, sc.MemoryBudget)

	c.DataDir = ""
	_, _, err = nodeConfigs(c, nil)
	var ce *configError
	require.ErrorAs(t, err, &ce)
	assert.Contains(t, err.Error(), "max-memory needs data-dir")

	for _, args := range [][]string{{cmdUp}, {cmdKVS, "--route", "127.0.0.1:1"}} {
		cmd := args[0]
		code, out, errOut := runMain(t, "", append(args, "--max-memory", "1000000", "--addr", "127.0.0.1:0", "--resp-addr", "off")...)
		assert.Equal(t, exitUsage, code, cmd)
		assert.Empty(t, out, cmd)
		assert.Contains(t, errOut, "max-memory needs data-dir", cmd)
	}
}

func TestEnvNames(t *testing.T) {
	assert.Equal(t, "TRELLIS_RESP_ADDR", envName("resp-addr"))
	assert.Equal(t, "TRELLIS_A_B_C", envName("a.b-c"))
	seen := map[string]bool{}
	for _, s := range settings {
		assert.False(t, seen[s.name], "duplicate key %s", s.name)
		seen[s.name] = true
		assert.NotEmpty(t, s.cmds, s.name)
		assert.True(t, strings.HasSuffix(s.usage, "."), "usage of %s is a sentence", s.name)
	}
}

// TestConfigDoc checks docs/configuration.md against the settings table.
// Run with -update to rewrite it.
func TestConfigDoc(t *testing.T) {
	const path = "../../docs/configuration.md"
	want := configDoc()
	if *update {
		require.NoError(t, os.WriteFile(path, want, 0o644))
	}
	got, err := os.ReadFile(path)
	require.NoError(t, err, "run: go test ./cmd/trellis -run TestConfigDoc -update")
	if string(got) != string(want) {
		t.Fatalf("%s is not what the settings table generates; run\n\tgo test ./cmd/trellis -run TestConfigDoc -update\nand review the diff", path)
	}
}

// A cluster listener bound to every interface needs an address to
// advertise: other machines cannot reach 0.0.0.0.
func TestNeedAdvertise(t *testing.T) {
	for _, tc := range []struct {
		listen, adv string
		ok          bool
	}{
		{"127.0.0.1:7701", "", true},
		{"10.0.0.5:7701", "", true},
		{"node1.example:7701", "", true},
		{"off", "", true},
		{"0.0.0.0:7701", "", false},
		{":7701", "", false},
		{"[::]:7701", "", false},
		{"0.0.0.0:7701", "10.0.0.5:7701", true},
	} {
		err := needAdvertise("addr", tc.listen, tc.adv)
		if tc.ok {
			assert.NoError(t, err, tc.listen)
			continue
		}
		var ce *configError
		require.ErrorAs(t, err, &ce, tc.listen)
		assert.Contains(t, err.Error(), "advertise-addr")
	}
}
