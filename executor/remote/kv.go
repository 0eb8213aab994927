package remote

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/clusterclient"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

// Store is the part of a KVS client the roles use: *client.Client (one
// storage node) and *clusterclient.Client (a cluster) both have it. A
// coordinator's client needs the cluster's system token
// (client.Options.Token) to write the definitions it keeps in the reserved
// namespace.
type Store interface {
	Get(ctx context.Context, key string) (lattice.Lattice, error)
	Put(ctx context.Context, key string, v lattice.Lattice) error
	Delete(ctx context.Context, key string) (bool, error)
	SetAdd(ctx context.Context, key string, members ...[]byte) (int, error)
	SetRemove(ctx context.Context, key string, members ...[]byte) (int, error)
	SetMembers(ctx context.Context, key string) ([][]byte, error)
}

// KV is executor.KV over a Store.
type KV struct {
	Store Store
	// WithAck returns a view of Store whose writes wait for ack (the
	// clients' WithAck); nil: writes use Store's default whatever a call
	// asks for.
	WithAck func(ack wire.Ack) Store
}

var (
	_ executor.KV        = KV{}
	_ executor.AckPutter = KV{}
)

// ClientKV returns the KV of one storage node's client.
func ClientKV(c *client.Client) KV {
	return KV{Store: c, WithAck: func(ack wire.Ack) Store { return c.WithAck(ack) }}
}

// ClusterKV returns the KV of a cluster's client.
func ClusterKV(c *clusterclient.Client) KV {
	return KV{Store: c, WithAck: func(ack wire.Ack) Store { return c.WithAck(ack) }}
}

// Get returns key's lattice encoding.
func (k KV) Get(ctx context.Context, key []byte) ([]byte, error) {
	v, err := k.Store.Get(ctx, string(key))
	if err != nil {
		return nil, err
	}
	return lattice.Encode(v), nil
}

// Put merges the lattice encoded in enc into key.
func (k KV) Put(ctx context.Context, key, enc []byte) error {
	v, err := lattice.Decode(enc)
	if err != nil {
		return err
	}
	return k.Store.Put(ctx, string(key), v)
}

// PutAck merges the lattice encoded in enc into key, waiting for ack.
func (k KV) PutAck(ctx context.Context, key, enc []byte, ack wire.Ack) error {
	if k.WithAck == nil || ack == wire.AckDefault {
		return k.Put(ctx, key, enc)
	}
	v, err := lattice.Decode(enc)
	if err != nil {
		return err
	}
	return k.WithAck(ack).Put(ctx, string(key), v)
}

// Delete deletes key.
func (k KV) Delete(ctx context.Context, key []byte) (bool, error) {
	return k.Store.Delete(ctx, string(key))
}

// SetAdd adds member to the set at key.
func (k KV) SetAdd(ctx context.Context, key, member []byte) error {
	_, err := k.Store.SetAdd(ctx, string(key), member)
	return err
}

// SetRemove removes member from the set at key.
func (k KV) SetRemove(ctx context.Context, key, member []byte) error {
	_, err := k.Store.SetRemove(ctx, string(key), member)
	return err
}

// Members returns the members of the set at key.
func (k KV) Members(ctx context.Context, key []byte) ([][]byte, error) {
	return k.Store.SetMembers(ctx, string(key))
}

// WatchedKV is a KV whose storage nodes tell which of the keys an
// executor's cache holds were written (OpWatch and OpChanged, on a
// connection of its own to each node), so that the cache stays fresh: it is
// an executor.Watcher.
//
// Every node named by Nodes watches every cached key: a node reports the
// writes of the keys it stores, whoever made them (a client, a replica, the
// gossip), so in a cluster a write reaches the executor through its
// replicas. Watch and Unwatch only note the change; TakeChanged, which the
// executor calls every executor.Config.RefreshEvery, connects to nodes that
// appeared (and drops those that went), sends the noted watches, then asks
// each node for the keys written since the last time.
//
// When a node's watch connection is lost, the node has forgotten its
// watches: TakeChanged dials again, watches every key once more and reports
// every key changed (writes may have gone unseen meanwhile); while it cannot
// dial, it reports every key changed each time, which makes the cache
// re-read them (a poll).
type WatchedKV struct {
	KV
	// Nodes returns the native addresses of the storage nodes to watch at.
	// Called by every TakeChanged. Required.
	Nodes func() []string
	// Dial opens a watch connection to a node. Required.
	Dial func(ctx context.Context, addr string) (*client.Watcher, error)
	// Timeout bounds one TakeChanged's round trips. Default 1 s.
	Timeout time.Duration
	// Logger receives connection failures. Default slog.Default().
	Logger *slog.Logger
	// Done, when closed, means the process is stopping: connection
	// failures (the storage nodes stopping too) are not logged. Optional.
	Done <-chan struct{}

	mu    sync.Mutex
	keys  map[string]int        // watched key → Watch calls not undone
	nodes map[string]*watchConn // by node address
}

// watchConn is the watch connection to one node.
type watchConn struct {
	addr    string
	w       *client.Watcher // nil: not connected
	pending map[string]bool // key → watch (true) or unwatch (false), not yet sent; only while connected
	failing bool            // the last dial failed (logged once)
}

var _ executor.Watcher = (*WatchedKV)(nil)

// Watch notes that the cache holds key.
func (k *WatchedKV) Watch(key []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]int)
	}
	s := string(key)
	k.keys[s]++
	if k.keys[s] == 1 {
		for _, c := range k.nodes {
			if c.w != nil {
				c.pending[s] = true
			}
		}
	}
}

