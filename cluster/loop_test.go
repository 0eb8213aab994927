package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/internal/wiretest"
	"github.com/trellisdb/trellis/resp"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// Tests of quorum writes served on the event loop that read them
// (Node.ServeOnLoop, ReplicateOnLoop) through real servers on loopback.

// readFrames reads n response frames from nc, in the order they arrive.
func readFrames(t *testing.T, nc net.Conn, n int) []wire.Response {
	t.Helper()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(30*time.Second)))
	var out []wire.Response
	var buf []byte
	chunk := make([]byte, 64<<10)
	for len(out) < n {
		body, size, err := wire.SplitFrame(buf, wire.Limits{})
		if errors.Is(err, wire.ErrIncomplete) {
			m, err := nc.Read(chunk)
			require.NoError(t, err, "after %d responses", len(out))
			buf = append(buf, chunk[:m]...)
			continue
		}
		require.NoError(t, err)
		var r wire.Response
		require.NoError(t, r.Decode(bytes.Clone(body), wire.Limits{}))
		out = append(out, r)
		buf = buf[size:]
	}
	return out
}

// heldBy returns how many of nodes hold key.
func heldBy(nodes []*tcpNode, key string) int {
	held := 0
	for _, n := range nodes {
		if _, ok := n.store.Cell([]byte(key), nil); ok {
			held++
		}
	}
	return held
}

func TestLoopQuorumWritesPipelinedInOrder(t *testing.T) {
	nodes := startTCPCluster(t, 3)
	nc, err := net.Dial("tcp", nodes[0].srv.Addr())
	require.NoError(t, err)
	defer nc.Close()

	// Each quorum SET is followed by a GET of its key: the GET is answered
	// on the loop at once, the SET only once a peer has acknowledged, yet
	// the responses come in request order, and each GET sees its SET.
	const n = 300
	var batch []byte
	for i := range n {
		key := []byte(fmt.Sprintf("key:%d", i))
		batch = (&wire.Request{ID: uint64(2*i + 1), Op: wire.OpSet, Key: key, Value: key,
			Opts: wire.Options{Ack: wire.AckQuorum}}).AppendFrame(batch)
		batch = (&wire.Request{ID: uint64(2*i + 2), Op: wire.OpGet, Key: key}).AppendFrame(batch)
	}
	_, err = nc.Write(batch)
	require.NoError(t, err)
	for j, r := range readFrames(t, nc, 2*n) {
		require.EqualValues(t, j+1, r.ID, "response %d out of order", j)
		require.Equal(t, wire.CodeOK, r.Code, "response %d: %s", j, r.Msg)
		if j%2 == 1 {
			v, err := r.Bytes()
			require.NoError(t, err)
			require.True(t, bytes.HasSuffix(v, []byte(fmt.Sprintf("key:%d", j/2))), "response %d: %q", j, v) // an LWW register's encoding
		}
	}
	require.EqualValues(t, n, nodes[0].node.LoopWrites(), "every write replicated from the loop")
	for i := range n {
		require.GreaterOrEqual(t, heldBy(nodes, fmt.Sprintf("key:%d", i)), 2, "acknowledged by a quorum")
	}
	for _, tn := range nodes {
		tn.node.Wait()
	}
	for _, tn := range nodes {
		require.Equal(t, n, tn.store.Len(), "node %d", tn.id)
		require.Zero(t, tn.node.Pending(), "node %d: nothing failed", tn.id)
	}
}

