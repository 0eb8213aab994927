package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/wire"
)

// config is every setting of every command, resolved from flags,
// environment, config file and defaults. A command reads only the fields of
// the keys it registered (see settings).
type config struct {
	ConfigFile     string
	Addr           string
	RESPAddr       string
	HTTPAddr       string
	DataDir        string
	NodeID         uint64
	Shards         int
	VNodes         int
	MaxConns       int
	MaxFrame       int
	MaxKey         int
	MaxValue       int
	Loops          int
	TombstoneGrace time.Duration
	FlushEvery     time.Duration
	MaxMemory      int
	LogLevel       string
	LogFormat      string
	Timeout        time.Duration

	// Cluster roles.
	RaftAddr     string
	Join         string
	RF           int
	DownAfter    time.Duration
	Route        string
	Ack          string
	GossipEvery  time.Duration
	AEEvery      time.Duration
	StorageNodes int

	// Function roles.
	KVS          string
	Coordinators string
	SystemToken  string
	Workers      int
	CacheBytes   int

	AdvertiseAddr     string
	AdvertiseRESPAddr string
	AdvertiseRaftAddr string
}

// Command names, as used in setting.cmds.
const (
	cmdUp    = "up"
	cmdCLI   = "cli"
	cmdKVS   = "kvs"
	cmdRoute = "route"
	// cmdCluster is "trellis cluster" and its subcommands.
	cmdCluster = "cluster"
	// cmdFunctions is "trellis fn" and "trellis dag" and their subcommands.
	cmdFunctions   = "fn/dag"
	cmdCoordinator = "coordinator"
	cmdExecutor    = "executor"
)

// envPrefix starts the name of every environment variable Trellis reads.
const envPrefix = "TRELLIS_"

// configKey is the key (and flag) naming the config file. It is read from the
// flag or the environment only.
const configKey = "config"

// setting is one configuration key: its name (also its flag and, through
// envName, its environment variable), default, documentation and the
// commands that use it. parse turns a raw value (a flag's string, an
// environment variable, a value decoded from a config file) into the typed
// value and stores it in a config.
type setting struct {
	name    string
	def     any    // string, int, uint64 or time.Duration: also the flag's type
	usage   string // one sentence, for --help and docs/configuration.md
	cmds    []string
	unit    string // "bytes" for sizes, shown in docs
	noFile  bool   // may not be set in a config file (the config path itself)
	parse   func(c *config, raw any) error
	flagSet func(fs *pflag.FlagSet)
}

