package client

import (
	"context"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// Batch collects requests to send together: Exec writes them in one write on
// one connection and waits for every response. Requests run in order; each
// has its own result. A Batch is not safe for concurrent use; reuse it with
// Reset to avoid allocations.
type Batch struct {
	c    *Client
	reqs []wire.Request
	g    *group // the last Exec's calls, whose buffers results alias
	res  []BatchResult
}

// BatchResult is one request's outcome.
type BatchResult struct {
	// Value is the result of a Get (the value's lattice encoding) or Ping;
	// it is valid until the Batch is reset or executed again.
	Value []byte
	Int   int64 // the result of Delete, CounterAdd, SetAdd, SetRemove
	Err   error
}

// Batch returns an empty batch.
func (c *Client) Batch() *Batch { return &Batch{c: c} }

// Reset empties the batch, keeping its memory.
func (b *Batch) Reset() {
	b.releaseCalls()
	b.reqs = b.reqs[:0]
	b.res = b.res[:0]
}

func (b *Batch) releaseCalls() {
	if b.g != nil {
		b.g.release()
		b.g = nil
	}
}

// Len returns the number of requests in the batch.
func (b *Batch) Len() int { return len(b.reqs) }

func (b *Batch) add(r wire.Request) { b.reqs = append(b.reqs, r) }

// Get adds a read of key's encoded value. Keys and values passed to a Batch
// must stay unchanged until Exec returns.
func (b *Batch) Get(key []byte) { b.add(wire.Request{Op: wire.OpGet, Key: key}) }

// Set adds a server-stamped LWW write.
func (b *Batch) Set(key, value []byte) { b.add(wire.Request{Op: wire.OpSet, Key: key, Value: value}) }

// Put adds a merge of an encoded lattice into key.
func (b *Batch) Put(key, encoded []byte) {
	b.add(wire.Request{Op: wire.OpPut, Key: key, Value: encoded})
}

// Delete adds a delete.
func (b *Batch) Delete(key []byte) { b.add(wire.Request{Op: wire.OpDelete, Key: key}) }

// CounterAdd adds a counter increment.
func (b *Batch) CounterAdd(key []byte, delta int64) {
	b.add(wire.Request{Op: wire.OpCounterAdd, Key: key, Int: delta})
}

// Exec sends every request and waits for every response. The error is for
// the batch as a whole (a lost connection, the context's end); each result
// carries its own server error.
func (b *Batch) Exec(ctx context.Context) ([]BatchResult, error) {
	b.releaseCalls()
	b.res = b.res[:0]
	if len(b.reqs) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxErr(ctx)
	}
	cn, err := b.c.pick(ctx)
	if err != nil {
		return nil, err
	}
	if b.c.ack != wire.AckDefault || b.c.epoch != 0 {
		for i := range b.reqs {
			if b.c.ack != wire.AckDefault && b.reqs[i].Op.IsWrite() {
				b.reqs[i].Opts.Ack = b.c.ack
			}
			if b.c.epoch != 0 {
				b.reqs[i].Opts.Epoch = b.c.epoch
			}
		}
	}
	g := newGroup(len(b.reqs))
	err = cn.send(ctx, g.calls, func(buf []byte, id uint64) []byte {
		for i := range b.reqs {
			b.reqs[i].ID = id + uint64(i)
			buf = b.reqs[i].AppendFrame(buf)
		}
		return buf
	})
	if err != nil {
		g.release()
		return nil, err
	}
	if abandoned, err := g.wait(ctx); abandoned {
		return nil, err // the reader releases g
	}
	b.g = g
	var first error
	for _, cl := range g.calls {
		if cl.err != nil {
			if first == nil {
				first = cl.err
			}
			b.res = append(b.res, BatchResult{Err: cl.err})
			continue
		}
		r := BatchResult{Err: cl.resp.Err()}
		if r.Err == nil {
			rd := pack.NewReader(cl.resp.Result)
			switch rd.Peek() {
			case pack.KindInt:
				r.Int, r.Err = rd.Int()
			case pack.KindBin, pack.KindStr:
				r.Value, r.Err = rd.Bytes()
			}
		}
		b.res = append(b.res, r)
	}
	return b.res, first
}
