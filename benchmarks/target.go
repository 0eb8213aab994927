package benchmarks

import (
	"context"
	"errors"
	"io"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/clusterclient"
)

// target is what a worker sends its load to: one node (client.Client) or a
// cluster (clusterclient.Client).
type target interface {
	io.Closer
	Batch() batch
}

// batch is the part of client.Batch and clusterclient.Batch a worker uses.
type batch interface {
	Get(key []byte)
	Set(key, value []byte)
	Reset()
	Exec(ctx context.Context) ([]client.BatchResult, error)
}

// dialTarget returns one worker's connection: to cfg.Addr, or a cluster
// client of cfg.Route.
func dialTarget(ctx context.Context, cfg KVSConfig) (target, error) {
	ack, err := cfg.ack()
	if err != nil {
		return nil, err
	}
	opts := client.Options{Conns: 1, Name: "trellis-bench"}
	if len(cfg.Route) > 0 {
		cc, err := clusterclient.Dial(ctx, clusterclient.Options{Route: cfg.Route, Client: opts, NoFanOut: cfg.NoFanOut})
		if err != nil {
			return nil, err
		}
		if ack != 0 {
			cc = cc.WithAck(ack)
		}
		return &clusterTarget{c: cc}, nil
	}
	c, err := client.Dial(ctx, cfg.Addr, opts)
	if err != nil {
		return nil, err
	}
	if ack != 0 {
		c = c.WithAck(ack)
	}
	return nodeTarget{c}, nil
}

type nodeTarget struct{ *client.Client }

func (t nodeTarget) Batch() batch { return t.Client.Batch() }

// clusterTarget sends a batch of one operation as a single call (Get or
// Set: a quorum Set then fans out), a larger batch as a cluster client's
// batch.
type clusterTarget struct{ c *clusterclient.Client }

func (t *clusterTarget) Close() error { return t.c.Close() }

func (t *clusterTarget) Batch() batch { return &clusterBatch{c: t.c, b: t.c.Batch()} }

type clusterBatch struct {
	c   *clusterclient.Client
	b   *clusterclient.Batch
	one struct {
		get        bool
		key, value []byte
	}
	res [1]client.BatchResult
}

func (b *clusterBatch) Get(key []byte) {
	b.one.get, b.one.key = true, key
	b.b.Get(key)
}

func (b *clusterBatch) Set(key, value []byte) {
	b.one.get, b.one.key, b.one.value = false, key, value
	b.b.Set(key, value)
}

func (b *clusterBatch) Reset() { b.b.Reset() }

func (b *clusterBatch) Exec(ctx context.Context) ([]client.BatchResult, error) {
	if b.b.Len() != 1 {
		return b.b.Exec(ctx)
	}
	var r client.BatchResult
	if b.one.get {
		r.Value, r.Err = b.c.GetBytes(ctx, string(b.one.key))
	} else {
		r.Err = b.c.Set(ctx, string(b.one.key), b.one.value)
	}
	if r.Err != nil && ctx.Err() != nil && !errors.Is(r.Err, client.ErrNotFound) {
		return nil, r.Err // the run is over
	}
	b.res[0] = r
	return b.res[:], nil
}
