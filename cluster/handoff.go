package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// HandoffSummary is what one hand-off pass did.
type HandoffSummary struct {
	Orphans int // keys held here that this node no longer replicates
	Dropped int // of those, copies dropped after every replica confirmed it
	Kept    int // copies kept: a replica did not confirm, or the key changed meanwhile
	Errors  int // hand-off calls that failed
}

// HandoffOnce moves the copies of keys this node holds but no longer
// replicates (the ring moved past it: a node joined, or this one left) to the
// keys' replicas, and drops each copy once every replica, on the current and
// the pending ring, has confirmed that it merged it. A replica confirms only
// at the epoch this node routes by, and only for keys it replicates at that
// epoch, so a copy is never dropped on the word of a node with another view:
// every drop is preceded by a merge into a node that replicates the key at a
// newer or equal epoch, and a key is never left without a holder.
//
// It does nothing on a node that is joining, down or leaving (a node that is
// catching up, or about to come back, keeps what it has) or that has no
// members in its routing state.
func (n *Node) HandoffOnce(ctx context.Context) HandoffSummary {
	v := n.view.Load()
	if me, ok := v.state.Member(n.cfg.ID); ok && me.State != route.Active {
		return HandoffSummary{}
	}
	return n.handoff(ctx, v)
}

// HandoffAll is HandoffOnce whatever this node's state: for a node that was
// leaving when it stopped and is down now, which replicates nothing, so that
// its copies reach the keys' replicas before it is removed.
func (n *Node) HandoffAll(ctx context.Context) HandoffSummary {
	return n.handoff(ctx, n.view.Load())
}

func (n *Node) handoff(ctx context.Context, v *view) HandoffSummary {
	var sum HandoffSummary
	if v.ring == nil {
		return sum
	}
	var orphans [][]byte
	var buf []route.Member
	n.store.Each(func(key, _ []byte) bool {
		buf = v.allReplicas(key, buf[:0])
		if !containsMember(buf, n.cfg.ID) {
			orphans = append(orphans, bytes.Clone(key))
		}
		return true
	})
	sum.Orphans = len(orphans)
	slices.SortFunc(orphans, bytes.Compare) // deterministic batches for deterministic tests
	for len(orphans) > 0 && ctx.Err() == nil {
		s, done := n.handoffBatch(ctx, v, orphans)
		sum.Dropped += s.Dropped
		sum.Kept += s.Kept
		sum.Errors += s.Errors
		orphans = orphans[done:]
	}
	sum.Kept += len(orphans) // left for the next pass when ctx ended
	return sum
}

// handoffBatch hands off a batch of the first keys (at most maxBatchKeys of
// them, about maxBatchBytes of cells): it sends each key's cell to every
// replica of the key, then drops the copies every replica confirmed. It
// returns how many keys the batch took.
func (n *Node) handoffBatch(ctx context.Context, v *view, keys [][]byte) (HandoffSummary, int) {
	var sum HandoffSummary
	var cells [][]byte // nil: gone since the scan
	size := 0
	for i, k := range keys {
		if i == maxBatchKeys || (i > 0 && size > maxBatchBytes) {
			keys = keys[:i]
			break
		}
		cell, _ := n.store.Cell(k, nil)
		cells = append(cells, cell)
		size += len(k) + len(cell) + 16
	}
	reqs := map[string]*wire.Request{}
	var addrs []string
	need := make([]int, len(keys)) // replicas that must confirm each key
	var buf []route.Member
	for i, k := range keys {
		cell := cells[i]
		if cell == nil {
			continue
		}
		buf = v.allReplicas(k, buf[:0])
		for _, m := range buf {
			r := reqs[m.Addr]
			if r == nil {
				r = &wire.Request{Op: wire.OpHandoff, Opts: wire.Options{Epoch: v.state.Epoch}}
				reqs[m.Addr] = r
				addrs = append(addrs, m.Addr)
			}
			r.Keys = append(r.Keys, k)
			r.Values = append(r.Values, cell)
			need[i]++
		}
	}
	// A key is confirmed by a replica when the replica's whole batch is.
	confirmed := make([]int, len(keys))
	index := make(map[string]int, len(keys))
	for i, k := range keys {
		index[string(k)] = i
	}
	slices.Sort(addrs)
	for _, a := range addrs {
		r := reqs[a]
		if err := n.call(ctx, a, r); err != nil {
			sum.Errors++
			if newerEpoch(err, v.state.Epoch) > 0 {
				n.refreshSoon()
			}
			n.log.Debug("hand-off call failed", "peer", a, "keys", len(r.Keys), "err", err)
			continue
		}
		for _, k := range r.Keys {
			confirmed[index[string(k)]]++
		}
	}
	for i, k := range keys {
		switch {
		case cells[i] == nil:
			// Gone since the scan (a collected tombstone): nothing to hand off.
		case need[i] > 0 && confirmed[i] == need[i] && n.store.DropIf(k, cells[i]):
			sum.Dropped++
		default:
			sum.Kept++
		}
	}
	return sum, len(keys)
}

// serveHandoff merges a hand-off batch, confirming that this node now holds
// every cell in it. It refuses a batch sent at another epoch than its own
// (the sender must decide at the view the replica confirms in; a node behind
// the sender refreshes its state first) or holding a key this node does not
// replicate.
//
// On a node with a disk it confirms once the cells are synced: the sender
// drops its copy on this word.
func (n *Node) serveHandoff(ctx context.Context, req *wire.Request, out []byte) []byte {
	v := n.view.Load()
	if req.Opts.Epoch > v.state.Epoch && n.refresh(ctx) {
		v = n.view.Load() // the sender knows a newer state: catch up first
	}
	if req.Opts.Epoch != v.state.Epoch {
		return wire.AppendError(out, req.ID, &wire.Error{Code: wire.CodeWrongOwner,
			Msg: fmt.Sprintf("hand-off at epoch %d, this node is at %d", req.Opts.Epoch, v.state.Epoch), Epoch: v.state.Epoch})
	}
	if me, ok := v.state.Member(n.cfg.ID); !ok || me.State == route.Down {
		return wire.AppendError(out, req.ID, &wire.Error{Code: wire.CodeWrongOwner,
			Msg: "this node is not a member", Epoch: v.state.Epoch})
	}
	var buf []route.Member
	for _, k := range req.Keys {
		if buf = v.allReplicas(k, buf[:0]); !containsMember(buf, n.cfg.ID) {
			return wire.AppendError(out, req.ID, &wire.Error{Code: wire.CodeWrongOwner,
				Msg: fmt.Sprintf("node %d does not replicate key %.64q", n.cfg.ID, k), Epoch: v.state.Epoch})
		}
	}
	for i, k := range req.Keys {
		if _, err := n.store.MergeCell(k, req.Values[i]); err != nil {
			return wire.AppendError(out, req.ID, err)
		}
	}
	if n.store.HasDisk() {
		if err := n.waitDurable(ctx); err != nil {
			return wire.AppendError(out, req.ID, err)
		}
	}
	return wire.AppendNilResult(out, req.ID)
}

// ErrRemoved is returned by Member.Run once the node has left the cluster.
var ErrRemoved = errors.New("cluster: node removed from the cluster")