func TestLoopQuorumWritesRESP(t *testing.T) {
	nodes := startTCPClusterWith(t, 3, tcpOptions{resp: true}) // the nodes' default acknowledgement: quorum
	nc, err := net.Dial("tcp", nodes[0].srv.RESPAddr())
	require.NoError(t, err)
	defer nc.Close()
	const n = 200
	var batch []byte
	for i := range n {
		key := fmt.Sprintf("key:%d", i)
		batch = resp.AppendCommandString(batch, "SET", key, key)
		batch = resp.AppendCommandString(batch, "GET", key)
	}
	_, err = nc.Write(batch)
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(30*time.Second)))
	var buf []byte
	chunk := make([]byte, 64<<10)
	for j := 0; j < 2*n; {
		r, size, err := resp.ParseReply(buf, resp.Limits{})
		if err != nil {
			m, rerr := nc.Read(chunk)
			require.NoError(t, rerr, "after %d replies (%v)", j, err)
			buf = append(buf, chunk[:m]...)
			continue
		}
		if j%2 == 0 {
			require.Equal(t, "OK", string(r.Str), "reply %d", j)
		} else {
			require.Equal(t, fmt.Sprintf("key:%d", j/2), string(r.Str), "reply %d", j)
		}
		buf = buf[size:]
		j++
	}
	require.EqualValues(t, n, nodes[0].node.LoopWrites())
	for i := range n {
		require.GreaterOrEqual(t, heldBy(nodes, fmt.Sprintf("key:%d", i)), 2)
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// nodeWithPeers starts node 1 with members 2 and 3 at the given addresses
// (replication factor 3: a quorum write needs one of them) and returns it
// with a quorum client of it.
func nodeWithPeers(t *testing.T, timeout time.Duration, peer2, peer3 string) (*tcpNode, *client.Client) {
	tn := startTCPNodes(t, 1, tcpOptions{config: func(c *cluster.Config) { c.ReplicaTimeout = timeout }})[0]
	require.NoError(t, tn.node.SetState(route.State{Epoch: 1, DefaultRF: 3, Members: []route.Member{
		{ID: 1, Addr: tn.srv.Addr(), State: route.Active},
		{ID: 2, Addr: peer2, State: route.Active},
		{ID: 3, Addr: peer3, State: route.Active},
	}}))
	c, err := client.Dial(context.Background(), tn.srv.Addr(), client.Options{Conns: 1})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return tn, c.WithAck(client.AckQuorum)
}

func TestLoopQuorumWriteWithPeersDown(t *testing.T) {
	const timeout = 5 * time.Second
	tn, c := nodeWithPeers(t, timeout, closedAddr(t), closedAddr(t))
	ctx := context.Background()
	began := time.Now()
	err := c.Set(ctx, "k", []byte("v"))
	require.ErrorIs(t, err, wire.ErrUnavailable)
	require.ErrorContains(t, err, "write not acknowledged by enough replicas")
	require.Less(t, time.Since(began), timeout, "a refused connection fails at once")
	require.EqualValues(t, 1, tn.node.LoopWrites())
	require.Equal(t, 1, tn.node.Pending(), "the key waits for gossip")

	// The blocking path (Replicate, through the transport) fails the same
	// way.
	err = tn.node.Replicate(ctx, []byte("k"), wire.AckQuorum)
	require.ErrorIs(t, err, cluster.ErrQuorum)
	require.ErrorIs(t, err, wire.ErrUnavailable)

	// The write stays applied here.
	got, err := c.GetBytes(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, "v", string(got))
}

// silentPeer is a fake storage node that accepts connections and reads
// requests but never answers a REPLICATE; received gets one value per
// REPLICATE read.
func silentPeer(t *testing.T) (*wiretest.Peer, <-chan struct{}) {
	received := make(chan struct{}, 1024)
	p := wiretest.NewPeer(t, func(req *wire.Request) []byte {
		if req.Op == wire.OpReplicate {
			received <- struct{}{}
			return nil
		}
		return answerAll(req)
	})
	return p, received
}

func TestLoopQuorumWriteWithSilentPeers(t *testing.T) {
	const timeout = 300 * time.Millisecond
	p2, _ := silentPeer(t)
	p3, _ := silentPeer(t)
	tn, c := nodeWithPeers(t, timeout, p2.Addr(), p3.Addr())
	ctx := context.Background()
	for attempt := 1; attempt <= 2; attempt++ {
		began := time.Now()
		err := c.Set(ctx, "k", []byte("v"))
		took := time.Since(began)
		require.ErrorIs(t, err, wire.ErrUnavailable)
		require.ErrorContains(t, err, "write not acknowledged by enough replicas")
		require.ErrorContains(t, err, "in time")
		require.GreaterOrEqual(t, took, timeout, "not before the replica timeout")
		require.Less(t, took, timeout+5*time.Second, "within the replica timeout and a sweep")
		require.Equal(t, 1, tn.node.Pending())
		// The connections that timed out are closed, and the next write
		// opens new ones.
		for _, p := range []*wiretest.Peer{p2, p3} {
			require.Eventually(t, func() bool { return p.Hangups.Load() == int32(attempt) }, 10*time.Second, time.Millisecond)
			require.EqualValues(t, attempt, p.Accepts.Load())
		}
	}
}

func TestLoopQuorumWriteWhenPeerConnectionsDrop(t *testing.T) {
	p2, got2 := silentPeer(t)
	p3, got3 := silentPeer(t)
	tn, c := nodeWithPeers(t, time.Minute, p2.Addr(), p3.Addr())
	errc := make(chan error, 1)
	go func() { errc <- c.Set(context.Background(), "k", []byte("v")) }()
	for _, got := range []<-chan struct{}{got2, got3} {
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("no REPLICATE reached a peer")
		}
	}
	p2.DropConns()
	p3.DropConns()
	select {
	case err := <-errc:
		require.ErrorIs(t, err, wire.ErrUnavailable)
		require.ErrorContains(t, err, "peer connection lost")
	case <-time.After(10 * time.Second):
		t.Fatal("the write did not fail when its peers' connections dropped")
	}
	require.Equal(t, 1, tn.node.Pending())
	require.EqualValues(t, 1, tn.node.LoopWrites())
}

