package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellisdb/trellis/benchmarks"
)

// newBenchCmd returns `trellis bench` and its subcommands: kvs (native
// protocol load), memory (RSS after a RESP fill) and resp (the commands that
// compare the Redis port with Redis).
func newBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run benchmarks against a Trellis node",
		Long: `Benchmarks against a running node (start one with 'trellis up'), or against
a cluster they start themselves.

  kvs      native-protocol load: throughput and latency percentiles
  memory   fill a Redis-protocol server with keys and report its RSS
  resp     print the commands that compare the Redis port with redis-server
  cluster  start a cluster in this process; measure quorum latency, gossip
           convergence, hand-off to a joining node, restart from disk

Progress goes to stderr (only when it is a terminal), results to stdout;
--json prints exactly one JSON object.`,
		Args: noArgs,
	}
	cmd.AddCommand(newBenchKVSCmd(), newBenchMemoryCmd(), newBenchRESPCmd(), newBenchClusterCmd(), newBenchDAGCmd())
	return cmd
}

func newBenchKVSCmd() *cobra.Command {
	var (
		cfg       benchmarks.KVSConfig
		getRatio  float64
		preload   bool
		asJSON    bool
		cpuprof   string
		durationF = benchmarks.DefaultDuration
	)
	cmd := &cobra.Command{
		Use:   "kvs",
		Short: "Load a node's native port with gets and sets; report ops/s and latency",
		Long: `Load a node's native port with a mix of gets and sets and report throughput
and latency percentiles.

Each of --conns connections is one worker that sends --pipeline requests in
one write and waits for all their responses, then repeats. Every request of a
batch records the batch's round trip as its latency (redis-benchmark counts
pipelined latency the same way). Keys are "key:%012d" over [0, --keys), as
redis-benchmark -r makes them; by default every key is written once before
the measured run (--preload), so gets hit.

The run lasts --duration, or --requests operations when that is given (and
--duration is not).`,
		Example: `  trellis bench kvs                                   # 50 conns x 16 in flight, 10 s
  trellis bench kvs --pipeline 1 --duration 5s        # unpipelined
  trellis bench kvs --dist zipfian --get-ratio 0.9 --json
  taskset -c 1 trellis bench kvs --addr 127.0.0.1:7700 --requests 2000000
  trellis bench kvs --route 127.0.0.1:7710 --conns 1 --pipeline 1 --get-ratio 0   # quorum write latency`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", benchmarks.DefaultAddr, "native-protocol address of the node")
	f.IntVar(&cfg.Conns, "conns", benchmarks.DefaultConns, "connections (one worker each)")
	f.IntVar(&cfg.Pipeline, "pipeline", benchmarks.DefaultPipeline, "requests in flight per connection (one batch)")
	f.DurationVar(&durationF, "duration", benchmarks.DefaultDuration, "length of the measured run (unbounded when --requests is given alone)")
	f.Int64Var(&cfg.Requests, "requests", 0, "total operations to run (0: run for --duration)")
	f.Int64Var(&cfg.Keys, "keys", benchmarks.DefaultKeys, "keyspace size")
	f.StringVar(&cfg.Distribution, "dist", benchmarks.Uniform, "key distribution: uniform or zipfian")
	f.Float64Var(&cfg.ZipfS, "zipf-s", benchmarks.DefaultZipfS, "Zipf exponent s for --dist zipfian")
	f.IntVar(&cfg.ValueSize, "value-size", benchmarks.DefaultValueSize, "value size in bytes")
	f.Float64Var(&getRatio, "get-ratio", benchmarks.DefaultGetRatio, "fraction of operations that are gets (0: sets only)")
	f.BoolVar(&preload, "preload", true, "write every key once before the measured run")
	f.Uint64Var(&cfg.Seed, "seed", 0, "random seed (worker i uses seed, i)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object instead of the summary")
	f.StringVar(&cpuprof, "cpuprofile", "", "write a CPU profile of the load generator to this file")
	f.StringSliceVar(&cfg.Route, "route", nil, "routing nodes of a cluster: send through a cluster client instead of to --addr")
	f.StringVar(&cfg.Ack, "ack", "", "acknowledgement of sets: local, quorum or durable (default: the node's; with --route, quorum)")
	f.BoolVar(&cfg.NoFanOut, "no-fan-out", false, "with --route: send quorum sets through one node instead of to a quorum of replicas at once")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		// Zero means "the default" in KVSConfig, not on the command line.
		if err := flagsPositive(map[string]float64{"--conns": float64(cfg.Conns), "--pipeline": float64(cfg.Pipeline),
			"--keys": float64(cfg.Keys), "--value-size": float64(cfg.ValueSize), "--zipf-s": cfg.ZipfS}); err != nil {
			return err
		}
		if f.Changed("duration") || cfg.Requests == 0 {
			cfg.Duration = durationF
			if cfg.Duration == 0 {
				return &exitError{code: exitUsage, err: errors.New("--duration must be positive")}
			}
		}
		cfg.GetRatio = getRatio
		if getRatio == 0 {
			cfg.GetRatio = benchmarks.NoGets
		}
		cfg.SkipPreload = !preload
		if err := cfg.Validate(); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		ctx, stop := shutdownOnSignal(cmd.Context(), cmd.ErrOrStderr())
		defer stop()
		if cpuprof != "" {
			stopProfile, err := startCPUProfile(cpuprof)
			if err != nil {
				return runtimeErr(err)
			}
			defer stopProfile()
		}
		bar := newProgressBar(cmd.ErrOrStderr())
		res, err := benchmarks.RunKVS(ctx, cfg, bar.kvs)
		bar.clear()
		interrupted := err != nil && ctx.Err() != nil
		if err != nil && !interrupted {
			return runtimeErr(err)
		}
		out := cmd.OutOrStdout()
		if asJSON {
			if err := writeJSON(out, res); err != nil {
				return runtimeErr(err)
			}
		} else {
			printKVSSummary(out, res, interrupted)
		}
		if interrupted {
			return runtimeErr(fmt.Errorf("interrupted after %.1f s", res.Seconds))
		}
		return nil
	}
	return cmd
}

