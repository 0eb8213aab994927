package kvs

import (
	"sync"
	"sync/atomic"
)

// watch records which watched keys changed, for a cache in the node's
// process that must learn of writes to the keys it holds (the executor of
// `trellis up`). A store without watched keys pays one atomic load per
// write. Lock order: a shard's lock, then watch.mu.
type watch struct {
	n       atomic.Int64 // watched keys
	mu      sync.Mutex
	keys    map[string]int // key → watchers
	changed map[string]struct{}
}

// Watch starts recording changes of key (once per call: Unwatch as many
// times).
func (s *Store) Watch(key []byte) {
	w := &s.watch
	w.mu.Lock()
	if w.keys == nil {
		w.keys = make(map[string]int)
		w.changed = make(map[string]struct{})
	}
	if w.keys[string(key)] == 0 {
		w.n.Add(1)
	}
	w.keys[string(key)]++
	w.mu.Unlock()
}

// Unwatch undoes one Watch of key.
func (s *Store) Unwatch(key []byte) {
	w := &s.watch
	w.mu.Lock()
	if c := w.keys[string(key)]; c > 1 {
		w.keys[string(key)] = c - 1
	} else if c == 1 {
		delete(w.keys, string(key))
		delete(w.changed, string(key))
		w.n.Add(-1)
	}
	w.mu.Unlock()
}

// TakeChanged appends the watched keys written since the last call to dst
// and forgets them.
func (s *Store) TakeChanged(dst []string) []string {
	w := &s.watch
	if w.n.Load() == 0 {
		return dst
	}
	w.mu.Lock()
	for k := range w.changed {
		dst = append(dst, k)
		delete(w.changed, k)
	}
	w.mu.Unlock()
	return dst
}

// noteLocked records a write of key if it is watched. The key's shard lock
// is held.
func (w *watch) noteLocked(key []byte) {
	if w.n.Load() == 0 {
		return
	}
	w.mu.Lock()
	if _, ok := w.keys[string(key)]; ok {
		w.changed[string(key)] = struct{}{}
	}
	w.mu.Unlock()
}
