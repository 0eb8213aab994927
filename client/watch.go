package client

import (
	"context"

	"github.com/trellisdb/trellis/wire"
)

// Watcher watches keys of one node: it learns which of them were written
// since it last asked (wire.OpWatch, OpUnwatch, OpChanged). Watches belong
// to a connection, so a Watcher has one of its own, apart from its
// Client's pool, and never replaces it: if the connection is lost, its
// watches are gone with it, and every later call returns an error wrapping
// ErrConnLost. The caller then closes it, makes another and reads its keys
// again (writes made in between are not reported). A Watcher is safe for
// concurrent use. It is independent of the Client that made it: closing
// either leaves the other open.
type Watcher struct {
	c  *Client // dialled with; only its options and address are used
	cn *conn
}

// Watcher dials a connection of its own to c's node, with c's options
// (Token included), and returns a Watcher on it that watches nothing.
func (c *Client) Watcher(ctx context.Context) (*Watcher, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	cn, _, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	return &Watcher{c: c, cn: cn}, nil
}

// DialWatcher dials a Watcher of the node at addr, without a pool.
func DialWatcher(ctx context.Context, addr string, opts Options) (*Watcher, error) {
	opts = opts.withDefaults()
	c := &Client{pool: &pool{addr: addr, opts: opts}}
	cn, _, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	return &Watcher{c: c, cn: cn}, nil
}

// Watch starts recording writes of keys: a write made after Watch returns
// is reported by Changed (so watch a key before reading it). Watches are a
// set: watching a key twice is watching it once. ErrTooLarge, with nothing
// applied, for a key over the node's key limit or beyond the keys one
// connection may watch (65536 by default).
func (w *Watcher) Watch(ctx context.Context, keys ...[]byte) error {
	return w.nilOp(ctx, &wire.Request{Op: wire.OpWatch, Keys: keys})
}

// Unwatch stops recording writes of keys and forgets those not yet
// reported. Keys not watched are ignored.
func (w *Watcher) Unwatch(ctx context.Context, keys ...[]byte) error {
	return w.nilOp(ctx, &wire.Request{Op: wire.OpUnwatch, Keys: keys})
}

// Changed appends to dst the watched keys written since the last Changed,
// each once whatever the number of writes, in no particular order, and the
// node forgets them. A reply holds at most about 4 MiB of keys: when more
// changed, the rest come with the next call.
func (w *Watcher) Changed(ctx context.Context, dst []string) ([]string, error) {
	cl, err := w.do(ctx, &wire.Request{Op: wire.OpChanged})
	if err != nil {
		return dst, err
	}
	defer cl.release()
	items, err := cl.resp.Items(nil)
	if err != nil {
		return dst, err
	}
	for _, it := range items {
		if err := it.Err(); err != nil {
			return dst, err
		}
		dst = append(dst, string(it.Value))
	}
	return dst, nil
}

// Close closes the Watcher's connection, which ends its watches. Calls in
// flight fail with ErrClosed. Close may be called more than once.
func (w *Watcher) Close() error {
	w.cn.close()
	return nil
}

func (w *Watcher) nilOp(ctx context.Context, req *wire.Request) error {
	cl, err := w.do(ctx, req)
	if err != nil {
		return err
	}
	cl.release()
	return nil
}

// do sends req on the Watcher's connection and returns its response, or the
// server's error. The caller must release the call.
func (w *Watcher) do(ctx context.Context, req *wire.Request) (*call, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxErr(ctx)
	}
	cl, err := w.c.roundTrip(ctx, w.cn, req)
	if err != nil {
		return nil, err
	}
	if err := cl.resp.Err(); err != nil {
		cl.release()
		return nil, err
	}
	return cl, nil
}