func printKVSSummary(w io.Writer, r benchmarks.KVSResult, interrupted bool) {
	c := r.Config
	dist := c.Distribution
	if dist == benchmarks.Zipfian {
		dist = fmt.Sprintf("zipfian(s=%g)", c.ZipfS)
	}
	bound := fmt.Sprintf("%v", c.Duration)
	if c.Requests > 0 {
		bound = fmt.Sprintf("%d requests", c.Requests)
	}
	fmt.Fprintf(w, "trellis bench kvs %s: %d conns x pipeline %d, %s, %s keys over %d, %d-byte values, %.0f%% gets, seed %d\n",
		c.Addr, c.Conns, c.Pipeline, bound, dist, c.Keys, c.ValueSize, 100*max(c.GetRatio, 0), c.Seed)
	if r.PreloadSeconds > 0 {
		fmt.Fprintf(w, "  preload     %d keys in %.2f s\n", c.Keys, r.PreloadSeconds)
	}
	note := ""
	if interrupted {
		note = " (interrupted)"
	}
	fmt.Fprintf(w, "  ops         %d in %.2f s%s: %d gets (%d misses), %d sets, %d errors\n",
		r.Ops, r.Seconds, note, r.Gets, r.Misses, r.Sets, r.Errors)
	for kind, n := range r.ErrorKinds {
		fmt.Fprintf(w, "    %-16s %d\n", kind, n)
	}
	fmt.Fprintf(w, "  throughput  %.0f ops/s\n", r.OpsPerSec)
	fmt.Fprintf(w, "  latency µs  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f  (mean %.1f)\n",
		r.P50us, r.P90us, r.P99us, r.P999us, r.MaxUs, r.MeanUs)
}

