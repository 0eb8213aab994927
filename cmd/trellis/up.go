package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/kvs"
)

func newUpCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run a Trellis node until SIGINT or SIGTERM",
		Long: `Run a Trellis node in this process: today a storage node serving the native
protocol and the Redis protocol. With no settings it listens on loopback ports
and persists nothing.

Once the node is listening, up prints to stdout:

  trellis <version> up: node <id>
    native  <native address>
    redis   <Redis protocol address>
    http    <HTTP address>          (only with --http-addr)
  try: redis-cli -p <port> set hello world   or   trellis cli --addr <address>

A listener set to "off" has no line. Logs go to stderr. SIGINT or SIGTERM
stops the node (exit status 0); a second signal exits at once.`,
		Example: `  trellis up
  trellis up --addr 127.0.0.1:0 --resp-addr off     # any free port, no Redis port
  trellis up --data-dir /var/lib/trellis --http-addr 127.0.0.1:8080
  TRELLIS_SHARDS=64 trellis up --config trellis.yaml`,
		Args: noArgs,
	}
	loader := newConfigLoader(cmdUp, cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loader.load()
		if err != nil {
			return err
		}
		ctx, stop := shutdownOnSignal(cmd.Context(), s.err)
		defer stop()
		return runtimeErr(runUp(ctx, cfg, s))
	}
	return cmd
}

// shutdownOnSignal returns a context cancelled by the first SIGINT or
// SIGTERM; a second one exits the process at once. stop releases the
// signals and the watching goroutine.
func shutdownOnSignal(parent context.Context, stderr io.Writer) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-sigs:
			cancel()
		case <-done:
			return
		}
		select {
		case sig := <-sigs:
			fmt.Fprintf(stderr, "trellis: second %v, exiting now\n", sig)
			os.Exit(exitFailure)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		<-exited
		cancel()
	}
}

// newLogger returns the logger that cfg asks for, writing to w.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slogLevel(cfg.LogLevel)}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// nodeConfigs maps cfg onto the kvs package's configurations. Invalid
// combinations come back as a *configError.
func nodeConfigs(cfg config, log *slog.Logger) (kvs.StoreConfig, kvs.ServerConfig, error) {
	sc := kvs.StoreConfig{
		NodeID:         cfg.NodeID,
		Shards:         cfg.Shards,
		VNodes:         cfg.VNodes,
		MaxKey:         cfg.MaxKey,
		MaxValue:       cfg.MaxValue,
		TombstoneGrace: cfg.TombstoneGrace,
		FlushEvery:     cfg.FlushEvery,
		// Collect at least twice per grace period, so a short grace is
		// honoured.
		CollectEvery: min(kvs.DefaultCollectEvery, max(cfg.TombstoneGrace/2, 1)),
	}
	vc := kvs.ServerConfig{
		Addr:     cfg.Addr,
		RESPAddr: cfg.RESPAddr,
		MaxConns: cfg.MaxConns,
		MaxFrame: cfg.MaxFrame,
		Loops:    cfg.Loops,
		Version:  buildVersion(),
		Logger:   log,
		// Function and DAG definitions: written by the coordinator in
		// "up"'s process, or by coordinators that present the token.
		Reserved:    executor.Reserved,
		SystemToken: cfg.SystemToken,
	}
	if cfg.MaxMemory > 0 && cfg.DataDir == "" {
		return sc, vc, &configError{"invalid configuration: max-memory needs data-dir (keys that leave memory go to the disk tier in the data directory)"}
	}
	if err := sc.Validate(); err != nil {
		return sc, vc, &configError{fmt.Sprintf("invalid configuration: %v", err)}
	}
	if err := vc.Validate(); err != nil {
		return sc, vc, &configError{fmt.Sprintf("invalid configuration: %v", err)}
	}
	// Set after Validate: the disk it needs is opened later, and NewStore
	// validates the two together.
	sc.MemoryBudget = int64(cfg.MaxMemory)
	return sc, vc, nil
}

