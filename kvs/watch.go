package kvs

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// watch is the store's index of watched keys: for each key, the
// subscriptions that watch it. A write of a watched key marks it changed in
// each of them. A store in which nothing is watched pays one atomic load
// per write.
//
// Lock order: a shard's lock, then watch.mu, then a Subscription's mu. The
// write path (noteLocked) takes all three; Watch, Unwatch and Close take
// watch.mu, and a Subscription's mu to forget a change; TakeChanged only
// a Subscription's.
type watch struct {
	n  atomic.Int64 // keys in index
	mu sync.Mutex
	// index maps a watched key to its watchers; an entry exists only while
	// one subscription at least watches the key.
	index map[string]*watchedKey

	sharedOnce sync.Once
	shared     *Subscription // the one of Directs built as literals
}

// watchedKey is a watched key and the subscriptions that watch it.
type watchedKey struct {
	key  string // the index's key, reused when noting a change
	subs []*Subscription
}

// Subscription is one subscriber's set of watched keys and of those among
// them written since its last TakeChanged. A write by anyone of a key it
// watches (through either port, a peer's replication, or the store's
// methods) is recorded in it, and in every other subscription watching the
// key, independently. Safe for concurrent use.
//
// A write made after Watch returns is reported; one made before it is not,
// so a subscriber that caches a key's value watches it before it reads it.
type Subscription struct {
	w *watch

	// Guarded by w.mu.
	keys   map[string]int // key → Watch calls not yet undone
	closed bool

	mu      sync.Mutex
	changed map[string]struct{} // guarded by mu
}

// Subscribe returns a new subscription to writes of the store's keys,
// watching none. Close it when done: until then the keys it watches cost
// the store's writes of them.
func (s *Store) Subscribe() *Subscription { return &Subscription{w: &s.watch} }

// sharedSubscription returns the store's subscription shared by every Direct
// built without NewDirect.
func (s *Store) sharedSubscription() *Subscription {
	w := &s.watch
	w.sharedOnce.Do(func() { w.shared = s.Subscribe() })
	return w.shared
}

// watchedKeys returns how many distinct keys some subscription watches.
func (s *Store) watchedKeys() int { return int(s.watch.n.Load()) }

// Watch starts recording writes of key. Calls count: the key stays watched
// until Unwatch has been called as many times. Watch on a closed
// subscription does nothing.
func (sub *Subscription) Watch(key []byte) {
	w := sub.w
	w.mu.Lock()
	if !sub.closed {
		if sub.keys[string(key)] == 0 {
			w.addLocked(sub, string(key))
		}
		sub.keys[string(key)]++
	}
	w.mu.Unlock()
}

// Unwatch undoes one Watch of key; the last one stops recording its writes
// and forgets a write of it not yet taken. Unwatch of a key not watched does
// nothing.
func (sub *Subscription) Unwatch(key []byte) {
	w := sub.w
	w.mu.Lock()
	switch c := sub.keys[string(key)]; {
	case c > 1:
		sub.keys[string(key)] = c - 1
	case c == 1:
		w.removeLocked(sub, string(key))
	}
	w.mu.Unlock()
}

// TakeChanged appends to dst the keys it watches that were written since the
// last call, and forgets them. The order is unspecified.
func (sub *Subscription) TakeChanged(dst []string) []string {
	sub.mu.Lock()
	for k := range sub.changed {
		dst = append(dst, k)
	}
	clear(sub.changed)
	sub.mu.Unlock()
	return dst
}

// takeChanged is TakeChanged bounded: it takes keys while their lengths add
// up to at most budget bytes (the first key whatever its length) and
// leaves the others recorded.
func (sub *Subscription) takeChanged(dst []string, budget int) []string {
	sub.mu.Lock()
	first := len(dst)
	for k := range sub.changed {
		budget -= len(k)
		if budget < 0 && len(dst) > first {
			break
		}
		dst = append(dst, k)
		delete(sub.changed, k)
	}
	sub.mu.Unlock()
	return dst
}

// Close stops every watch of the subscription and forgets what it
// recorded. Later calls of its methods do nothing (TakeChanged returns dst).
// Close may be called more than once.
func (sub *Subscription) Close() {
	w := sub.w
	w.mu.Lock()
	for k := range sub.keys {
		w.removeLocked(sub, k)
	}
	sub.closed = true
	w.mu.Unlock()
}

// len returns how many distinct keys the subscription watches.
func (sub *Subscription) len() int {
	sub.w.mu.Lock()
	defer sub.w.mu.Unlock()
	return len(sub.keys)
}

// watchSet makes the subscription watch each of keys once, as a set: a key
// it watches already is left as it is. If that would make it watch more
// than max distinct keys, it changes nothing and returns ErrTooLarge. It is
// the native port's WATCH, whose watches do not count.
func (sub *Subscription) watchSet(keys [][]byte, max int) error {
	w := sub.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if sub.closed {
		return nil
	}
	before := len(sub.keys)
	var added [][]byte
	for _, k := range keys {
		if sub.keys[string(k)] == 0 {
			w.addLocked(sub, string(k))
			sub.keys[string(k)] = 1
			added = append(added, k)
		}
	}
	if len(sub.keys) <= max {
		return nil
	}
	// Undo: nobody saw the keys added, since noting a write takes w.mu.
	for _, k := range added {
		w.removeLocked(sub, string(k))
	}
	return fmt.Errorf("%w: a connection watches at most %d keys (%d watched, %d more asked)",
		ErrTooLarge, max, before, len(added))
}

// unwatchSet stops the subscription's watches of keys, whatever their
// count. Keys it does not watch are ignored.
func (sub *Subscription) unwatchSet(keys [][]byte) {
	w := sub.w
	w.mu.Lock()
	for _, k := range keys {
		if sub.keys[string(k)] != 0 {
			w.removeLocked(sub, string(k))
		}
	}
	w.mu.Unlock()
}

// addLocked adds sub to key's watchers. sub does not watch key yet.
func (w *watch) addLocked(sub *Subscription, key string) {
	if sub.keys == nil {
		sub.keys = make(map[string]int)
	}
	if w.index == nil {
		w.index = make(map[string]*watchedKey)
	}
	wk := w.index[key]
	if wk == nil {
		wk = &watchedKey{key: key}
		w.index[key] = wk
		w.n.Add(1)
	}
	wk.subs = append(wk.subs, sub)
}

// removeLocked removes sub from key's watchers and forgets key in sub. sub
// watches key.
func (w *watch) removeLocked(sub *Subscription, key string) {
	delete(sub.keys, key)
	sub.mu.Lock()
	delete(sub.changed, key)
	sub.mu.Unlock()
	wk := w.index[key]
	if wk == nil {
		return
	}
	for i, o := range wk.subs {
		if o == sub {
			last := len(wk.subs) - 1
			wk.subs[i] = wk.subs[last]
			wk.subs[last] = nil
			wk.subs = wk.subs[:last]
			break
		}
	}
	if len(wk.subs) == 0 {
		delete(w.index, key)
		w.n.Add(-1)
	}
}

// noteLocked records a write of key in the subscriptions that watch it.
// The key's shard lock is held.
func (w *watch) noteLocked(key []byte) {
	if w.n.Load() == 0 {
		return
	}
	w.mu.Lock()
	if wk := w.index[string(key)]; wk != nil {
		for _, sub := range wk.subs {
			sub.mu.Lock()
			if sub.changed == nil {
				sub.changed = make(map[string]struct{})
			}
			sub.changed[wk.key] = struct{}{}
			sub.mu.Unlock()
		}
	}
	w.mu.Unlock()
}