func newBenchMemoryCmd() *cobra.Command {
	var (
		cfg    benchmarks.MemoryConfig
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "memory",
		Short: "Fill a Redis-protocol server with keys and report its RSS",
		Long: `Write --keys keys ("key:%012d", --value-size-byte values) with SET to the
Redis-protocol server at --target (Trellis's Redis port or a redis-server),
wait --settle, and print the server's resident set size (VmRSS) in MiB and in
bytes per key, before and after. The server's pid is --pid, or the local
process listening on --target's port (found through /proc; that needs the
right to read the server's /proc/<pid>/fd, so run as its user or as root).

Run it against a fresh server, the same way for both: benchmarks/
memory_vs_redis.sh does the comparison with Redis end to end.`,
		Example: `  trellis bench memory --target 127.0.0.1:7379
  trellis bench memory --target 127.0.0.1:6379 --pid $(pidof redis-server) --json`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Target, "target", benchmarks.DefaultMemoryTarget, "Redis-protocol address of the server to fill")
	f.IntVar(&cfg.PID, "pid", 0, "the server's pid (0: the local listener of --target)")
	f.IntVar(&cfg.Keys, "keys", benchmarks.DefaultMemoryKeys, "keys to write")
	f.IntVar(&cfg.ValueSize, "value-size", benchmarks.DefaultValueSize, "value size in bytes")
	f.DurationVar(&cfg.Settle, "settle", benchmarks.DefaultSettle, "wait after the fill before reading the RSS")
	f.BoolVar(&asJSON, "json", false, "print one JSON object instead of the summary")

	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := flagsPositive(map[string]float64{"--keys": float64(cfg.Keys), "--value-size": float64(cfg.ValueSize),
			"--settle": cfg.Settle.Seconds()}); err != nil {
			return err
		}
		if err := cfg.Validate(); err != nil {
			return &exitError{code: exitUsage, err: err}
		}
		ctx, stop := shutdownOnSignal(cmd.Context(), cmd.ErrOrStderr())
		defer stop()
		bar := newProgressBar(cmd.ErrOrStderr())
		res, err := benchmarks.MeasureMemory(ctx, cfg, bar.fill)
		bar.clear()
		if err != nil {
			return runtimeErr(err)
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return runtimeErr(writeJSON(out, &res))
		}
		mib := func(b int64) float64 { return float64(b) / (1 << 20) }
		fmt.Fprintf(out, "trellis bench memory %s: pid %d (%s), %d keys, %d-byte values\n",
			res.Target, res.PID, res.Process, res.Keys, res.ValueSize)
		fmt.Fprintf(out, "  fill        %.2f s, then %.1f s settle; DBSIZE %s -> %s\n",
			res.FillSeconds, res.SettleSeconds, dbsize(res.DBSizeBefore), dbsize(res.DBSize))
		fmt.Fprintf(out, "  rss         %.1f MiB (before the fill %.1f MiB)\n", res.RSSMiB, mib(res.RSSBefore))
		fmt.Fprintf(out, "  bytes/key   %.1f (growth during the fill: %.1f)\n", res.BytesPerKey, res.DeltaBytesPerKey)
		return nil
	}
	return cmd
}

// flagsPositive is a usage error naming the first flag (in name order) whose
// value is not positive.
func flagsPositive(flags map[string]float64) error {
	for _, name := range slices.Sorted(maps.Keys(flags)) {
		if !(flags[name] > 0) {
			return &exitError{code: exitUsage, err: fmt.Errorf("%s must be positive, got %v", name, flags[name])}
		}
	}
	return nil
}

func dbsize(n int64) string {
	if n < 0 {
		return "?"
	}
	return fmt.Sprint(n)
}

func newBenchRESPCmd() *cobra.Command {
	var target, tools, native string
	cmd := &cobra.Command{
		Use:   "resp",
		Short: "Print the commands that compare the Redis port with redis-server",
		Long: `Print the command lines that measure Trellis's Redis-protocol port against a
fresh redis-server under the same redis-benchmark load, with the project's
shared tool (redis_vs.sh, run from the project root), and the native-protocol
run of the same load. Nothing is run.`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&target, "target", benchmarks.DefaultMemoryTarget, "Trellis's Redis-protocol address")
	f.StringVar(&native, "addr", benchmarks.DefaultAddr, "Trellis's native-protocol address")
	f.StringVar(&tools, "tools", "../shared/tools", "directory of redis_vs.sh and cpu_probe.sh, relative to the project root")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		vs := strings.TrimSuffix(tools, "/") + "/redis_vs.sh " + target
		fmt.Fprintf(cmd.OutOrStdout(), `# Start the node on CPU 0, like the reference redis-server (PIN=same):
taskset -c 0 trellis up --addr %[3]s --resp-addr %[4]s
# Are the two vCPUs independent right now? (eff >= 0.9 allows PIN=split)
%[1]s/cpu_probe.sh
# SET and GET, 100-byte values, 100k keys, -c 50 -P 16; last line RATIO set=X get=Y
%[2]s
# unpipelined, and one client (latency-bound)
LOAD="-c 50 -P 1" N=300000 %[2]s
LOAD="-c 1 -P 1" N=60000 %[2]s
# the same loads over the native protocol (load generator on the other CPU)
taskset -c 1 trellis bench kvs --addr %[3]s --conns 50 --pipeline 16 --keys 100000 --value-size 100
taskset -c 1 trellis bench kvs --addr %[3]s --conns 50 --pipeline 1 --keys 100000 --value-size 100
`, strings.TrimSuffix(tools, "/"), vs, native, target)
		return nil
	}
	return cmd
}

func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// progressBar redraws one status line on a terminal with '\r'; on anything
// else it prints nothing.
type progressBar struct {
	w     io.Writer // nil: not a terminal
	width int       // of the last line drawn
}

