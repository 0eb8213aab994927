package cluster

import (
	"bytes"
	"context"

	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/wire"
)

// ServeOnLoop serves a client write on the event loop that read it
// (kvs.Cluster), when it is of the common kind: one key this node
// replicates, an acknowledgement of local or quorum, and an epoch no newer
// than the node's. It then applies the write, sends the key's cell with
// REPLICATE to the key's other replicas through loop's connections, counts
// their answers as Replicate does, and calls complete with the response
// frame, once, on the loop: possibly before it returns. A round that a
// replica refused for a newer epoch goes on as Replicate does (a refresh,
// more rounds) on a goroutine of its own, bounded by ctx, whose outcome
// reaches complete through loop.Execute. It returns false, having done
// nothing, for any other request: the caller serves it with Serve.
func (n *Node) ServeOnLoop(ctx context.Context, req *wire.Request, loop kvs.Loop, complete func(frame []byte)) bool {
	if !req.Op.IsWrite() || req.Op.IsPeer() || req.Key == nil || req.Opts.Epoch > n.Epoch() {
		return false
	}
	ack := req.Opts.Ack
	if ack == wire.AckDefault {
		ack = n.cfg.DefaultAck
	}
	if ack == wire.AckDurable || !n.Responsible(req.Key) {
		return false
	}
	frame, ok := n.store.Exec(req, nil)
	if !ok {
		return false // not a data operation: nothing was done
	}
	if !succeeded(frame) {
		complete(frame)
		return true
	}
	id := req.ID
	n.replicateOnLoop(ctx, bytes.Clone(req.Key), ack, loop, func(err error) {
		if err != nil {
			frame = wire.AppendError(frame[:0], id, err)
		}
		complete(frame)
	})
	return true
}

// ReplicateOnLoop is Replicate for a caller on an event loop (kvs.Cluster):
// after a local write of key, it sends the key's cell to its other replicas
// through loop and calls done, once, on the loop, when ack is satisfied or
// cannot be (possibly before it returns), as ServeOnLoop does. It returns
// false, having done nothing, for a durable acknowledgement (it waits for
// a disk): the caller then uses Replicate.
func (n *Node) ReplicateOnLoop(ctx context.Context, key []byte, ack wire.Ack, loop kvs.Loop, done func(error)) bool {
	if ack == wire.AckDefault {
		ack = n.cfg.DefaultAck
	}
	if ack == wire.AckDurable {
		return false
	}
	n.replicateOnLoop(ctx, bytes.Clone(key), ack, loop, done)
	return true
}

// replicateOnLoop is Replicate (without the durable wait) for a caller on
// an event loop: the first round's calls go through loop.Send and are
// counted as they come back on the loop; done gets the outcome, once, on
// the loop. Only a refusal for a newer epoch leaves the loop: the rounds
// after it run on a goroutine, as Replicate runs them.
func (n *Node) replicateOnLoop(ctx context.Context, key []byte, ack wire.Ack, loop kvs.Loop, done func(error)) {
	r := n.newRound(n.view.Load(), key, ack)
	cell, send := n.startRound(r, key)
	if !send {
		done(nil)
		return
	}
	n.loopWrites.Add(1)
	decided := false // only the loop touches r and decided
	for _, p := range r.peers {
		counts := r.counts(p)
		n.replicateTo(loop.Send, p, key, cell, ack, r.epoch, func(err error) {
			if decided || !r.record(counts, err) {
				return
			}
			decided = true
			err = r.err()
			if err == nil || r.newer <= r.epoch {
				done(err)
				return
			}
			n.bg.Add(1)
			go func() {
				defer n.bg.Done()
				err := n.replicateRounds(ctx, key, ack, r.epoch, r.newer, err)
				loop.Execute(func() { done(err) })
			}()
		})
	}
}
