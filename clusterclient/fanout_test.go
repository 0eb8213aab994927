package clusterclient

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// A quorum Set goes, stamped by the client, to the first quorum of the
// key's responsible set at once, each asked for a local acknowledgement;
// the other replica hears nothing from the client. Reads still go to the
// first replica, which holds the write.
func TestFanOut(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 3, 1, 2, 3))
	c := f.dial(Options{})
	ctx := testCtx(t)
	for i := range 10 {
		key := fmt.Sprintf("key-%d", i)
		reps := c.Replicas(key)
		require.Len(t, reps, 3)
		require.NoError(t, c.Set(ctx, key, []byte("v")))
		put := seenReq{op: wire.OpPut, key: key, epoch: 5, ack: wire.AckLocal}
		require.Equal(t, map[uint64][]seenReq{reps[0].ID: {put}, reps[1].ID: {put}}, f.takeAll(), "key %s", key)
		for _, m := range reps[:2] {
			v, err := f.nodes[m.ID].store.Lookup([]byte(key))
			require.NoError(t, err)
			w := v.(*lattice.LWW)
			require.Equal(t, "v", string(w.Value))
			require.Equal(t, c.writer, w.Writer, "stamped by the client")
		}
		require.False(t, f.nodes[reps[2].ID].store.Exists([]byte(key)))
	}
	require.Equal(t, Stats{FanOuts: 10}, c.Stats())

	// A later Set of the same key wins: the client's clock moves on.
	key := "key-0"
	require.NoError(t, c.Set(ctx, key, []byte("w")))
	v, err := c.GetBytes(ctx, key)
	require.NoError(t, err)
	require.Equal(t, "w", string(v))
	f.takeAll()

	// Put fans out too; local and durable views and other writes do not.
	require.NoError(t, c.Put(ctx, key, &lattice.LWW{TS: lattice.MakeTimestamp(1, 0), Writer: 1, Value: []byte("old")}))
	require.Len(t, f.takeAll(), 2)
	require.NoError(t, c.WithAck(client.AckLocal).Set(ctx, key, []byte("x")))
	_, err = c.SetAdd(ctx, "set", []byte("m"))
	require.NoError(t, err)
	var got []seenReq
	for _, reqs := range f.takeAll() {
		got = append(got, reqs...)
	}
	require.ElementsMatch(t, []seenReq{
		{op: wire.OpSet, key: key, epoch: 5, ack: wire.AckLocal},
		{op: wire.OpSetAdd, key: "set", epoch: 5, ack: wire.AckQuorum},
	}, got)
}

// A fan-out that a target does not acknowledge is sent again through one
// node, which coordinates the quorum: the caller sees a success, and the
// write is the same (the client's stamp).
func TestFanOutFallsBack(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 3, 1, 2, 3))
	c := f.dial(Options{})
	ctx := testCtx(t)
	key := "k"
	reps := c.Replicas(key)
	f.nodes[reps[1].ID].setFault(func(*wire.Request) error { return wire.ErrUnavailable })
	require.NoError(t, c.Set(ctx, key, []byte("v")))
	put := seenReq{op: wire.OpPut, key: key, epoch: 5, ack: wire.AckLocal}
	require.Equal(t, map[uint64][]seenReq{
		reps[0].ID: {put, {op: wire.OpPut, key: key, epoch: 5, ack: wire.AckQuorum}},
		reps[1].ID: {put},
	}, f.takeAll())
	require.Equal(t, Stats{FanOutFailed: 1}, c.Stats())
	v, err := f.nodes[reps[0].ID].store.Lookup([]byte(key))
	require.NoError(t, err)
	require.Equal(t, c.writer, v.(*lattice.LWW).Writer)

	// A type mismatch is the outcome, after the fallback confirms it.
	f.nodes[reps[1].ID].setFault(nil)
	_, err = c.SetAdd(ctx, "set", []byte("m"))
	require.NoError(t, err)
	require.ErrorIs(t, c.Set(ctx, "set", []byte("v")), ErrTypeMismatch)
}

// While a member joins or leaves, quorum writes go through one node (the
// nodes count the quorum over the pending ring too), stamped by the client
// all the same.
func TestNoFanOutDuringHandoff(t *testing.T) {
	f := newFakeCluster(t, 4)
	st := f.state(5, 3, 1, 2, 3)
	st.Members = append(st.Members, route.Member{ID: 4, Addr: f.nodes[4].addr, State: route.Joining})
	f.publish(st)
	c := f.dial(Options{})
	key := "k"
	require.NoError(t, c.Set(testCtx(t), key, []byte("v")))
	require.Equal(t, map[uint64][]seenReq{
		c.Replicas(key)[0].ID: {{op: wire.OpPut, key: key, epoch: 5, ack: wire.AckQuorum}},
	}, f.takeAll())
	require.Zero(t, c.Stats().FanOuts)
}

// A fan-out target that never answers holds the call no longer than the
// call's bound (Options.Timeout for a context without a deadline; without
// an AttemptTimeout the wait for it takes all of that time).
func TestFanOutToHungNodeIsBounded(t *testing.T) {
	f := newFakeCluster(t, 3)
	f.publish(f.state(5, 3, 1, 2, 3))
	c := f.dial(Options{Timeout: 200 * time.Millisecond})
	key := "k"
	hung := make(chan struct{})
	defer close(hung)
	f.nodes[c.Replicas(key)[1].ID].setFault(func(*wire.Request) error { <-hung; return nil })
	start := time.Now()
	err := c.Set(context.Background(), key, []byte("v"))
	require.ErrorIs(t, err, ErrTimeout)
	require.Less(t, time.Since(start), 5*time.Second)
}