// settings is the one table of configuration keys. Flags, environment
// bindings, viper defaults and docs/configuration.md are all generated from
// it. Defaults are the kvs package's, so a zero config and `trellis up` agree.
var settings = []setting{
	str(configKey, "", "Config file to read settings from: YAML, TOML or JSON, by extension (flag or environment only).",
		func(c *config) *string { return &c.ConfigFile }, nil, cmdUp, cmdCLI, cmdKVS, cmdRoute, cmdCluster, cmdFunctions, cmdCoordinator, cmdExecutor).fileForbidden(),
	str("addr", kvs.DefaultAddr,
		`Native protocol address: where "up", "kvs", "route", "coordinator" and "executor" listen ("off" disables the listener; port 0 picks a free port) and where "cli", "fn" and "dag" connect.`,
		func(c *config) *string { return &c.Addr }, listenerAddr, cmdUp, cmdCLI, cmdKVS, cmdRoute, cmdFunctions, cmdCoordinator, cmdExecutor),
	str("resp-addr", kvs.DefaultRESPAddr,
		`Redis protocol (RESP) listen address ("off" disables it; port 0 picks a free port).`,
		func(c *config) *string { return &c.RESPAddr }, listenerAddr, cmdUp, cmdKVS),
	str("http-addr", "",
		`HTTP address serving /healthz, /readyz and /debug/pprof/ ("" disables it).`,
		func(c *config) *string { return &c.HTTPAddr }, optionalAddr, cmdUp, cmdKVS, cmdCoordinator, cmdExecutor),
	str("data-dir", "",
		`Directory for the node's persistent state, created if missing: its node id, its keys (the disk tier), for a routing node the Raft log and snapshots, for an executor its compiled WebAssembly ("" keeps everything in memory only).`,
		func(c *config) *string { return &c.DataDir }, nil, cmdUp, cmdKVS, cmdRoute, cmdExecutor),
	num("node-id", uint64(0),
		`Node id, the writer id that breaks last-writer-wins ties (0: the one stored in the data directory's node-id file, or a random one, stored there when data-dir is set).`,
		func(c *config) *uint64 { return &c.NodeID }, nil, cmdUp, cmdKVS, cmdRoute),
	num("shards", kvs.DefaultShards, "Number of shards the node's keys are spread over.",
		func(c *config) *int { return &c.Shards }, between(1, 4096), cmdUp, cmdKVS),
	num("vnodes", kvs.DefaultVNodes, "Points per shard on the node's local consistent-hash ring.",
		func(c *config) *int { return &c.VNodes }, between(1, 1<<20), cmdUp, cmdKVS),
	num("max-conns", kvs.DefaultMaxConns, "Most client connections open at once, over both protocols.",
		func(c *config) *int { return &c.MaxConns }, between(1, math.MaxInt32), cmdUp, cmdKVS),
	num("max-frame", wire.DefaultMaxFrame, "Largest native protocol frame body accepted, in bytes.",
		func(c *config) *int { return &c.MaxFrame }, between(64, math.MaxInt32), cmdUp, cmdKVS).inBytes(),
	num("max-key", kvs.DefaultMaxKey, "Largest key accepted, in bytes.",
		func(c *config) *int { return &c.MaxKey }, between(1, math.MaxInt32), cmdUp, cmdKVS).inBytes(),
	num("max-value", kvs.DefaultMaxValue, "Largest value (or set member) accepted, in bytes.",
		func(c *config) *int { return &c.MaxValue }, between(1, math.MaxInt32), cmdUp, cmdKVS).inBytes(),
	num("loops", 0, "Event loops per listener (0: one per CPU, GOMAXPROCS).",
		func(c *config) *int { return &c.Loops }, between(0, 1<<16), cmdUp, cmdKVS),
	dur("tombstone-grace", kvs.DefaultTombstoneGrace,
		"How long a delete is remembered, so that older writes arriving late cannot bring the key back.",
		func(c *config) *time.Duration { return &c.TombstoneGrace }, positive, cmdUp, cmdKVS),
	dur("flush-every", kvs.DefaultFlushEvery,
		"With a data directory, how often changed keys are written behind to disk (a durable write flushes at once).",
		func(c *config) *time.Duration { return &c.FlushEvery }, positive, cmdUp, cmdKVS),
	num("max-memory", 0,
		`Memory budget of each storage node's keys and values, in bytes (0: none; needs data-dir). Above it, keys not used lately leave memory for the disk tier and are read back when used.`,
		func(c *config) *int { return &c.MaxMemory }, between(0, math.MaxInt), cmdUp, cmdKVS).inBytes(),
	str("log-level", "info", "Least severe log level written to stderr: debug, info, warn or error.",
		func(c *config) *string { return &c.LogLevel }, oneOf("debug", "info", "warn", "error"), cmdUp, cmdKVS, cmdRoute, cmdCoordinator, cmdExecutor),
	str("log-format", "text", "Log format: text or json.",
		func(c *config) *string { return &c.LogFormat }, oneOf("text", "json"), cmdUp, cmdKVS, cmdRoute, cmdCoordinator, cmdExecutor),
	dur("timeout", 10*time.Second, "Time limit of one command, connecting included.",
		func(c *config) *time.Duration { return &c.Timeout }, positive, cmdCLI, cmdCluster, cmdFunctions),
	str("raft-addr", "127.0.0.1:7800", "Address the routing node's Raft traffic listens on (port 0 picks a free port).",
		func(c *config) *string { return &c.RaftAddr }, listenerAddr, cmdRoute),
	str("join", "", `Native address of a running routing node whose group this one joins ("": form a new group, or restart one from the data directory).`,
		func(c *config) *string { return &c.Join }, optionalAddr, cmdRoute),
	num("rf", 3, "Default replication factor of a new cluster (each key is kept on this many storage nodes).",
		func(c *config) *int { return &c.RF }, between(1, 1024), cmdRoute, cmdUp),
	dur("down-after", 5*time.Second, "How long a storage node may go without a heartbeat before the routing leader marks it down.",
		func(c *config) *time.Duration { return &c.DownAfter }, positive, cmdRoute, cmdUp),
	str("route", "", `Native addresses of the routing nodes, comma-separated (required by kvs and cluster; coordinator and executor reach a cluster's keys through them, or one node's through "kvs").`,
		func(c *config) *string { return &c.Route }, nil, cmdKVS, cmdCluster, cmdCoordinator, cmdExecutor),
	str("ack", "quorum", "Acknowledgement of writes that ask for none: local, quorum or durable.",
		func(c *config) *string { return &c.Ack }, oneOf("local", "quorum", "durable"), cmdKVS, cmdUp),
	dur("gossip-every", 50*time.Millisecond, "How often a storage node sends replicas the writes it could not replicate at once.",
		func(c *config) *time.Duration { return &c.GossipEvery }, positive, cmdKVS, cmdUp),
	dur("ae-every", 10*time.Second, "How often a storage node compares its keys with every peer (anti-entropy).",
		func(c *config) *time.Duration { return &c.AEEvery }, positive, cmdKVS, cmdUp),
	str("advertise-addr", "", `Native address other nodes and clients reach this storage node, coordinator or executor at ("": the listen address, which must then name a host, not 0.0.0.0).`,
		func(c *config) *string { return &c.AdvertiseAddr }, optionalAddr, cmdKVS, cmdCoordinator, cmdExecutor),
	str("advertise-resp-addr", "", `Redis-protocol address other nodes forward commands to ("": the listen address, which must then name a host).`,
		func(c *config) *string { return &c.AdvertiseRESPAddr }, optionalAddr, cmdKVS),
	str("advertise-raft-addr", "", `Raft address the other routing nodes reach this one at ("": the listen address, which must then name a host).`,
		func(c *config) *string { return &c.AdvertiseRaftAddr }, optionalAddr, cmdRoute),
	num("storage-nodes", 0, `Storage nodes "up" runs as a cluster, with a routing node, in this process (0: one storage node, no cluster).`,
		func(c *config) *int { return &c.StorageNodes }, between(0, 64), cmdUp),
	str("kvs", "", `Native address of the storage node (a "trellis up" or a single node) whose keys a coordinator or executor uses; give this or "route".`,
		func(c *config) *string { return &c.KVS }, optionalAddr, cmdCoordinator, cmdExecutor),
	str("coordinator", "", "Native addresses of the coordinators an executor reports to, comma-separated (required by executor).",
		func(c *config) *string { return &c.Coordinators }, nil, cmdExecutor),
	str("system-token", "", `The cluster's system token: storage nodes let connections that present it write the reserved namespace of function and DAG definitions, which coordinators need ("": nobody may, and only the coordinator inside "up" registers). Prefer the environment variable: flags show in process lists.`,
		func(c *config) *string { return &c.SystemToken }, nil, cmdUp, cmdKVS, cmdCoordinator),
	num("workers", 0, "Functions an executor runs at once (0: one per CPU, GOMAXPROCS).",
		func(c *config) *int { return &c.Workers }, between(0, 1<<16), cmdExecutor),
	num("cache-bytes", 64<<20, "Byte budget of an executor's cache of the keys its functions read.",
		func(c *config) *int { return &c.CacheBytes }, between(1<<10, math.MaxInt), cmdExecutor).inBytes(),
}

