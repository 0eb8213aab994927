package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/route"
)

// localCluster is a routing node and storage nodes in this process, on
// loopback, each storage node stoppable on its own: what the cluster
// benchmarks run on.
type localCluster struct {
	cfg     config
	dataDir string // "": nodes keep everything in memory
	log     *slog.Logger

	route     *routeNode
	routeStop func() error
	nodes     []*localNode
	next      int // number of the next node started (its data directory)
}

// localNode is one storage node of a localCluster.
type localNode struct {
	*storageNode
	dir  string
	stop func() error // stops the node and waits for it
}

// startLocalCluster starts a routing node and n storage nodes and waits
// until every storage node is active.
func startLocalCluster(ctx context.Context, cfg config, n int, dataDir string, log *slog.Logger) (*localCluster, error) {
	lc := &localCluster{cfg: cfg, dataDir: dataDir, log: log}
	rctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(rctx)
	rcfg := cfg
	rcfg.NodeID = 0
	dir := ""
	if dataDir != "" {
		dir = filepath.Join(dataDir, "route")
	}
	rn, err := startRouteNode(gctx, g, rcfg, dir, "127.0.0.1:0", "127.0.0.1:0", "", log.With("role", "route"))
	if err != nil {
		cancel()
		return nil, errors.Join(err, g.Wait())
	}
	lc.route = rn
	lc.routeStop = func() error { cancel(); return ignoreCanceled(g.Wait()) }
	for range n {
		if _, err := lc.add(ctx, ""); err != nil {
			return nil, errors.Join(err, lc.close())
		}
	}
	return lc, lc.waitActive(ctx, n)
}

// routeAddrs returns the routing node's address, as --route takes it.
func (lc *localCluster) routeAddrs() []string { return []string{lc.route.srv.Addr()} }

// add starts a storage node: a new one (dir "") or one restarted from dir.
func (lc *localCluster) add(ctx context.Context, dir string) (*localNode, error) {
	if dir == "" && lc.dataDir != "" {
		lc.next++
		dir = filepath.Join(lc.dataDir, fmt.Sprintf("node-%d", lc.next))
	}
	ncfg := lc.cfg
	ncfg.NodeID = 0
	log := lc.log.With("role", "kvs")
	sn, err := buildStorageNode(ncfg, dir, "127.0.0.1:0", "127.0.0.1:0", lc.routeAddrs(), nil, log)
	if err != nil {
		return nil, err
	}
	nctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(nctx)
	if err := sn.run(gctx, g, log); err != nil {
		cancel()
		return nil, errors.Join(err, g.Wait())
	}
	n := &localNode{storageNode: sn, dir: dir, stop: func() error { cancel(); return ignoreCanceled(g.Wait()) }}
	lc.nodes = append(lc.nodes, n)
	return n, nil
}

// remove stops node n and forgets it.
func (lc *localCluster) remove(n *localNode) error {
	for i, m := range lc.nodes {
		if m == n {
			lc.nodes = append(lc.nodes[:i:i], lc.nodes[i+1:]...)
		}
	}
	return n.stop()
}

// state returns the routing state.
func (lc *localCluster) state(ctx context.Context) (route.State, error) {
	rc := route.NewClient(lc.routeAddrs(), client.Options{Conns: 1})
	defer rc.Close()
	return rc.State(ctx)
}

// waitActive waits until want storage nodes are active and every running
// node routes by the newest epoch.
func (lc *localCluster) waitActive(ctx context.Context, want int) error {
	for {
		st, err := lc.state(ctx)
		if err == nil {
			active := 0
			for _, m := range st.Members {
				if m.State == route.Active {
					active++
				}
			}
			caughtUp := true
			for _, n := range lc.nodes {
				caughtUp = caughtUp && n.node.Epoch() >= st.Epoch
			}
			if active == want && caughtUp {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d active storage nodes: %w", want, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// copies returns how many keys the storage nodes hold in all.
func (lc *localCluster) copies() int {
	total := 0
	for _, n := range lc.nodes {
		total += n.store.Len()
	}
	return total
}

// close stops every node.
func (lc *localCluster) close() error {
	var errs []error
	for _, n := range lc.nodes {
		errs = append(errs, n.stop())
	}
	lc.nodes = nil
	if lc.routeStop != nil {
		errs = append(errs, lc.routeStop())
	}
	return errors.Join(errs...)
}
