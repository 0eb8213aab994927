package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// tcpNode is a storage node served by a kvs.Server on loopback.
type tcpNode struct {
	id        uint64
	store     *kvs.Store
	node      *cluster.Node
	transport *cluster.TCPTransport
	srv       *kvs.Server
}

// startTCPCluster starts n storage nodes, every one a replica of every key
// (replication factor n), on loopback ports, and stops them when the test
// ends.
func startTCPCluster(tb testing.TB, n int) []*tcpNode {
	return startTCPClusterWith(tb, n, tcpOptions{})
}

// startTCPClusterWith is startTCPCluster with options.
func startTCPClusterWith(tb testing.TB, n int, opts tcpOptions) []*tcpNode {
	nodes := startTCPNodes(tb, n, opts)
	st := route.State{Epoch: 1, DefaultRF: n}
	for _, tn := range nodes {
		st.Members = append(st.Members, route.Member{ID: tn.id, Addr: tn.srv.Addr(), State: route.Active})
	}
	for _, tn := range nodes {
		require.NoError(tb, tn.node.SetState(st))
	}
	return nodes
}

// tcpOptions changes what startTCPNodes starts.
type tcpOptions struct {
	// config, if set, changes the cluster configuration of each node.
	config func(*cluster.Config)
	// resp serves the Redis protocol too.
	resp bool
}

// startTCPNodes starts n storage nodes with ids 1 to n on loopback ports,
// with no routing state, and stops them when the test ends.
func startTCPNodes(tb testing.TB, n int, opts tcpOptions) []*tcpNode {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, n)
	var nodes []*tcpNode
	stop := func() {
		cancel()
		for range nodes {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				tb.Errorf("server: %v", err)
			}
		}
		for _, tn := range nodes {
			tn.transport.Close()
			tn.node.Close()
		}
	}
	tb.Cleanup(stop)
	for i := range n {
		tn := &tcpNode{id: uint64(i + 1)}
		var err error
		tn.store, err = kvs.NewStore(kvs.StoreConfig{NodeID: tn.id, Shards: 4, Logger: quiet})
		require.NoError(tb, err)
		tn.transport = cluster.NewTCPTransport(client.Options{Conns: 2, Name: "trellis-peer"})
		cfg := cluster.Config{ID: tn.id, Store: tn.store, Transport: tn.transport, Logger: quiet}
		if opts.config != nil {
			opts.config(&cfg)
		}
		tn.node, err = cluster.New(cfg)
		require.NoError(tb, err)
		srvCfg := kvs.ServerConfig{Addr: "127.0.0.1:0", RESPAddr: kvs.AddrOff, Cluster: tn.node, Logger: quiet}
		if opts.resp {
			srvCfg.RESPAddr = "127.0.0.1:0"
		}
		tn.srv, err = kvs.NewServer(tn.store, srvCfg)
		require.NoError(tb, err)
		nodes = append(nodes, tn)
		go func() { done <- tn.srv.Run(ctx) }()
		select {
		case <-tn.srv.Ready():
		case err := <-done:
			nodes = nodes[:len(nodes)-1]
			tb.Fatalf("node %d: %v", tn.id, err)
		}
	}
	return nodes
}

// BenchmarkLoopbackRoundTrip compares, on loopback, a client's round trip
// to a node (a GET, a locally acknowledged SET) with a storage node's
// REPLICATE call to a peer (through the transport's client pool, and
// through its stream as writes replicate) and with a quorum SET (a client
// round trip around a REPLICATE round trip to each of two peers). Every
// node runs in this process: the numbers include the nodes' event loops
// competing for GOMAXPROCS.
func BenchmarkLoopbackRoundTrip(b *testing.B) {
	nodes := startTCPCluster(b, 3)
	ctx := context.Background()
	c, err := client.Dial(ctx, nodes[0].srv.Addr(), client.Options{Conns: 1})
	require.NoError(b, err)
	defer c.Close()
	value := []byte("0123456789abcdef0123456789abcdef")
	require.NoError(b, c.WithAck(client.AckLocal).Set(ctx, "k", value))
	cell, ok := nodes[0].store.Cell([]byte("k"), nil)
	require.True(b, ok)

	b.Run("client-get", func(b *testing.B) {
		for b.Loop() {
			if _, err := c.GetBytes(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("client-set-local", func(b *testing.B) {
		local := c.WithAck(client.AckLocal)
		for i := 0; b.Loop(); i++ {
			if err := local.Set(ctx, fmt.Sprintf("key:%d", i%10000), value); err != nil {
				b.Fatal(err)
			}
		}
	})
	replicate := wire.Request{Op: wire.OpReplicate, Key: []byte("k"), Value: cell,
		Opts: wire.Options{Ack: wire.AckQuorum, Epoch: 1}}
	b.Run("peer-replicate-call", func(b *testing.B) {
		for b.Loop() {
			resp, err := nodes[0].transport.Call(ctx, nodes[1].srv.Addr(), &replicate)
			if err == nil {
				err = resp.Err()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("peer-replicate-start", func(b *testing.B) {
		done := make(chan error, 1)
		for b.Loop() {
			nodes[0].transport.Start(nodes[1].srv.Addr(), &replicate, time.Second, func(resp *wire.Response, err error) {
				if err == nil {
					err = resp.Err()
				}
				done <- err
			})
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("client-set-quorum", func(b *testing.B) {
		quorum := c.WithAck(client.AckQuorum)
		for i := 0; b.Loop(); i++ {
			if err := quorum.Set(ctx, fmt.Sprintf("key:%d", i%10000), value); err != nil {
				b.Fatal(err)
			}
		}
	})
}