func (s setting) fileForbidden() setting { s.noFile = true; return s }

func (s setting) inBytes() setting { s.unit = "bytes"; return s }

// usedBy reports whether the command named cmd reads s.
func (s setting) usedBy(cmd string) bool { return slices.Contains(s.cmds, cmd) }

// envName returns the environment variable that sets key.
func envName(key string) string {
	return envPrefix + strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(key))
}

func str(name, def, usage string, field func(*config) *string, check func(string) error, cmds ...string) setting {
	return setting{
		name: name, def: def, usage: usage, cmds: cmds,
		parse: func(c *config, raw any) error {
			var s string
			switch v := raw.(type) {
			case string:
				s = v
			case int, int64, uint64, float64: // data-dir: 2024 in a YAML file
				s = fmt.Sprint(v)
			default:
				return fmt.Errorf("not a string (%T)", raw)
			}
			if check != nil {
				if err := check(s); err != nil {
					return err
				}
			}
			*field(c) = s
			return nil
		},
		flagSet: func(fs *pflag.FlagSet) { fs.String(name, def, usage) },
	}
}

func num[T int | uint64](name string, def T, usage string, field func(*config) *T, check func(T) error, cmds ...string) setting {
	return setting{
		name: name, def: def, usage: usage, cmds: cmds,
		parse: func(c *config, raw any) error {
			v, err := toInteger[T](raw)
			if err != nil {
				return err
			}
			if check != nil {
				if err := check(v); err != nil {
					return err
				}
			}
			*field(c) = v
			return nil
		},
		flagSet: func(fs *pflag.FlagSet) {
			switch d := any(def).(type) {
			case int:
				fs.Int(name, d, usage)
			case uint64:
				fs.Uint64(name, d, usage)
			}
		},
	}
}

