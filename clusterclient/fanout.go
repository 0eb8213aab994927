package clusterclient

import (
	"context"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// fansOut reports whether this view's writes go out by fan-out: quorum
// writes, unless Options.NoFanOut.
func (c *Client) fansOut() bool { return c.ack == wire.AckQuorum && !c.opts.NoFanOut }

// fanOut tries to write v to key by fan-out: a PUT acknowledged locally,
// sent at once to the first quorum of the key's responsible set, which is
// the write's quorum, held once every one of them has merged it (each then
// gossips it to the key's other replicas). It reports whether that
// happened. It does not try when the view does not fan out, while a
// hand-off is under way (a joining or leaving member: the nodes then count
// the quorum over the pending ring too, which a node coordinating the write
// knows), or when a target failed lately; on any failure the caller sends
// the same write the usual way (one node coordinates it), which is safe:
// a merge applied twice changes nothing more. ctx must be bounded
// (deadlines.bound): a target may never answer.
func (c *Client) fanOut(ctx context.Context, key string, v lattice.Lattice) bool {
	if !c.fansOut() || ctx.Err() != nil {
		return false
	}
	t := c.table.Load()
	k := []byte(key)
	var buf [8]route.Member
	reps := t.replicas(k, buf[:0])
	if !t.settled || len(reps) < 2 || len(reps) < t.state.RF(k) {
		return false
	}
	targets := reps[:route.Quorum(len(reps))]
	var nbuf [8]*client.Client
	nodes := nbuf[:0]
	for _, m := range targets {
		if c.suspect(m.ID) {
			return false
		}
		n, err := c.node(ctx, t, m)
		if err != nil {
			return false
		}
		nodes = append(nodes, n)
	}
	enc, err := v.AppendBinary(nil)
	if err != nil {
		return false // the usual path reports it
	}
	if c.opts.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.AttemptTimeout)
		defer cancel()
	}
	req := &wire.Request{Op: wire.OpPut, Key: k, Value: enc, Opts: wire.Options{Ack: wire.AckLocal, Epoch: t.epoch()}}
	for _, err := range client.DoAll(ctx, req, nodes...) {
		if err != nil {
			c.stats.fanOutFailed.Add(1)
			return false
		}
	}
	c.stats.fanOuts.Add(1)
	return true
}
