package executor

import (
	"container/list"
	"context"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/singleflight"

	"github.com/trellisdb/trellis/lattice"
)

// Cache is an executor node's cache of KVS values: reads are served from it
// when the key is present, misses are fetched from the KV (concurrent misses
// of one key share one fetch), writes merge into it. It holds at most its
// byte budget (keys plus encodings), evicting the least recently used keys.
// Values pushed by storage nodes for keys it holds merge in (Update).
// Safe for concurrent use.
type Cache struct {
	kv      KV
	watcher Watcher // kv, if it tells of changes; nil otherwise
	budget  int64

	mu      sync.Mutex
	entries map[string]*list.Element // of *cacheEntry
	lru     list.List                // front: most recently used
	size    int64

	// recheck holds keys cached since the last Refresh: a write that
	// landed between their fetch and the start of their watch would go
	// unreported, so Refresh reads each of them once more.
	recheck map[string]struct{}

	fetches      singleflight.Group
	hits, misses atomic.Uint64
}

type cacheEntry struct {
	key string
	enc []byte // lattice encoding, never modified in place
}

func (e *cacheEntry) cost() int64 { return int64(len(e.key) + len(e.enc) + 64) }

// DefaultCacheBytes is a cache's default budget.
const DefaultCacheBytes = 64 << 20

// MaxCacheKeys bounds the keys a cache holds, whatever its budget: a
// storage node watches at most this many keys for one connection
// (kvs.DefaultMaxWatchKeys).
const MaxCacheKeys = 1 << 16

// NewCache returns a cache over kv holding at most budget bytes (0:
// DefaultCacheBytes).
func NewCache(kv KV, budget int64) *Cache {
	if budget <= 0 {
		budget = DefaultCacheBytes
	}
	w, _ := kv.(Watcher)
	return &Cache{kv: kv, watcher: w, budget: budget, entries: make(map[string]*list.Element)}
}

// Get returns key's value encoding, from the cache or fetched. The slice
// must not be modified.
func (c *Cache) Get(ctx context.Context, key []byte) ([]byte, error) {
	if enc, ok := c.Peek(key); ok {
		c.hits.Add(1)
		return enc, nil
	}
	c.misses.Add(1)
	v, err, _ := c.fetches.Do(string(key), func() (any, error) {
		// The fetch must not end with the first caller's context alone,
		// since others share it: it ends with that context, and the
		// waiters that remain retry on their own.
		enc, err := c.kv.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		return c.merge(string(key), enc), nil
	})
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// Peek returns key's cached encoding without fetching.
func (c *Cache) Peek(key []byte) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[string(key)]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry).enc, true
}

// Write merges a local write into the cache (whether or not it held key)
// and returns the merged encoding.
func (c *Cache) Write(key string, enc []byte) []byte { return c.merge(key, enc) }

// Update merges a value pushed by a storage node, if the cache holds key.
func (c *Cache) Update(key string, enc []byte) {
	c.mu.Lock()
	_, ok := c.entries[key]
	c.mu.Unlock()
	if ok {
		c.merge(key, enc)
	}
}

// merge merges enc into key's entry (adding it) and returns the result.
func (c *Cache) merge(key string, enc []byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*cacheEntry)
		merged, ok := mergeEncodings(e.enc, enc)
		if ok {
			c.size += int64(len(merged) - len(e.enc))
			e.enc = merged
		}
		c.lru.MoveToFront(el)
		c.evictLocked()
		return e.enc
	}
	e := &cacheEntry{key: key, enc: enc}
	c.entries[key] = c.lru.PushFront(e)
	if c.watcher != nil {
		c.watcher.Watch([]byte(key))
		if c.recheck == nil {
			c.recheck = make(map[string]struct{})
		}
		c.recheck[key] = struct{}{}
	}
	c.size += e.cost()
	c.evictLocked()
	return enc
}

func (c *Cache) evictLocked() {
	for (c.size > c.budget || c.lru.Len() > MaxCacheKeys) && c.lru.Len() > 1 {
		el := c.lru.Back()
		e := el.Value.(*cacheEntry)
		c.lru.Remove(el)
		delete(c.entries, e.key)
		c.size -= e.cost()
		if c.watcher != nil {
			c.watcher.Unwatch([]byte(e.key))
		}
		delete(c.recheck, e.key)
	}
}

// mergeEncodings returns the join of two lattice encodings. ok is false if
// they do not merge (a type mismatch or a bad encoding): the cache then
// keeps the newer one, b, since the store is the judge and will answer the
// next fetch.
func mergeEncodings(a, b []byte) (_ []byte, ok bool) {
	la, err := lattice.Decode(a)
	if err != nil {
		return b, true
	}
	lb, err := lattice.Decode(b)
	if err != nil {
		return a, false
	}
	if _, err := la.Merge(lb); err != nil {
		return b, true
	}
	return lattice.Encode(la), true
}

// Refresh reads again the keys the KV reports changed, and those cached
// since the last Refresh, and merges their values in. It returns how many
// it read.
func (c *Cache) Refresh(ctx context.Context) int {
	if c.watcher == nil {
		return 0
	}
	c.mu.Lock()
	recheck := c.recheck
	c.recheck = nil
	c.mu.Unlock()
	// The watcher first: a remote one registers new watches here, before
	// the reads below.
	keys := c.watcher.TakeChanged(nil)
	for _, k := range keys {
		delete(recheck, k)
	}
	for k := range recheck {
		keys = append(keys, k)
	}
	for _, k := range keys {
		enc, err := c.kv.Get(ctx, []byte(k))
		if err != nil {
			// Deleted (or unreadable): drop it; the next read fetches.
			c.drop(k)
			continue
		}
		c.Update(k, enc)
	}
	return len(keys)
}

// drop removes key from the cache.
func (c *Cache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[key]
	if !ok {
		return
	}
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.entries, key)
	c.size -= e.cost()
	if c.watcher != nil {
		c.watcher.Unwatch([]byte(key))
	}
	delete(c.recheck, key)
}

// Keys returns up to max of the cached keys, most recently used first: the
// summary an executor reports to coordinators for placement.
func (c *Cache) Keys(max int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, min(max, c.lru.Len()))
	for el := c.lru.Front(); el != nil && len(out) < max; el = el.Next() {
		out = append(out, el.Value.(*cacheEntry).key)
	}
	return out
}

// CacheStats are a cache's counters.
type CacheStats struct {
	Keys         int
	Bytes        int64
	Hits, Misses uint64
}

// Stats returns the cache's counters.
func (c *Cache) Stats() CacheStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return CacheStats{Keys: len(c.entries), Bytes: c.size, Hits: c.hits.Load(), Misses: c.misses.Load()}
}