// fixedRouter serves one routing state and counts the requests.
type fixedRouter struct {
	st    route.State
	calls atomic.Int32
}

func (r *fixedRouter) State(context.Context) (route.State, error) {
	r.calls.Add(1)
	return r.st, nil
}

func TestLoopQuorumWriteRefusedForNewerEpoch(t *testing.T) {
	router := &fixedRouter{}
	nodes := startTCPNodes(t, 3, tcpOptions{config: func(c *cluster.Config) {
		if c.ID == 1 {
			c.Router = router
		}
	}})
	old := route.State{Epoch: 1, DefaultRF: 3}
	for _, tn := range nodes {
		old.Members = append(old.Members, route.Member{ID: tn.id, Addr: tn.srv.Addr(), State: route.Active})
	}
	cur := old
	cur.Epoch = 2
	router.st = cur
	require.NoError(t, nodes[0].node.SetState(old))
	for _, tn := range nodes[1:] {
		require.NoError(t, tn.node.SetState(cur))
	}

	// Node 1 routes by epoch 1: both replicas merge its REPLICATE but
	// refuse to count it; node 1 fetches epoch 2 and replicates again.
	c, err := client.Dial(context.Background(), nodes[0].srv.Addr(), client.Options{Conns: 1})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.WithAck(client.AckQuorum).Set(context.Background(), "k", []byte("v")))
	require.EqualValues(t, 1, nodes[0].node.LoopWrites(), "the first round ran on the loop")
	require.EqualValues(t, 2, nodes[0].node.Epoch())
	require.Positive(t, router.calls.Load())
	for _, tn := range nodes {
		tn.node.Wait()
	}
	require.Equal(t, 3, heldBy(nodes, "k"))
}

func TestLoopQuorumWritesConcurrent(t *testing.T) {
	nodes := startTCPCluster(t, 3)
	ctx := context.Background()
	const writers, writes = 8, 100
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Dial(ctx, nodes[w%len(nodes)].srv.Addr(), client.Options{Conns: 2})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			q := c.WithAck(client.AckQuorum)
			for i := range writes {
				if err := q.Set(ctx, fmt.Sprintf("w%d:%d", w, i), []byte("v")); err != nil {
					t.Error(err)
					return
				}
				if _, err := q.CounterAdd(ctx, "counter", 1); err != nil {
					t.Error(err)
					return
				}
				if _, err := q.SetAdd(ctx, "set", []byte(fmt.Sprintf("w%d:%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var loop uint64
	for _, tn := range nodes {
		loop += tn.node.LoopWrites()
	}
	require.EqualValues(t, 3*writers*writes, loop)
	for _, tn := range nodes {
		tn.node.Wait()
	}
	keys := []string{"counter", "set"}
	for w := range writers {
		for i := range writes {
			keys = append(keys, fmt.Sprintf("w%d:%d", w, i))
		}
	}
	for _, k := range keys {
		want, ok := nodes[0].store.Cell([]byte(k), nil)
		require.True(t, ok, k)
		for _, tn := range nodes[1:] {
			got, ok := tn.store.Cell([]byte(k), nil)
			require.True(t, ok, k)
			require.Equal(t, want, got, "key %s on node %d", k, tn.id)
		}
	}
	c, err := client.Dial(ctx, nodes[1].srv.Addr(), client.Options{Conns: 1})
	require.NoError(t, err)
	defer c.Close()
	n, err := c.CounterValue(ctx, "counter")
	require.NoError(t, err)
	require.EqualValues(t, writers*writes, n)
}
