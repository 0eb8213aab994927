package remote

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/lattice"
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
type KV struct{ Store Store }

var _ executor.KV = KV{}

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

// WatchedKV is a KV whose storage node tells which of the keys an
// executor's cache holds were written (OpWatch, OpChanged on a connection
// of its own), so that the cache stays fresh: it is an executor.Watcher.
//
// Watch and Unwatch only note the change; TakeChanged, which the executor
// calls every executor.Config.RefreshEvery, sends the noted watches, then
// asks for the keys written since the last time. When the watch connection
// is lost, the node has forgotten the watches: TakeChanged dials again,
// watches every key once more and reports every key changed (writes may
// have gone unseen meanwhile); until it can dial, it reports every key
// changed each time, which makes the cache re-read them (a poll).
type WatchedKV struct {
	KV
	// Dial opens the watch connection (client.(*Client).Watcher).
	Dial func(ctx context.Context) (*client.Watcher, error)
	// Timeout bounds one TakeChanged's round trips. Default 1 s.
	Timeout time.Duration
	// Logger receives connection failures. Default slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	keys    map[string]int  // watched key → Watch calls not undone
	pending map[string]bool // key → watch (true) or unwatch (false), not yet sent
	w       *client.Watcher // nil: not connected
	failing bool            // the last dial failed (logged once)
}

var _ executor.Watcher = (*WatchedKV)(nil)

// Watch notes that the cache holds key.
func (k *WatchedKV) Watch(key []byte) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.keys == nil {
		k.keys = make(map[string]int)
		k.pending = make(map[string]bool)
	}
	s := string(key)
	k.keys[s]++
	if k.keys[s] == 1 {
		k.pending[s] = true
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
		k.pending[s] = false
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

	k.mu.Lock()
	w := k.w
	var watch, unwatch [][]byte
	if w != nil {
		for key, on := range k.pending {
			if on {
				watch = append(watch, []byte(key))
			} else {
				unwatch = append(unwatch, []byte(key))
			}
		}
		clear(k.pending)
	}
	k.mu.Unlock()

	if w == nil {
		return k.reconnect(ctx, dst)
	}
	err := w.Unwatch(ctx, unwatch...)
	if err == nil {
		err = w.Watch(ctx, watch...)
	}
	if err == nil {
		var got []string
		if got, err = w.Changed(ctx, dst); err == nil {
			return got
		}
	}
	k.log().Warn("watch connection failed; re-reading every cached key", "err", err)
	k.mu.Lock()
	if k.w == w {
		k.w = nil
	}
	k.mu.Unlock()
	_ = w.Close()
	return k.reconnect(ctx, dst)
}

// reconnect dials the watch connection and watches every key; it reports
// every key changed whether or not it succeeds.
func (k *WatchedKV) reconnect(ctx context.Context, dst []string) []string {
	k.mu.Lock()
	all := make([][]byte, 0, len(k.keys))
	for key := range k.keys {
		all = append(all, []byte(key))
		dst = append(dst, key)
	}
	k.mu.Unlock()
	if k.Dial == nil {
		return dst
	}
	w, err := k.Dial(ctx)
	if err == nil {
		if err = w.Watch(ctx, all...); err != nil {
			_ = w.Close()
		}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		if !k.failing {
			k.log().Warn("cannot watch the cached keys; re-reading them every refresh", "err", err)
		}
		k.failing = true
		return dst
	}
	if k.failing {
		k.log().Info("watching the cached keys again")
	}
	k.failing = false
	k.w = w
	// The new connection watches the snapshot above: pending changes it
	// already reflects are done; later ones stay for the next call.
	watched := make(map[string]bool, len(all))
	for _, key := range all {
		watched[string(key)] = true
	}
	for key, on := range k.pending {
		if on == watched[key] {
			delete(k.pending, key)
		}
	}
	return dst
}

// Close closes the watch connection.
func (k *WatchedKV) Close() error {
	k.mu.Lock()
	w := k.w
	k.w = nil
	k.mu.Unlock()
	if w != nil {
		return w.Close()
	}
	return nil
}

func (k *WatchedKV) log() *slog.Logger {
	if k.Logger != nil {
		return k.Logger
	}
	return slog.Default()
}
