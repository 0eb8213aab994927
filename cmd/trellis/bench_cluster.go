package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/trellisdb/trellis/benchmarks"
	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/clusterclient"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/resp"
)

// clusterBenchConfig is what `trellis bench cluster` runs.
type clusterBenchConfig struct {
	Scenarios []string
	Nodes     int
	Ops       int // latency and gossip samples
	Keys      int // keys loaded for hand-off and restart
	Traffic   int // client connections during a hand-off
	DataDir   string
	Timeout   time.Duration
}

// latencyResult is the latency scenario's result: one client, one request
// at a time, to a replica of each key.
type latencyResult struct {
	Ops                      int
	LocalP50us, LocalP99us   float64
	QuorumP50us, QuorumP99us float64
	GetP50us, GetP99us       float64
	QuorumOverLocalP50       float64
	// The same keys through a cluster client, which sends each key to its
	// own replicas: SET acknowledged locally, and quorum SETs by fan-out
	// (FanOuts of them were; the others fell back to one node).
	ClusterLocalP50us, ClusterLocalP99us   float64
	ClusterQuorumP50us, ClusterQuorumP99us float64
	ClusterQuorumOverLocalP50              float64
	FanOuts                                uint64
}

// gossipResult is the gossip scenario's result: the time from a write's
// local acknowledgement until every other replica holds it.
type gossipResult struct {
	Writes              int
	GossipEveryMs       float64
	P50ms, P99ms, MaxMs float64
	P99InPeriods        float64
}

// handoffResult is the hand-off scenario's result.
type handoffResult struct {
	Keys                 int
	LoadSeconds          float64
	ActiveSeconds        float64 // from the joining node's start until it is active
	HandoffDoneSeconds   float64 // until the old owners dropped every copy they no longer replicate
	ClientOps            int64
	ClientErrors         int64
	FirstErrors          []string `json:",omitempty"`
	FinalCheckMismatches int
	AntiEntropyEverySecs float64
}

// restartResult is the restart scenario's result.
type restartResult struct {
	Keys           int
	VictimKeys     int     // keys the stopped node held
	ServingSeconds float64 // from the start of the restarted node until it listens (keys loaded from disk)
	ActiveSeconds  float64 // until it is an active member again (caught up)
	HeldKeys       int     // keys the restarted node holds once active
}

type clusterBenchResult struct {
	Nodes   int
	RF      int
	Latency *latencyResult `json:",omitempty"`
	Gossip  *gossipResult  `json:",omitempty"`
	Handoff *handoffResult `json:",omitempty"`
	Restart *restartResult `json:",omitempty"`
}