// runUp runs a storage node with cfg until ctx is cancelled or a component
// fails. It prints the banner to s.out once every listener accepts
// connections.
func runUp(ctx context.Context, cfg config, s streams) error {
	if cfg.StorageNodes > 0 {
		return runUpCluster(ctx, cfg, s)
	}
	log := newLogger(cfg, s.err)
	storeCfg, srvCfg, err := nodeConfigs(cfg, log)
	if err != nil {
		return err
	}
	storeCfg.Logger = log
	if cfg.DataDir != "" {
		if storeCfg.NodeID, err = dataDirNodeID(cfg.DataDir, cfg.NodeID, log); err != nil {
			return err
		}
		d, err := openDisk(cfg.DataDir, log)
		if err != nil {
			return err
		}
		defer func() {
			if cerr := d.db.Close(); cerr != nil {
				log.Error("closing the disk tier", "err", cerr)
			}
		}()
		storeCfg.Disk = d
	}
	store, err := kvs.NewStore(storeCfg)
	if err != nil {
		return err
	}
	fns, err := newFunctionRoles(ctx, store, cfg, log)
	if err != nil {
		return err
	}
	srvCfg.Functions = fns.coord
	srv, err := kvs.NewServer(store, srvCfg)
	if err != nil {
		_ = fns.rt.Close(ctx)
		return err
	}
	var httpLn net.Listener
	if cfg.HTTPAddr != "" {
		if httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return fmt.Errorf("http listener on %s: %w", cfg.HTTPAddr, err)
		}
	}

	var ready atomic.Bool
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Run(gctx) })
	g.Go(func() error { return fns.run(gctx) })
	if httpLn != nil {
		h := newHTTPHandler(func() bool { return ready.Load() && gctx.Err() == nil })
		g.Go(func() error { return serveHTTP(gctx, httpLn, h) })
	}
	select {
	case <-srv.Ready():
		ready.Store(true)
		var httpAddr string
		if httpLn != nil {
			httpAddr = httpLn.Addr().String()
		}
		printBanner(s.out, buildVersion(), store.NodeID(), srv.Addr(), srv.RESPAddr(), httpAddr)
		attrs := []any{"version", buildVersion(), "node", store.NodeID(), "shards", storeCfg.Shards}
		for _, kv := range [][2]string{{"native", srv.Addr()}, {"resp", srv.RESPAddr()}, {"http", httpAddr}, {"data_dir", cfg.DataDir}} {
			if kv[1] != "" {
				attrs = append(attrs, kv[0], kv[1])
			}
		}
		log.Info("node ready", attrs...)
	case <-gctx.Done():
	}
	g.Go(func() error {
		<-gctx.Done()
		if ctx.Err() != nil {
			log.Info("shutting down")
		}
		return nil
	})
	err = g.Wait()
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("node stopped", "node", store.NodeID())
	return nil
}

// printBanner writes the lines that tell a user (and tests) where the node
// listens. An empty address is a listener that is off.
func printBanner(w io.Writer, version string, node uint64, native, redis, http string) {
	fmt.Fprintf(w, "trellis %s up: node %d\n", version, node)
	if native != "" {
		fmt.Fprintf(w, "  native  %s\n", native)
	}
	if redis != "" {
		fmt.Fprintf(w, "  redis   %s\n", redis)
	}
	if http != "" {
		fmt.Fprintf(w, "  http    %s\n", http)
	}
	var tries []string
	if redis != "" {
		tries = append(tries, redisCLICommand(redis)+" set hello world")
	}
	if native != "" {
		tries = append(tries, "trellis cli --addr "+native)
	}
	if len(tries) > 0 {
		fmt.Fprintf(w, "try: %s\n", joinTries(tries))
	}
}

func joinTries(t []string) string {
	if len(t) == 2 {
		return t[0] + "   or   " + t[1]
	}
	return t[0]
}

// redisCLICommand returns the redis-cli invocation that reaches addr: just
// the port when redis-cli's default host (127.0.0.1) reaches it.
func redisCLICommand(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "redis-cli"
	}
	ip := net.ParseIP(host)
	if ip != nil && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.IsUnspecified()) {
		return "redis-cli -p " + port
	}
	return "redis-cli -h " + host + " -p " + port
}
