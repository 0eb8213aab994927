package clusterclient

import (
	"bytes"
	"context"
	"errors"
	"sync"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// Batch collects requests on many keys to send together: Exec splits them
// by the storage node that serves each key, sends each node's share as one
// pipelined client.Batch (the nodes in parallel), retries each request as a
// single call would be retried, and returns the results in the order the
// requests were added. Requests on different keys are independent: no
// atomicity across keys, and requests on one key run in order only when
// they land on the same node in the same round (send dependent requests in
// separate batches). A Batch is not safe for concurrent use.
type Batch struct {
	c   *Client
	ops []batchOp
}

type batchOp struct {
	op         wire.Op
	key, value []byte
	delta      int64
}

// Batch returns an empty batch whose writes ask for c's acknowledgement.
func (c *Client) Batch() *Batch { return &Batch{c: c} }

// Get adds a read of key's encoded value (client.BatchResult.Value; Err
// ErrNotFound if it holds none). Keys and values passed to a Batch must stay
// unchanged until Exec returns.
func (b *Batch) Get(key []byte) { b.ops = append(b.ops, batchOp{op: wire.OpGet, key: key}) }

// Set adds a server-stamped LWW write.
func (b *Batch) Set(key, value []byte) {
	b.ops = append(b.ops, batchOp{op: wire.OpSet, key: key, value: value})
}

// Put adds a merge of an encoded lattice into key.
func (b *Batch) Put(key, encoded []byte) {
	b.ops = append(b.ops, batchOp{op: wire.OpPut, key: key, value: encoded})
}

// Delete adds a delete (client.BatchResult.Int: 1 if the key held a value).
func (b *Batch) Delete(key []byte) { b.ops = append(b.ops, batchOp{op: wire.OpDelete, key: key}) }

// CounterAdd adds a counter increment (client.BatchResult.Int: the new
// value). Like Client.CounterAdd it is retried only when it certainly was
// not applied.
func (b *Batch) CounterAdd(key []byte, delta int64) {
	b.ops = append(b.ops, batchOp{op: wire.OpCounterAdd, key: key, delta: delta})
}

// Len returns the number of requests in the batch.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() { b.ops = b.ops[:0] }

func (o *batchOp) addTo(b *client.Batch) {
	switch o.op {
	case wire.OpGet:
		b.Get(o.key)
	case wire.OpSet:
		b.Set(o.key, o.value)
	case wire.OpPut:
		b.Put(o.key, o.value)
	case wire.OpDelete:
		b.Delete(o.key)
	case wire.OpCounterAdd:
		b.CounterAdd(o.key, o.delta)
	}
}

// batchGroup is the requests of one round sent to one node.
type batchGroup struct {
	m   route.Member
	idx []int                // indices into Batch.ops
	res []client.BatchResult // one per idx, when err is nil
	err error                // the whole group's failure
}

// Exec sends every request and returns one result per request, in order;
// each result's Value is a copy the caller owns. A request's error is its
// own outcome after retries, as for the single-key call of the same name.
// The error returned is for the batch as a whole: the context ended (or the
// client was closed) before every request had its final outcome; the
// requests without one carry it too.
func (b *Batch) Exec(ctx context.Context) ([]client.BatchResult, error) {
	c := b.c
	if len(b.ops) == 0 {
		return nil, nil
	}
	if c.isClosed() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxErr(ctx, "batch", nil)
	}
	ctx, cancel := c.deadlines.bound(ctx)
	defer cancel()

	res := make([]client.BatchResult, len(b.ops))
	pending := make([]bool, len(b.ops))
	tried := make([]int, len(b.ops)) // replicas tried this round; exhausted: wait for the next round
	for i := range pending {
		pending[i] = true
	}
	left := len(b.ops)
	const exhausted = 1 << 30
	var (
		last  error
		want  uint64
		round int
		buf   [8]route.Member
	)
	t := c.table.Load()
	for left > 0 {
		if cur := c.table.Load(); cur != t { // the state moved: route afresh
			t, want = cur, 0
			clear(tried)
		}
		groups := map[uint64]*batchGroup{}
		var order []*batchGroup
		for i, op := range b.ops {
			if !pending[i] {
				continue
			}
			reps := t.replicas(op.key, buf[:0])
			preferReachable(reps, c.suspect)
			if len(reps) == 0 {
				last = errNoReplica
			}
			if tried[i] >= len(reps) {
				continue
			}
			m := reps[tried[i]]
			g := groups[m.ID]
			if g == nil {
				g = &batchGroup{m: m}
				groups[m.ID] = g
				order = append(order, g)
			}
			g.idx = append(g.idx, i)
		}

		if len(order) == 0 {
			// Every request left has tried each of its replicas: route by a
			// newer state if there is one, else pause first.
			if !c.refresh(ctx, t, want) {
				if !c.pause(ctx, round) {
					break
				}
				round++
			}
			if c.isClosed() {
				return fillPending(res, pending, ErrClosed), ErrClosed
			}
			c.stats.retries.Add(1)
			t, want = c.table.Load(), 0
			clear(tried)
			continue
		}

		var wg sync.WaitGroup
		for _, g := range order {
			wg.Go(func() { c.execGroup(ctx, t, b.ops, g) })
		}
		wg.Wait()

		for _, g := range order {
			for j, i := range g.idx {
				err := g.err
				var r client.BatchResult
				if err == nil {
					r = g.res[j]
					err = c.lostIfClosed(r.Err, g.m)
				}
				if c.isClosed() {
					return fillPending(res, pending, ErrClosed), ErrClosed
				}
				if err != nil && ended(ctx) {
					continue // still pending; the loop ends below
				}
				v := classify(err, t.epoch(), b.ops[i].op != wire.OpCounterAdd)
				c.note(v, err, g.m)
				switch v {
				case done:
					r.Err = err
					res[i], pending[i] = r, false
					left--
				case refresh:
					var we *wire.Error
					if errors.As(err, &we) {
						want = max(want, we.Epoch)
					}
					tried[i], last = exhausted, err
				default:
					tried[i]++
					last = err
				}
			}
		}
		if ended(ctx) {
			break
		}
	}
	if left == 0 {
		return res, nil
	}
	if c.isClosed() {
		return fillPending(res, pending, ErrClosed), ErrClosed
	}
	err := ctxErr(ctx, "batch", last)
	return fillPending(res, pending, err), err
}

// execGroup sends g's requests to g's node as one client.Batch.
func (c *Client) execGroup(ctx context.Context, t *table, ops []batchOp, g *batchGroup) {
	g.err = c.attempt(ctx, t, g.m, func(ctx context.Context, n *client.Client) error {
		nb := n.Batch()
		for _, i := range g.idx {
			ops[i].addTo(nb)
		}
		res, err := nb.Exec(ctx)
		if res == nil {
			return err
		}
		g.res = make([]client.BatchResult, len(res))
		for j, r := range res {
			r.Value = bytes.Clone(r.Value)
			g.res[j] = r
		}
		nb.Reset() // releases the buffers the results aliased
		return nil
	})
}

// fillPending gives err to every request still pending.
func fillPending(res []client.BatchResult, pending []bool, err error) []client.BatchResult {
	for i, p := range pending {
		if p {
			res[i] = client.BatchResult{Err: err}
		}
	}
	return res
}
