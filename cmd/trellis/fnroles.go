package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/clusterclient"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/executor/remote"
	"github.com/trellisdb/trellis/executor/wasm"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
	"github.com/trellisdb/trellis/wireserver"
)

// callsPerConn is how many function calls of one client connection a
// coordinator runs at once (each blocks for its call's length).
const callsPerConn = 64

func newCoordinatorCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "coordinator",
		Short: "Run a coordinator of functions and DAGs, apart from the storage nodes",
		Long: `Run a coordinator: it takes registrations and calls of functions and DAGs from
clients, keeps the definitions in the KVS (the reserved namespace, written
with the cluster's system token), and places every function of a call on an
executor. It keeps no state of its own: run as many as you like. Executors
find it through their --coordinator setting.

The KVS is one storage node (--kvs, e.g. a "trellis up") or a cluster
(--route). The storage nodes and this coordinator must share the system
token (TRELLIS_SYSTEM_TOKEN).

Once it serves, it prints:

  trellis <version> coordinator
    native  <address clients and executors use>`,
		Example: `  TRELLIS_SYSTEM_TOKEN=s3cret trellis up
  TRELLIS_SYSTEM_TOKEN=s3cret trellis coordinator --addr 127.0.0.1:7720 --kvs 127.0.0.1:7700
  trellis executor --addr 127.0.0.1:7730 --kvs 127.0.0.1:7700 --coordinator 127.0.0.1:7720
  trellis dag call chain --arg 3 --addr 127.0.0.1:7720`,
		Args: noArgs,
	}
	loader := newConfigLoader(cmdCoordinator, cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loader.load()
		if err != nil {
			return err
		}
		if err := checkRoleConfig(cfg); err != nil {
			return err
		}
		ctx, stop := shutdownOnSignal(cmd.Context(), s.err)
		defer stop()
		return runtimeErr(runFunctionRole(ctx, cfg, s, true))
	}
	return cmd
}

func newExecutorCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "executor",
		Short: "Run an executor of functions, apart from the storage nodes",
		Long: `Run an executor: it runs the functions coordinators place on it (native ones
built in, WebAssembly ones from the KVS, compiled once), reading keys
through its cache, which the storage node keeps fresh, and reports its load
and cached keys to the coordinators given by --coordinator.

The KVS is one storage node (--kvs) or a cluster (--route).

Once it serves, it prints:

  trellis <version> executor
    native  <address coordinators and executors use>`,
		Example: `  trellis executor --addr 127.0.0.1:7730 --kvs 127.0.0.1:7700 --coordinator 127.0.0.1:7720`,
		Args:    noArgs,
	}
	loader := newConfigLoader(cmdExecutor, cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loader.load()
		if err != nil {
			return err
		}
		if err := checkRoleConfig(cfg); err != nil {
			return err
		}
		if len(splitAddrs(cfg.Coordinators)) == 0 {
			return &configError{"executor needs the coordinators' addresses (--coordinator or TRELLIS_COORDINATOR)"}
		}
		ctx, stop := shutdownOnSignal(cmd.Context(), s.err)
		defer stop()
		return runtimeErr(runFunctionRole(ctx, cfg, s, false))
	}
	return cmd
}

// checkRoleConfig checks the settings coordinators and executors share.
func checkRoleConfig(cfg config) error {
	hasKVS, hasRoute := cfg.KVS != "", strings.TrimSpace(cfg.Route) != ""
	switch {
	case hasKVS == hasRoute:
		return &configError{"give either kvs (one storage node's address) or route (a cluster's routing nodes), not both or neither"}
	case cfg.Addr == "off":
		return &configError{`addr "off": a coordinator or executor must listen`}
	}
	return needAdvertise("addr", cfg.Addr, cfg.AdvertiseAddr)
}

// roleStore is the KVS a coordinator or executor uses.
type roleStore struct {
	kv remote.KV
	// nodes returns the storage nodes an executor's cache watches at.
	nodes func() []string
	close func() error
}

// newRoleStore connects to the KVS cfg names, presenting the system token.
func newRoleStore(ctx context.Context, cfg config, name string) (*roleStore, error) {
	opts := client.Options{Name: name, Token: cfg.SystemToken}
	if cfg.KVS != "" {
		c, err := client.Dial(ctx, cfg.KVS, opts)
		if err != nil {
			return nil, fmt.Errorf("storage node %s: %w", cfg.KVS, err)
		}
		return &roleStore{kv: remote.ClientKV(c), nodes: func() []string { return []string{cfg.KVS} }, close: c.Close}, nil
	}
	c, err := clusterclient.Dial(ctx, clusterclient.Options{Route: splitAddrs(cfg.Route), Client: opts})
	if err != nil {
		return nil, fmt.Errorf("cluster at %s: %w", cfg.Route, err)
	}
	return &roleStore{kv: remote.ClusterKV(c), nodes: func() []string { return clusterNodes(c.State()) }, close: c.Close}, nil
}