func newBenchClusterCmd() *cobra.Command {
	bc := clusterBenchConfig{}
	var (
		asJSON  bool
		cpuprof string
	)
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Run a cluster in this process and measure replication, hand-off and restart",
		Long: `Start a routing node and --nodes storage nodes in this process (on loopback,
with the storage-node settings given: --rf, --ack, --gossip-every, --ae-every
...) and measure, per --scenario:

  latency  SET acknowledged locally vs by a quorum, and GET: p50/p99 of one
           client sending one request at a time to a replica of the key
  gossip   time from a locally acknowledged write until every other replica
           holds it, in gossip periods
  handoff  load --keys keys, start one more node, and time until it is active
           and until the old owners have handed off (dropped) every copy they
           no longer replicate, with --traffic Redis-protocol clients reading
           and writing the loaded keys all along (their errors are counted)
  restart  load --keys keys with a data directory, stop a node, start it
           again from its directory, and time until it serves and until it
           is active

Nodes share this process and its CPUs with the load generator.`,
		Example: `  trellis bench cluster --scenario latency,gossip
  trellis bench cluster --scenario handoff --keys 1000000 --json
  trellis bench cluster --scenario restart --keys 1000000 --data-dir /tmp/bench`,
		Args: noArgs,
	}
	f := cmd.Flags()
	f.StringSliceVar(&bc.Scenarios, "scenario", []string{"latency", "gossip"}, "scenarios to run: latency, gossip, handoff, restart")
	f.IntVar(&bc.Nodes, "nodes", 3, "storage nodes to start with")
	f.IntVar(&bc.Ops, "ops", 2000, "samples for latency and gossip")
	f.IntVar(&bc.Keys, "keys", 100000, "keys loaded for handoff and restart")
	f.IntVar(&bc.Traffic, "traffic", 4, "Redis-protocol client connections during a hand-off")
	f.StringVar(&bc.DataDir, "data-dir", "", "directory for the nodes' data (default: a temporary one for restart, none otherwise)")
	f.DurationVar(&bc.Timeout, "timeout", 10*time.Minute, "give up after this long")
	f.BoolVar(&asJSON, "json", false, "print one JSON object instead of the summary")
	f.StringVar(&cpuprof, "cpuprofile", "", "write a CPU profile of the whole process (nodes and load) to this file")
	// The storage nodes' own settings, with their usual names and defaults.
	nodeFlags := pflag.NewFlagSet("nodes", pflag.ContinueOnError)
	loader := newConfigLoader(cmdKVS, nodeFlags)
	nodeFlags.VisitAll(func(fl *pflag.Flag) {
		switch fl.Name {
		case "rf", "ack", "gossip-every", "ae-every", "shards", "log-level", "flush-every", "down-after":
			f.AddFlag(fl)
		}
	})
	// rf and down-after belong to the routing node; the loader of kvs does
	// not know them, so they get their own flags.
	rf := f.Int("rf", 3, "replication factor")
	downAfter := f.Duration("down-after", 5*time.Second, "how long a node may miss heartbeats before it is marked down")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loader.load()
		if err != nil {
			return err
		}
		cfg.RF, cfg.DownAfter = *rf, *downAfter
		if cfg.LogLevel == "info" && !nodeFlags.Changed("log-level") {
			cfg.LogLevel = "warn" // the nodes' info lines would drown the results
		}
		if bc.Nodes < 1 || bc.Ops < 1 || bc.Keys < 1 || bc.Traffic < 0 {
			return &exitError{code: exitUsage, err: errors.New("--nodes, --ops and --keys must be positive")}
		}
		for _, s := range bc.Scenarios {
			if !slices.Contains([]string{"latency", "gossip", "handoff", "restart"}, s) {
				return &exitError{code: exitUsage, err: fmt.Errorf("unknown scenario %q", s)}
			}
		}
		ctx, stop := shutdownOnSignal(cmd.Context(), cmd.ErrOrStderr())
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, bc.Timeout)
		defer cancel()
		if cpuprof != "" {
			stopProfile, err := startCPUProfile(cpuprof)
			if err != nil {
				return runtimeErr(err)
			}
			defer stopProfile()
		}
		log := newLogger(cfg, cmd.ErrOrStderr())
		res, err := runClusterBench(ctx, cfg, bc, log, cmd.ErrOrStderr())
		if err != nil {
			return runtimeErr(err)
		}
		if asJSON {
			return runtimeErr(writeJSON(cmd.OutOrStdout(), res))
		}
		printClusterBench(cmd.OutOrStdout(), res)
		return nil
	}
	return cmd
}

