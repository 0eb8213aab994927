package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
	"github.com/trellisdb/trellis/wireserver"
)

func newRouteCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "route",
		Short: "Run a routing node (the cluster's Raft-replicated metadata)",
		Long: `Run a routing node: a member of the Raft group that holds the cluster's
state (its storage nodes, the ring epoch, replication factors) and answers
storage nodes and clients. The first routing node forms the group; others
join it with --join. State lives under --data-dir (without one, in a
temporary directory removed on exit).

Once it serves, it prints:

  trellis <version> route: node r<id>
    native  <address storage nodes and clients use>
    raft    <Raft address>`,
		Example: `  trellis route --addr 127.0.0.1:7710 --raft-addr 127.0.0.1:7810 --data-dir /var/lib/trellis/r1
  trellis route --addr 127.0.0.1:7711 --raft-addr 127.0.0.1:7811 --data-dir /var/lib/trellis/r2 --join 127.0.0.1:7710`,
		Args: noArgs,
	}
	loader := newConfigLoader(cmdRoute, cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loader.load()
		if err != nil {
			return err
		}
		if err := needAdvertise("raft-addr", cfg.RaftAddr, cfg.AdvertiseRaftAddr); err != nil {
			return err
		}
		ctx, stop := shutdownOnSignal(cmd.Context(), s.err)
		defer stop()
		return runtimeErr(runRoute(ctx, cfg, s))
	}
	return cmd
}

func newKVSCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kvs",
		Short: "Run a storage node that belongs to a cluster",
		Long: `Run a storage node of a cluster: it registers with the routing nodes given by
--route, replicates every key it is responsible for with the cluster's other
replicas, and serves the native protocol and the Redis protocol (any key, on
either: it forwards what it does not hold). With --data-dir its keys survive
restarts.

Once it serves, it prints:

  trellis <version> kvs: node <id>
    native  <address>
    redis   <address>`,
		Example: `  trellis kvs --addr 127.0.0.1:7701 --resp-addr 127.0.0.1:7380 --route 127.0.0.1:7710 --data-dir /var/lib/trellis/n1`,
		Args:    noArgs,
	}
	loader := newConfigLoader(cmdKVS, cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := loader.load()
		if err != nil {
			return err
		}
		if strings.TrimSpace(cfg.Route) == "" {
			return &configError{"kvs needs the routing nodes' addresses (--route or TRELLIS_ROUTE)"}
		}
		if err := needAdvertise("addr", cfg.Addr, cfg.AdvertiseAddr); err != nil {
			return err
		}
		if err := needAdvertise("resp-addr", cfg.RESPAddr, cfg.AdvertiseRESPAddr); err != nil {
			return err
		}
		ctx, stop := shutdownOnSignal(cmd.Context(), s.err)
		defer stop()
		return runtimeErr(runKVS(ctx, cfg, s))
	}
	return cmd
}

// routeNode is a running routing node.
type routeNode struct {
	id   string
	node *route.Node
	svc  *route.Service
	srv  *wireserver.Server
}