func newProgressBar(w io.Writer) *progressBar {
	if f, ok := w.(*os.File); ok && benchmarks.IsTerminal(f.Fd()) {
		return &progressBar{w: w}
	}
	return &progressBar{}
}

func (b *progressBar) draw(line string) {
	if b.w == nil {
		return
	}
	pad := max(b.width-len(line), 0)
	fmt.Fprintf(b.w, "\r%s%s", line, strings.Repeat(" ", pad))
	b.width = len(line)
}

func (b *progressBar) clear() {
	if b.w != nil && b.width > 0 {
		fmt.Fprintf(b.w, "\r%s\r", strings.Repeat(" ", b.width))
		b.width = 0
	}
}

func (b *progressBar) kvs(p benchmarks.Progress) {
	rate := float64(p.Done) / max(p.Elapsed.Seconds(), 1e-9)
	var line string
	switch {
	case p.Phase == benchmarks.PhasePreload:
		line = fmt.Sprintf("preload %5.1fs  %d/%d keys  %.0f sets/s", p.Elapsed.Seconds(), p.Done, p.Target, rate)
	case p.Total > 0:
		line = fmt.Sprintf("run %5.1fs/%s  %d ops  %.0f ops/s", p.Elapsed.Seconds(), shortDuration(p.Total), p.Done, rate)
	default:
		line = fmt.Sprintf("run %5.1fs  %d/%d ops  %.0f ops/s", p.Elapsed.Seconds(), p.Done, p.Target, rate)
	}
	if p.Errors > 0 {
		line += fmt.Sprintf("  %d errors", p.Errors)
	}
	b.draw(line)
}

func (b *progressBar) fill(p benchmarks.Progress) {
	rate := float64(p.Done) / max(p.Elapsed.Seconds(), 1e-9)
	b.draw(fmt.Sprintf("fill %5.1fs  %d/%d keys  %.0f sets/s", p.Elapsed.Seconds(), p.Done, p.Target, rate))
}

// startCPUProfile starts writing a CPU profile to path; the returned
// function stops it and closes the file.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func newBenchDAGCmd() *cobra.Command {
	cfg := benchmarks.DAGConfig{Addr: benchmarks.DefaultAddr, Chain: 2, Runtime: "native", Concurrency: 1,
		Duration: 10 * time.Second, Warmup: time.Second, Examples: "examples/functions"}
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "dag",
		Short: "Call a chain DAG (increment, square) from concurrent callers; report calls/s and latency",
		Long: `Register the DAG square(increment(x)) (--chain 2) or increment(x) (--chain 1)
with the coordinator at --addr, of native functions (native/increment,
native/square) or of the example WebAssembly functions (registered as
increment and square; built from --examples when they are not), and call it
from --concurrency callers, each with one call in flight, for --duration.
Every result is checked.`,
		Example: `  trellis bench dag --chain 2 --runtime native --concurrency 1 --duration 10s
  taskset -c 0 trellis bench dag --runtime wasm --concurrency 50 --json`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", cfg.Addr, "native address of trellis up (its coordinator)")
	f.IntVar(&cfg.Chain, "chain", cfg.Chain, "functions in the chain: 1 or 2")
	f.StringVar(&cfg.Runtime, "runtime", cfg.Runtime, "native or wasm")
	f.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "callers, one call in flight each")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the measured run")
	f.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "calls before the measured run")
	f.StringVar(&cfg.Examples, "examples", cfg.Examples, "directory of the example functions (for --runtime wasm)")
	f.BoolVar(&asJSON, "json", false, "print one JSON object instead of the summary")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stop := shutdownOnSignal(cmd.Context(), cmd.ErrOrStderr())
		defer stop()
		res, err := benchmarks.RunDAG(ctx, cfg)
		if err != nil && ctx.Err() == nil {
			return runtimeErr(err)
		}
		out := cmd.OutOrStdout()
		if asJSON {
			return runtimeErr(writeJSON(out, res))
		}
		fmt.Fprintf(out, "chain %d (%s), %d callers: %d calls in %.1f s, %d errors\n",
			res.Chain, res.Runtime, res.Concurrency, res.Calls, res.Seconds, res.Errors)
		if res.FirstError != "" {
			fmt.Fprintf(out, "  first error: %s\n", res.FirstError)
		}
		fmt.Fprintf(out, "  %.0f calls/s   p50 %.1f µs   p90 %.1f µs   p99 %.1f µs   max %.1f µs   first call %.1f µs\n",
			res.OpsPerSec, res.P50us, res.P90us, res.P99us, res.MaxUs, res.FirstCallUs)
		return nil
	}
	return cmd
}