func runClusterBench(ctx context.Context, cfg config, bc clusterBenchConfig, log *slog.Logger, progress io.Writer) (clusterBenchResult, error) {
	res := clusterBenchResult{Nodes: bc.Nodes, RF: cfg.RF}
	say := func(format string, args ...any) { fmt.Fprintf(progress, format+"\n", args...) }
	for _, s := range bc.Scenarios {
		dir := bc.DataDir
		if s == "restart" && dir == "" {
			tmp, err := os.MkdirTemp("", "trellis-bench-")
			if err != nil {
				return res, err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		if dir != "" {
			dir = fmt.Sprintf("%s/%s-%d", dir, s, time.Now().UnixNano())
		}
		say("%s: starting %d storage nodes", s, bc.Nodes)
		lc, err := startLocalCluster(ctx, cfg, bc.Nodes, dir, log)
		if err != nil {
			return res, err
		}
		switch s {
		case "latency":
			var r latencyResult
			r, err = benchLatency(ctx, lc, bc.Ops)
			res.Latency = &r
		case "gossip":
			var r gossipResult
			r, err = benchGossip(ctx, lc, bc.Ops, cfg.GossipEvery)
			res.Gossip = &r
		case "handoff":
			var r handoffResult
			r, err = benchHandoff(ctx, lc, bc, say)
			r.AntiEntropyEverySecs = cfg.AEEvery.Seconds()
			res.Handoff = &r
		case "restart":
			var r restartResult
			r, err = benchRestart(ctx, lc, bc, say)
			res.Restart = &r
		}
		err = errors.Join(err, lc.close())
		if err != nil {
			return res, fmt.Errorf("%s: %w", s, err)
		}
	}
	return res, nil
}

// keysOf returns n keys "prefix:i" that node n replicates.
func keysOf(n *localNode, prefix string, count int) []string {
	var out []string
	for i := 0; len(out) < count; i++ {
		k := fmt.Sprintf("%s:%d", prefix, i)
		if n.node.Responsible([]byte(k)) {
			out = append(out, k)
		}
	}
	return out
}

func dialNode(ctx context.Context, n *localNode) (*client.Client, error) {
	return client.Dial(ctx, n.srv.Addr(), client.Options{Conns: 1, Name: "trellis-bench"})
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

func benchLatency(ctx context.Context, lc *localCluster, ops int) (latencyResult, error) {
	r := latencyResult{Ops: ops}
	n := lc.nodes[0]
	c, err := dialNode(ctx, n)
	if err != nil {
		return r, err
	}
	defer c.Close()
	keys := keysOf(n, "lat", ops)
	value := bytes.Repeat([]byte("v"), 32)
	measure := func(op func(key string) error) (benchmarks.Histogram, error) {
		var h benchmarks.Histogram
		for _, k := range keys[:min(200, len(keys))] { // warm up connections and code paths
			if err := op(k); err != nil {
				return h, err
			}
		}
		for _, k := range keys {
			t0 := time.Now()
			if err := op(k); err != nil {
				return h, err
			}
			h.Record(time.Since(t0))
		}
		return h, nil
	}
	local, quorum := c.WithAck(client.AckLocal), c.WithAck(client.AckQuorum)
	hl, err := measure(func(k string) error { return local.Set(ctx, k, value) })
	if err != nil {
		return r, err
	}
	hq, err := measure(func(k string) error { return quorum.Set(ctx, k, value) })
	if err != nil {
		return r, err
	}
	hg, err := measure(func(k string) error { _, err := c.GetBytes(ctx, k); return err })
	if err != nil {
		return r, err
	}
	r.LocalP50us, r.LocalP99us = us(hl.Quantile(0.5)), us(hl.Quantile(0.99))
	r.QuorumP50us, r.QuorumP99us = us(hq.Quantile(0.5)), us(hq.Quantile(0.99))
	r.GetP50us, r.GetP99us = us(hg.Quantile(0.5)), us(hg.Quantile(0.99))
	r.QuorumOverLocalP50 = r.QuorumP50us / r.LocalP50us

	cc, err := clusterclient.Dial(ctx, clusterclient.Options{Route: lc.routeAddrs(),
		Client: client.Options{Conns: 1, Name: "trellis-bench"}})
	if err != nil {
		return r, err
	}
	defer cc.Close()
	cl, cq := cc.WithAck(client.AckLocal), cc.WithAck(client.AckQuorum)
	if hl, err = measure(func(k string) error { return cl.Set(ctx, k, value) }); err != nil {
		return r, err
	}
	if hq, err = measure(func(k string) error { return cq.Set(ctx, k, value) }); err != nil {
		return r, err
	}
	r.ClusterLocalP50us, r.ClusterLocalP99us = us(hl.Quantile(0.5)), us(hl.Quantile(0.99))
	r.ClusterQuorumP50us, r.ClusterQuorumP99us = us(hq.Quantile(0.5)), us(hq.Quantile(0.99))
	r.ClusterQuorumOverLocalP50 = r.ClusterQuorumP50us / r.ClusterLocalP50us
	r.FanOuts = cc.Stats().FanOuts
	return r, nil
}

func benchGossip(ctx context.Context, lc *localCluster, writes int, every time.Duration) (gossipResult, error) {
	r := gossipResult{Writes: writes, GossipEveryMs: ms(every)}
	if len(lc.nodes) < 2 {
		return r, errors.New("gossip needs at least 2 nodes")
	}
	clients := map[string]*client.Client{}
	for _, n := range lc.nodes {
		c, err := dialNode(ctx, n)
		if err != nil {
			return r, err
		}
		defer c.Close()
		clients[n.srv.Addr()] = c
	}
	writer := lc.nodes[0]
	wc := clients[writer.srv.Addr()].WithAck(client.AckLocal)
	keys := keysOf(writer, "gossip", writes)
	const workers = 16 // writes overlap, so the run takes ~writes/16 gossip periods
	hists := make([]benchmarks.Histogram, workers)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := range workers {
		g.Go(func() error {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(keys) {
					return nil
				}
				k := keys[i]
				want := []byte(fmt.Sprintf("value-%d", i))
				if err := wc.Set(gctx, k, want); err != nil {
					return err
				}
				t0 := time.Now()
				for _, m := range writer.node.Replicas([]byte(k), nil) {
					if m.ID == writer.id {
						continue
					}
					for {
						got, err := clients[m.Addr].GetBytes(gctx, k)
						if err == nil && bytes.Equal(got, want) {
							break
						}
						if err != nil && !errors.Is(err, client.ErrNotFound) {
							return err
						}
						time.Sleep(100 * time.Microsecond)
					}
				}
				hists[w].Record(time.Since(t0))
			}
		})
	}
	if err := g.Wait(); err != nil {
		return r, err
	}
	var h benchmarks.Histogram
	for i := range hists {
		h.Merge(&hists[i])
	}
	r.P50ms, r.P99ms, r.MaxMs = ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Max())
	r.P99InPeriods = r.P99ms / r.GossipEveryMs
	return r, nil
}

// load writes keys "k:i" = "v:i" for i in [0, count) through the nodes'
// native ports, each key to a node that replicates it, acknowledged
// locally (gossip carries them to the other replicas), and waits until
// every replica holds every key.
func load(ctx context.Context, lc *localCluster, count, rf int) error {
	clients := make([]*client.Client, len(lc.nodes))
	for i, n := range lc.nodes {
		c, err := client.Dial(ctx, n.srv.Addr(), client.Options{Conns: 4, Name: "trellis-bench"})
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c.WithAck(client.AckLocal)
	}
	err := inRanges(ctx, count, func() func(ctx context.Context, start, end int) error {
		bs := make([]*client.Batch, len(clients))
		for i, c := range clients {
			bs[i] = c.Batch()
		}
		return func(ctx context.Context, start, end int) error {
			for i := start; i < end; i++ {
				k := fmt.Sprintf("k:%d", i)
				for j, n := range lc.nodes {
					if n.node.Responsible([]byte(k)) {
						bs[j].Set([]byte(k), []byte(fmt.Sprintf("v:%d", i)))
						break
					}
				}
			}
			for _, b := range bs {
				res, err := b.Exec(ctx)
				if err != nil {
					return err
				}
				for _, r := range res {
					if r.Err != nil {
						return r.Err
					}
				}
				b.Reset()
			}
			return nil
		}
	})
	if err != nil {
		return err
	}
	want := count * min(rf, len(lc.nodes))
	for lc.copies() < want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d copies (have %d): %w", want, lc.copies(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil
}

func benchHandoff(ctx context.Context, lc *localCluster, bc clusterBenchConfig, say func(string, ...any)) (handoffResult, error) {
	r := handoffResult{Keys: bc.Keys}
	rf := lc.cfg.RF
	say("handoff: loading %d keys", bc.Keys)
	t0 := time.Now()
	if err := load(ctx, lc, bc.Keys, rf); err != nil {
		return r, err
	}
	r.LoadSeconds = time.Since(t0).Seconds()

	// Clients read and write loaded keys through every node's Redis port
	// while the new node joins; a write sets the value the key already has,
	// so every read knows what it must see.
	tctx, stopTraffic := context.WithCancel(ctx)
	var ops, errs atomic.Int64
	var mu sync.Mutex
	note := func(e string) {
		errs.Add(1)
		mu.Lock()
		if len(r.FirstErrors) < 5 {
			r.FirstErrors = append(r.FirstErrors, e)
		}
		mu.Unlock()
	}
	var tg errgroup.Group
	for i := range bc.Traffic {
		addr := lc.nodes[i%len(lc.nodes)].srv.RESPAddr()
		tg.Go(func() error {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			rc, err := dialRESP(addr)
			if err != nil {
				return err
			}
			defer rc.Close()
			for tctx.Err() == nil {
				k := rng.IntN(bc.Keys)
				key, val := fmt.Sprintf("k:%d", k), fmt.Sprintf("v:%d", k)
				var reply resp.Reply
				if rng.IntN(2) == 0 {
					reply, err = rc.do("SET", key, val)
					if err == nil && reply.Kind != resp.KindSimple {
						note(fmt.Sprintf("SET %s: %s", key, reply.Str))
					}
				} else {
					reply, err = rc.do("GET", key)
					if err == nil && string(reply.Str) != val {
						note(fmt.Sprintf("GET %s: %q", key, reply.Str))
					}
				}
				if err != nil {
					note(err.Error())
					if rc, err = dialRESP(addr); err != nil {
						return err
					}
				}
				ops.Add(1)
			}
			return nil
		})
	}

	say("handoff: starting node %d", len(lc.nodes)+1)
	t0 = time.Now()
	n, err := lc.add(ctx, "")
	if err != nil {
		stopTraffic()
		return r, errors.Join(err, tg.Wait())
	}
	err = lc.waitActive(ctx, len(lc.nodes))
	r.ActiveSeconds = time.Since(t0).Seconds()
	say("handoff: node %d active after %.1f s; waiting for the old owners' hand-off", n.id, r.ActiveSeconds)
	want := bc.Keys * min(rf, len(lc.nodes))
	for err == nil && lc.copies() != want {
		select {
		case <-ctx.Done():
			err = fmt.Errorf("waiting for %d copies (have %d): %w", want, lc.copies(), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	r.HandoffDoneSeconds = time.Since(t0).Seconds()
	stopTraffic()
	err = errors.Join(err, tg.Wait())
	r.ClientOps, r.ClientErrors = ops.Load(), errs.Load()
	if err != nil {
		return r, err
	}
	// Every key, read back through a cluster client in pipelined batches
	// (a million one-at-a-time reads would take longer than the hand-off).
	say("handoff: reading every key back")
	r.FinalCheckMismatches, err = readBack(ctx, lc, bc.Keys)
	return r, err
}

// readBack reads keys k:0 to k:count-1 through a cluster client, in batches
// from several goroutines, and returns how many did not hold v:i.
func readBack(ctx context.Context, lc *localCluster, count int) (int, error) {
	cc, err := clusterclient.Dial(ctx, clusterclient.Options{Route: lc.routeAddrs(),
		Client: client.Options{Conns: 4, Name: "trellis-bench"}})
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	var bad atomic.Int64
	err = inRanges(ctx, count, func() func(ctx context.Context, start, end int) error {
		b := cc.Batch()
		return func(ctx context.Context, start, end int) error {
			b.Reset()
			for i := start; i < end; i++ {
				b.Get([]byte(fmt.Sprintf("k:%d", i)))
			}
			res, err := b.Exec(ctx)
			if err != nil {
				return err
			}
			for j, r := range res {
				if r.Err != nil {
					bad.Add(1)
					continue
				}
				_, _, v, err := lattice.ParseLWW(r.Value)
				if err != nil || string(v) != fmt.Sprintf("v:%d", start+j) {
					bad.Add(1)
				}
			}
			return nil
		}
	})
	return int(bad.Load()), err
}

// inRanges splits keys 0 to count-1 into ranges of 1000 and hands them to 8
// workers; each worker gets its function from worker (its own batches) and
// calls it with each range it takes. The first error stops them all.
func inRanges(ctx context.Context, count int, worker func() func(ctx context.Context, start, end int) error) error {
	const batch = 1000
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for range 8 {
		run := worker()
		g.Go(func() error {
			for {
				start := int(next.Add(batch)) - batch
				if start >= count {
					return nil
				}
				if err := run(gctx, start, min(start+batch, count)); err != nil {
					return err
				}
			}
		})
	}
	return g.Wait()
}

func benchRestart(ctx context.Context, lc *localCluster, bc clusterBenchConfig, say func(string, ...any)) (restartResult, error) {
	r := restartResult{Keys: bc.Keys}
	say("restart: loading %d keys", bc.Keys)
	if err := load(ctx, lc, bc.Keys, lc.cfg.RF); err != nil {
		return r, err
	}
	victim := lc.nodes[len(lc.nodes)-1]
	for victim.store.UnflushedWrites() > 0 { // what a clean stop writes anyway
		time.Sleep(10 * time.Millisecond)
	}
	r.VictimKeys = victim.store.Len()
	say("restart: stopping node %d (%d keys)", victim.id, r.VictimKeys)
	if err := lc.remove(victim); err != nil {
		return r, err
	}
	t0 := time.Now()
	n, err := lc.add(ctx, victim.dir)
	if err != nil {
		return r, err
	}
	r.ServingSeconds = time.Since(t0).Seconds()
	for n.node.Status() != "active" || n.node.Epoch() < victim.node.Epoch()+2 {
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("waiting for the restarted node to be active: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	r.ActiveSeconds = time.Since(t0).Seconds()
	r.HeldKeys = n.store.Len()
	return r, nil
}

// respConn is one Redis-protocol connection, one command at a time.
type respConn struct {
	c       net.Conn
	out, in []byte
}

func dialRESP(addr string) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &respConn{c: c}, nil
}

func (rc *respConn) Close() error { return rc.c.Close() }

// do sends a command and returns its reply, valid until the next call.
func (rc *respConn) do(args ...string) (resp.Reply, error) {
	rc.out = resp.AppendCommandString(rc.out[:0], args...)
	_ = rc.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := rc.c.Write(rc.out); err != nil {
		return resp.Reply{}, err
	}
	r, in, err := resp.ReadReply(rc.c, rc.in, resp.Limits{})
	rc.in = in
	return r, err
}

func printClusterBench(w io.Writer, r clusterBenchResult) {
	fmt.Fprintf(w, "cluster of %d storage nodes, replication factor %d, in one process\n", r.Nodes, r.RF)
	if l := r.Latency; l != nil {
		fmt.Fprintf(w, "latency (%d sequential requests each, one client):\n", l.Ops)
		fmt.Fprintf(w, "  SET ack=local   p50 %7.1f µs  p99 %7.1f µs\n", l.LocalP50us, l.LocalP99us)
		fmt.Fprintf(w, "  SET ack=quorum  p50 %7.1f µs  p99 %7.1f µs  (p50 %.2f× local)\n", l.QuorumP50us, l.QuorumP99us, l.QuorumOverLocalP50)
		fmt.Fprintf(w, "  GET             p50 %7.1f µs  p99 %7.1f µs\n", l.GetP50us, l.GetP99us)
		fmt.Fprintf(w, "the same keys through a cluster client (each to its own replicas):\n")
		fmt.Fprintf(w, "  SET ack=local   p50 %7.1f µs  p99 %7.1f µs\n", l.ClusterLocalP50us, l.ClusterLocalP99us)
		fmt.Fprintf(w, "  SET ack=quorum  p50 %7.1f µs  p99 %7.1f µs  (p50 %.2f× local; %d by fan-out)\n",
			l.ClusterQuorumP50us, l.ClusterQuorumP99us, l.ClusterQuorumOverLocalP50, l.FanOuts)
	}
	if g := r.Gossip; g != nil {
		fmt.Fprintf(w, "gossip convergence (%d locally acknowledged writes, period %.0f ms):\n", g.Writes, g.GossipEveryMs)
		fmt.Fprintf(w, "  p50 %.1f ms  p99 %.1f ms (%.2f periods)  max %.1f ms\n", g.P50ms, g.P99ms, g.P99InPeriods, g.MaxMs)
	}
	if h := r.Handoff; h != nil {
		fmt.Fprintf(w, "hand-off of %d keys to a joining node (anti-entropy every %g s):\n", h.Keys, h.AntiEntropyEverySecs)
		fmt.Fprintf(w, "  loaded in %.1f s; joining node active after %.1f s; old copies handed off after %.1f s\n",
			h.LoadSeconds, h.ActiveSeconds, h.HandoffDoneSeconds)
		fmt.Fprintf(w, "  client operations meanwhile %d, errors %d; keys wrong afterwards %d\n", h.ClientOps, h.ClientErrors, h.FinalCheckMismatches)
		for _, e := range h.FirstErrors {
			fmt.Fprintf(w, "    %s\n", strings.TrimSpace(e))
		}
	}
	if s := r.Restart; s != nil {
		fmt.Fprintf(w, "restart of a node holding %d keys: serving after %.2f s, active after %.2f s (holds %d keys)\n",
			s.VictimKeys, s.ServingSeconds, s.ActiveSeconds, s.HeldKeys)
	}
}