// startRouteNode starts a routing node (Raft, its service, its listener) in
// g. Without dataDir its state lives in a temporary directory removed when
// the node stops. With join, it asks that routing node's group to take it
// in; otherwise it forms a group (or restarts its own).
func startRouteNode(ctx context.Context, g *errgroup.Group, cfg config, dataDir, addr, raftAddr, join string, log *slog.Logger) (*routeNode, error) {
	var cleanup func()
	if dataDir == "" {
		tmp, err := os.MkdirTemp("", "trellis-route-")
		if err != nil {
			return nil, err
		}
		dataDir, cleanup = tmp, func() { os.RemoveAll(tmp) }
	}
	id, err := dataDirNodeID(dataDir, cfg.NodeID, log)
	if err != nil {
		return nil, err
	}
	rn := &routeNode{id: "r" + strconv.FormatUint(id, 10)}
	rn.node, err = route.NewNode(route.Config{
		ID: rn.id, RaftAddr: raftAddr, AdvertiseAddr: cfg.AdvertiseRaftAddr, DataDir: filepath.Join(dataDir, "route"),
		Bootstrap: join == "", DefaultRF: cfg.RF, Logger: log.With("component", "raft"),
	})
	if err != nil {
		if cleanup != nil {
			cleanup()
		}
		return nil, fmt.Errorf("routing node: %w", err)
	}
	rn.svc, err = route.NewService(route.ServiceConfig{Node: rn.node, DownAfter: cfg.DownAfter, Logger: log})
	if err == nil {
		rn.srv, err = wireserver.New(wireserver.Config{Addr: addr, Logger: log}, rn.svc)
	}
	if err != nil {
		rn.node.Close()
		if cleanup != nil {
			cleanup()
		}
		return nil, err
	}
	g.Go(func() error {
		defer func() {
			rn.node.Close()
			if cleanup != nil {
				cleanup()
			}
		}()
		sg, sctx := errgroup.WithContext(ctx)
		sg.Go(func() error { return rn.srv.Run(sctx) })
		sg.Go(func() error { return rn.svc.Run(sctx) })
		return sg.Wait()
	})
	select {
	case <-rn.srv.Ready():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if join != "" {
		rc := route.NewClient([]string{join}, client.Options{Conns: 1})
		defer rc.Close()
		if err := rc.Join(ctx, rn.id, rn.node.RaftAddr()); err != nil {
			return nil, fmt.Errorf("joining the routing group at %s: %w", join, err)
		}
	}
	return rn, nil
}

func runRoute(ctx context.Context, cfg config, s streams) error {
	log := newLogger(cfg, s.err)
	g, gctx := errgroup.WithContext(ctx)
	rn, err := startRouteNode(gctx, g, cfg, cfg.DataDir, cfg.Addr, cfg.RaftAddr, cfg.Join, log)
	if err != nil {
		return errors.Join(err, g.Wait())
	}
	fmt.Fprintf(s.out, "trellis %s route: node %s\n  native  %s\n  raft    %s\n", buildVersion(), rn.id, rn.srv.Addr(), rn.node.RaftAddr())
	log.Info("routing node ready", "id", rn.id, "native", rn.srv.Addr(), "raft", rn.node.RaftAddr())
	return ignoreCanceled(g.Wait())
}

func ignoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// storageNode is a storage node being built or running: its store, server
// and, in a cluster, its cluster membership.
type storageNode struct {
	id        uint64
	store     *kvs.Store
	srv       *kvs.Server
	node      *cluster.Node
	transport *cluster.TCPTransport
	router    *route.Client
	closeDisk func()
	// adv and advRESP are the addresses the node registers, when they
	// differ from where it listens.
	adv, advRESP string
}

func (n *storageNode) advertise(listen string) string {
	if n.adv != "" {
		return n.adv
	}
	return listen
}

func (n *storageNode) advertiseRESP(listen string) string {
	if n.advRESP != "" && listen != "" {
		return n.advRESP
	}
	return listen
}

// needAdvertise refuses a cluster listener bound to every interface
// (0.0.0.0, [::], or no host) without an address to advertise in its place:
// other machines cannot reach "0.0.0.0".
func needAdvertise(key, listen, adv string) error {
	if adv != "" || listen == kvs.AddrOff {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return nil // (the setting's own check reports it)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return &configError{fmt.Sprintf("%s %s listens on every interface: set advertise-%s to the address other nodes reach it at", key, listen, key)}
	}
	return nil
}

// buildStorageNode builds a storage node from cfg with its own data
// directory and listen addresses. With routeAddrs it is a cluster member.
// With fns, its native port also serves function and DAG requests.
func buildStorageNode(cfg config, dataDir, addr, respAddr string, routeAddrs []string, fns kvs.Functions, log *slog.Logger) (*storageNode, error) {
	storeCfg, srvCfg, err := nodeConfigs(cfg, log)
	if err != nil {
		return nil, err
	}
	if fns != nil {
		srvCfg.Functions = fns
	}
	srvCfg.Addr, srvCfg.RESPAddr = addr, respAddr
	storeCfg.Logger = log
	n := &storageNode{closeDisk: func() {}}
	if dataDir != "" {
		if storeCfg.NodeID, err = dataDirNodeID(dataDir, cfg.NodeID, log); err != nil {
			return nil, err
		}
		d, err := openDisk(dataDir, log)
		if err != nil {
			return nil, err
		}
		n.closeDisk = func() {
			if err := d.db.Close(); err != nil {
				log.Error("closing the disk tier", "err", err)
			}
		}
		storeCfg.Disk = d
	} else if storeCfg.NodeID == 0 {
		storeCfg.NodeID = rand.Uint64() | 1
	}
	n.id = storeCfg.NodeID
	n.adv, n.advRESP = cfg.AdvertiseAddr, cfg.AdvertiseRESPAddr
	if n.store, err = kvs.NewStore(storeCfg); err != nil {
		n.closeDisk()
		return nil, err
	}
	if len(routeAddrs) > 0 {
		n.transport = cluster.NewTCPTransport(client.Options{Conns: 2, Name: "trellis-peer"})
		n.router = route.NewClient(routeAddrs, client.Options{Conns: 1, Name: "trellis-kvs"})
		n.node, err = cluster.New(cluster.Config{
			ID: n.id, Store: n.store, Transport: n.transport, Router: n.router, DefaultAck: parseAck(cfg.Ack),
			GossipEvery: cfg.GossipEvery, AntiEntropyEvery: cfg.AEEvery, Logger: log,
			// One pass over the store serves a period's rounds: this node's
			// and every peer's digest requests.
			DigestReuse: cfg.AEEvery,
		})
		if err != nil {
			n.router.Close()
			n.closeDisk()
			return nil, err
		}
		srvCfg.Cluster = n.node
	}
	if n.srv, err = kvs.NewServer(n.store, srvCfg); err != nil {
		n.closeDisk()
		return nil, err
	}
	return n, nil
}

// run starts the node in g and, once it listens, its cluster membership.
func (n *storageNode) run(ctx context.Context, g *errgroup.Group, log *slog.Logger) error {
	g.Go(func() error {
		defer n.closeDisk()
		return n.srv.Run(ctx)
	})
	select {
	case <-n.srv.Ready():
	case <-ctx.Done():
		return ctx.Err()
	}
	if n.node == nil {
		return nil
	}
	m, err := cluster.NewMember(cluster.MemberConfig{
		Node: n.node, Router: n.router, Logger: log,
		Self: route.Member{ID: n.id, Addr: n.advertise(n.srv.Addr()), RESPAddr: n.advertiseRESP(n.srv.RESPAddr())},
	})
	if err != nil {
		n.router.Close()
		return err
	}
	g.Go(func() error {
		defer n.node.Close()
		defer n.transport.Close()
		defer n.router.Close()
		mg, mctx := errgroup.WithContext(ctx)
		mg.Go(func() error { return m.Run(mctx) })
		mg.Go(func() error { return n.node.Run(mctx) })
		return mg.Wait()
	})
	return nil
}

// parseAck maps the ack setting to the protocol's level.
func parseAck(s string) wire.Ack {
	switch s {
	case "local":
		return wire.AckLocal
	case "durable":
		return wire.AckDurable
	}
	return wire.AckQuorum
}

func splitAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

func runKVS(ctx context.Context, cfg config, s streams) error {
	log := newLogger(cfg, s.err)
	routeAddrs := splitAddrs(cfg.Route)
	n, err := buildStorageNode(cfg, cfg.DataDir, cfg.Addr, cfg.RESPAddr, routeAddrs, nil, log)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if err := n.run(gctx, g, log); err != nil {
		return errors.Join(err, g.Wait())
	}
	printNodeBanner(s.out, "kvs", n)
	err = g.Wait()
	if errors.Is(err, cluster.ErrRemoved) {
		log.Info("this node left the cluster; stopping")
		return nil
	}
	return ignoreCanceled(err)
}

// printNodeBanner prints a storage node's banner (role "kvs").
func printNodeBanner(w io.Writer, role string, n *storageNode) {
	fmt.Fprintf(w, "trellis %s %s: node %d\n", buildVersion(), role, n.id)
	if a := n.srv.Addr(); a != "" {
		fmt.Fprintf(w, "  native  %s\n", a)
	}
	if a := n.srv.RESPAddr(); a != "" {
		fmt.Fprintf(w, "  redis   %s\n", a)
	}
}

// runUpCluster runs a routing node and cfg.StorageNodes storage nodes in
// this process, on real sockets: a whole cluster to try on one machine. The
// first storage node listens on --addr and --resp-addr, the others and the
// routing node on free ports.
func runUpCluster(ctx context.Context, cfg config, s streams) error {
	log := newLogger(cfg, s.err)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	// fail stops what started and returns err.
	fail := func(err error) error {
		cancel()
		return errors.Join(err, ignoreCanceled(g.Wait()))
	}
	sub := func(name string) string {
		if cfg.DataDir == "" {
			return ""
		}
		return filepath.Join(cfg.DataDir, name)
	}
	rcfg := cfg
	rcfg.NodeID = 0
	rn, err := startRouteNode(gctx, g, rcfg, sub("route"), "127.0.0.1:0", "127.0.0.1:0", "", log.With("role", "route"))
	if err != nil {
		return fail(err)
	}
	routeAddrs := []string{rn.srv.Addr()}
	// The coordinator writes its definitions through the storage nodes'
	// ports: it needs a system token, which the nodes of this process share.
	if cfg.SystemToken == "" {
		cfg.SystemToken = fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
	}
	fns, closeFns, err := clusterFunctionRoles(gctx, cfg, routeAddrs, sub("functions"), log)
	if err != nil {
		return fail(err)
	}
	defer closeFns()
	g.Go(func() error { return fns.run(gctx) })
	nodes := make([]*storageNode, cfg.StorageNodes)
	for i := range nodes {
		addr, respAddr := "127.0.0.1:0", "127.0.0.1:0"
		var served kvs.Functions
		if i == 0 {
			addr, respAddr, served = cfg.Addr, cfg.RESPAddr, fns.coord
		}
		ncfg := cfg
		ncfg.NodeID = 0
		nlog := log.With("role", "kvs", "n", i+1)
		n, err := buildStorageNode(ncfg, sub(fmt.Sprintf("node-%d", i+1)), addr, respAddr, routeAddrs, served, nlog)
		if err == nil {
			err = n.run(gctx, g, nlog)
		}
		if err != nil {
			return fail(err)
		}
		nodes[i] = n
	}
	fmt.Fprintf(s.out, "trellis %s up: cluster of %d storage nodes, routing node %s\n", buildVersion(), len(nodes), rn.id)
	fmt.Fprintf(s.out, "  route   %s\n", rn.srv.Addr())
	for _, n := range nodes {
		fmt.Fprintf(s.out, "  node %d  native %s  redis %s\n", n.id, n.srv.Addr(), n.srv.RESPAddr())
	}
	first := nodes[0]
	var tries []string
	if first.srv.RESPAddr() != "" {
		tries = append(tries, redisCLICommand(first.srv.RESPAddr())+" set hello world")
	}
	if first.srv.Addr() != "" {
		tries = append(tries, "trellis cli --addr "+first.srv.Addr())
	}
	fmt.Fprintf(s.out, "try: %s\n", joinTries(tries))
	log.Info("cluster ready", "storage_nodes", len(nodes), "route", rn.srv.Addr())
	return ignoreCanceled(g.Wait())
}