func dur(name string, def time.Duration, usage string, field func(*config) *time.Duration, check func(time.Duration) error, cmds ...string) setting {
	return setting{
		name: name, def: def, usage: usage, cmds: cmds,
		parse: func(c *config, raw any) error {
			var d time.Duration
			switch v := raw.(type) {
			case time.Duration:
				d = v
			case string:
				var err error
				if d, err = time.ParseDuration(strings.TrimSpace(v)); err != nil {
					return errors.New("not a duration (use a unit, as in 90s, 10m or 1h30m)")
				}
			default:
				return fmt.Errorf("not a duration (%v): write it as a string with a unit, as in \"10m\"", raw)
			}
			if check != nil {
				if err := check(d); err != nil {
					return err
				}
			}
			*field(c) = d
			return nil
		},
		flagSet: func(fs *pflag.FlagSet) { fs.Duration(name, def, usage) },
	}
}

// toInteger converts a raw value to T: a decimal string (flags, environment)
// or a number decoded from a config file (YAML and TOML integers, JSON's
// float64).
func toInteger[T int | uint64](raw any) (T, error) {
	var zero T
	var s string
	switch v := raw.(type) {
	case string:
		s = strings.TrimSpace(v)
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		s = fmt.Sprint(v)
	case float64:
		if v != math.Trunc(v) || math.IsInf(v, 0) || math.IsNaN(v) {
			return zero, errors.New("not an integer")
		}
		s = strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return zero, fmt.Errorf("not an integer (%T)", raw)
	}
	var err error
	switch any(zero).(type) {
	case int:
		var n int64
		if n, err = strconv.ParseInt(s, 10, 0); err == nil {
			return T(n), nil
		}
	default:
		if strings.HasPrefix(s, "-") {
			return zero, errors.New("must not be negative")
		}
		var n uint64
		if n, err = strconv.ParseUint(s, 10, 64); err == nil {
			return T(n), nil
		}
	}
	if errors.Is(err, strconv.ErrRange) {
		return zero, errors.New("out of range")
	}
	return zero, errors.New("not an integer")
}

func between(lo, hi int) func(int) error {
	return func(v int) error {
		if v < lo || v > hi {
			return fmt.Errorf("must be between %d and %d", lo, hi)
		}
		return nil
	}
}

func positive(d time.Duration) error {
	if d <= 0 {
		return errors.New("must be positive")
	}
	return nil
}

func oneOf(choices ...string) func(string) error {
	return func(s string) error {
		if !slices.Contains(choices, s) {
			return fmt.Errorf("must be one of %s", strings.Join(choices, ", "))
		}
		return nil
	}
}