// clusterNodes returns the native addresses of the members that may hold
// keys (all but the down ones).
func clusterNodes(st route.State) []string {
	var out []string
	for _, m := range st.Members {
		if m.State != route.Down {
			out = append(out, m.Addr)
		}
	}
	return out
}

// dialWatcher opens a watch connection to a storage node.
func dialWatcher(ctx context.Context, addr string) (*client.Watcher, error) {
	return client.DialWatcher(ctx, addr, client.Options{Name: "trellis-executor-watch"})
}

// runFunctionRole runs a coordinator (coord) or an executor until ctx ends.
func runFunctionRole(ctx context.Context, cfg config, s streams, coord bool) error {
	role := "executor"
	if coord {
		role = "coordinator"
	}
	log := newLogger(cfg, s.err).With("role", role)
	rs, err := newRoleStore(ctx, cfg, "trellis-"+role)
	if err != nil {
		return err
	}
	defer rs.close()

	h := &remote.Handler{Version: buildVersion()}
	// An executor's requests are deliveries, answered at once: one at a time
	// on the connection's goroutine. A coordinator's calls block, so they
	// run side by side; the results and reports from executors do not, and
	// are answered by the reading goroutine.
	scfg := wireserver.Config{Addr: cfg.Addr, Logger: log}
	if coord {
		scfg.Concurrency = callsPerConn
		scfg.Inline = func(op wire.Op) bool { return op.IsExec() || op == wire.OpHello || op == wire.OpPing }
	}
	srv, err := wireserver.New(scfg, h)
	if err != nil {
		return err
	}
	network := remote.NewNetwork(client.Options{Name: "trellis-" + role})
	defer network.Close()

	var httpLn net.Listener
	if cfg.HTTPAddr != "" {
		if httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("http listener on %s: %w", cfg.HTTPAddr, err)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	var ready atomic.Bool
	if httpLn != nil {
		h := newHTTPHandler(func() bool { return ready.Load() && gctx.Err() == nil })
		g.Go(func() error { return serveHTTP(gctx, httpLn, h) })
	}
	// fail stops what started and returns err.
	fail := func(err error) error {
		cancel()
		return errors.Join(err, ignoreCanceled(g.Wait()))
	}
	g.Go(func() error { return srv.Run(gctx) })
	select {
	case <-srv.Ready():
	case <-gctx.Done():
		return ignoreCanceled(g.Wait())
	}
	addr := srv.Addr()
	if cfg.AdvertiseAddr != "" {
		addr = cfg.AdvertiseAddr
	}
	wcfg := wasm.Config{}
	if cfg.DataDir != "" {
		wcfg.CacheDir = filepath.Join(cfg.DataDir, "wasm-cache")
	}
	rt, err := wasm.NewRuntime(ctx, wcfg)
	if err != nil {
		return fail(fmt.Errorf("WebAssembly runtime: %w", err))
	}
	defer rt.Close(context.Background())
	id := rand.Uint64() | 1
	if coord {
		c, err := executor.NewCoordinator(executor.CoordinatorConfig{
			Addr: addr, ID: id, KV: rs.kv, Network: network, Logger: log,
			Validate: func(ctx context.Context, code []byte) error {
				m, err := rt.Compile(ctx, code)
				if err == nil {
					_ = m.Close(ctx)
				}
				return err
			},
		})
		if err != nil {
			return fail(err)
		}
		h.Set(c, nil)
		g.Go(func() error { return c.Run(gctx) })
	} else {
		kv := &remote.WatchedKV{KV: rs.kv, Nodes: rs.nodes, Dial: dialWatcher, Logger: log, Done: ctx.Done()}
		defer kv.Close()
		e, err := executor.New(executor.Config{
			Addr: addr, ID: id, KV: kv, Network: network, Natives: executor.Builtins(),
			Wasm:    &wasmRuntime{rt: rt, mods: make(map[[32]byte]*wasm.Module)},
			Workers: cfg.Workers, CacheBytes: int64(cfg.CacheBytes),
			Coordinators: splitAddrs(cfg.Coordinators), Logger: log,
		})
		if err != nil {
			return fail(err)
		}
		h.Set(nil, e)
		g.Go(func() error { return e.Run(gctx) })
	}
	ready.Store(true)
	printRoleBanner(s.out, role, addr)
	log.Info(role+" ready", "native", addr, "kvs", cfg.KVS, "route", cfg.Route)
	return ignoreCanceled(g.Wait())
}

func printRoleBanner(w io.Writer, role, addr string) {
	fmt.Fprintf(w, "trellis %s %s\n  native  %s\n", buildVersion(), role, addr)
}