// Unwatch undoes one Watch of key.
func (k *WatchedKV) Unwatch(key []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	s := string(key)
	switch n := k.keys[s]; {
	case n > 1:
		k.keys[s] = n - 1
	case n == 1:
		delete(k.keys, s)
		for _, c := range k.nodes {
			if c.w != nil {
				c.pending[s] = false
			}
		}
	}
}

// TakeChanged appends the watched keys written since the last call.
func (k *WatchedKV) TakeChanged(dst []string) []string {
	timeout := k.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	conns, gone := k.reconcile(k.Nodes())
	for _, w := range gone {
		_ = w.Close()
	}
	changed := make(map[string]struct{})
	all := false
	for _, c := range conns {
		if !k.poll(ctx, c, changed) {
			all = true
		}
	}
	if all {
		k.mu.Lock()
		for key := range k.keys {
			changed[key] = struct{}{}
		}
		k.mu.Unlock()
	}
	for key := range changed {
		dst = append(dst, key)
	}
	return dst
}

// reconcile makes the node set the one given, and returns the connections
// to poll and the watchers of nodes that went.
func (k *WatchedKV) reconcile(addrs []string) (conns []*watchConn, gone []*client.Watcher) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.nodes == nil {
		k.nodes = make(map[string]*watchConn)
	}
	want := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
		if k.nodes[a] == nil {
			k.nodes[a] = &watchConn{addr: a}
		}
	}
	for a, c := range k.nodes {
		if !want[a] {
			if c.w != nil {
				gone = append(gone, c.w)
			}
			delete(k.nodes, a)
			continue
		}
		conns = append(conns, c)
	}
	return conns, gone
}

// poll sends c's noted watches and adds the keys its node reports written
// to changed. false: the node could not tell (every key counts as changed).
// Only TakeChanged's goroutine calls it, so c.w changes only here.
func (k *WatchedKV) poll(ctx context.Context, c *watchConn, changed map[string]struct{}) bool {
	if c.w == nil {
		k.connect(ctx, c)
		return false
	}
	k.mu.Lock()
	var watch, unwatch [][]byte
	for key, on := range c.pending {
		if on {
			watch = append(watch, []byte(key))
		} else {
			unwatch = append(unwatch, []byte(key))
		}
	}
	clear(c.pending)
	k.mu.Unlock()
	err := inChunks(unwatch, func(keys [][]byte) error { return c.w.Unwatch(ctx, keys...) })
	if err == nil {
		err = inChunks(watch, func(keys [][]byte) error { return c.w.Watch(ctx, keys...) })
	}
	var got []string
	if err == nil {
		got, err = c.w.Changed(ctx, nil)
	}
	if err == nil {
		for _, key := range got {
			changed[key] = struct{}{}
		}
		return true
	}
	k.log().Warn("watch connection failed; re-reading every cached key", "node", c.addr, "err", err)
	k.mu.Lock()
	w := c.w
	c.w = nil
	k.mu.Unlock()
	_ = w.Close()
	k.connect(ctx, c)
	return false
}

// connect dials c's node and watches every key there.
func (k *WatchedKV) connect(ctx context.Context, c *watchConn) {
	k.mu.Lock()
	all := make([][]byte, 0, len(k.keys))
	for key := range k.keys {
		all = append(all, []byte(key))
	}
	k.mu.Unlock()
	w, err := k.Dial(ctx, c.addr)
	if err == nil {
		if err = inChunks(all, func(keys [][]byte) error { return w.Watch(ctx, keys...) }); err != nil {
			_ = w.Close()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		if !c.failing {
			k.log().Warn("cannot watch the cached keys; re-reading them every refresh", "node", c.addr, "err", err)
		}
		c.failing = true
		return
	}
	if c.failing {
		k.log().Info("watching the cached keys again", "node", c.addr)
	}
	c.failing = false
	c.w = w
	// The node watches the snapshot above; keys watched or unwatched
	// since then are the pending changes.
	c.pending = make(map[string]bool)
	watched := make(map[string]bool, len(all))
	for _, key := range all {
		watched[string(key)] = true
	}
	for key := range k.keys {
		if !watched[key] {
			c.pending[key] = true
		}
	}
	for key := range watched {
		if k.keys[key] == 0 {
			c.pending[key] = false
		}
	}
}

// watchChunk bounds the keys of one WATCH or UNWATCH request, so that a
// cache of many keys does not make a frame beyond the node's limit.
const watchChunk = 1024

// inChunks calls f with keys, watchChunk at a time (not at all for none).
func inChunks(keys [][]byte, f func([][]byte) error) error {
	for len(keys) > 0 {
		n := min(len(keys), watchChunk)
		if err := f(keys[:n]); err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// Close closes the watch connections.
func (k *WatchedKV) Close() error {
	k.mu.Lock()
	var ws []*client.Watcher
	for _, c := range k.nodes {
		if c.w != nil {
			ws = append(ws, c.w)
			c.w = nil
		}
	}
	k.mu.Unlock()
	for _, w := range ws {
		_ = w.Close()
	}
	return nil
}

func (k *WatchedKV) log() *slog.Logger {
	select {
	case <-k.Done:
		return slog.New(slog.DiscardHandler)
	default:
	}
	if k.Logger != nil {
		return k.Logger
	}
	return slog.Default()
}