// hostPort checks a host:port address with a numeric port.
func hostPort(s string) error {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not a host:port address")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return errors.New("the port must be a number from 0 to 65535")
	}
	return nil
}

// listenerAddr checks a listener address: host:port or "off".
func listenerAddr(s string) error {
	if s == kvs.AddrOff {
		return nil
	}
	if err := hostPort(s); err != nil {
		return fmt.Errorf(`%w or "off"`, err)
	}
	return nil
}

// optionalAddr checks an address that may be empty (disabled).
func optionalAddr(s string) error {
	if s == "" {
		return nil
	}
	return hostPort(s)
}

// configError is an invalid setting or config file. It makes the command exit
// with status 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// configLoader resolves one command's settings. Each command has its own
// (viper instances are not shared), so commands and tests do not interfere.
type configLoader struct {
	cmd string
	fs  *pflag.FlagSet
	v   *viper.Viper
}

// newConfigLoader registers on fs a flag for every setting that cmd uses, and
// binds them, their environment variables and their defaults in a fresh
// viper.
func newConfigLoader(cmd string, fs *pflag.FlagSet) *configLoader {
	l := &configLoader{cmd: cmd, fs: fs, v: viper.New()}
	for _, s := range settings {
		if !s.usedBy(cmd) {
			continue
		}
		s.flagSet(fs)
		l.v.SetDefault(s.name, s.def)
		_ = l.v.BindEnv(s.name, envName(s.name))     // fails only without a key
		_ = l.v.BindPFlag(s.name, fs.Lookup(s.name)) // fails only for a nil flag
	}
	return l
}

// source describes where key's value comes from, for error messages.
func (l *configLoader) source(key, file string) string {
	if f := l.fs.Lookup(key); f != nil && f.Changed {
		return "flag --" + key
	}
	if v, ok := os.LookupEnv(envName(key)); ok && v != "" {
		return "environment variable " + envName(key)
	}
	if file != "" && l.v.InConfig(key) {
		return "config file " + file
	}
	return "default"
}

// load reads the config file (if any) and returns the resolved settings, or
// a *configError naming the first bad key and where its value came from.
func (l *configLoader) load() (config, error) {
	var c config
	file := l.v.GetString(configKey)
	if file != "" {
		if err := l.readFile(file); err != nil {
			return c, err
		}
	}
	for _, s := range settings {
		if !s.usedBy(l.cmd) {
			continue
		}
		raw := l.v.Get(s.name)
		if err := s.parse(&c, raw); err != nil {
			return c, &configError{fmt.Sprintf("invalid value %s for %s (from %s): %v",
				quoteRaw(raw), s.name, l.source(s.name, file), err)}
		}
	}
	return c, nil
}

func quoteRaw(raw any) string {
	if s, ok := raw.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(raw)
}

// readFile reads a config file into the loader's viper, refusing unknown
// keys (most likely typos) and keys that cannot be set in a file.
func (l *configLoader) readFile(file string) error {
	ext := strings.TrimPrefix(filepath.Ext(file), ".")
	if !slices.Contains([]string{"yaml", "yml", "toml", "json"}, ext) {
		return &configError{fmt.Sprintf("config file %s: unsupported extension %q (use .yaml, .yml, .toml or .json)", file, filepath.Ext(file))}
	}
	l.v.SetConfigFile(file)
	if err := l.v.ReadInConfig(); err != nil {
		return &configError{fmt.Sprintf("config file %s: %v", file, err)}
	}
	for _, k := range l.v.AllKeys() {
		if !l.v.InConfig(k) {
			continue
		}
		i := slices.IndexFunc(settings, func(s setting) bool { return s.name == k })
		switch {
		case i < 0:
			return &configError{fmt.Sprintf("config file %s: unknown key %q (see docs/configuration.md)", file, k)}
		case settings[i].noFile:
			return &configError{fmt.Sprintf("config file %s: key %q cannot be set in a config file", file, k)}
		}
	}
	return nil
}

// slogLevel maps a validated log-level setting to its slog.Level.
func slogLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
