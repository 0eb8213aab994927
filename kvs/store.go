package kvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/ring"
)

// StoreConfig configures a Store. The zero value is valid: every field has a
// default.
type StoreConfig struct {
	// NodeID identifies this node as a writer: it breaks LWW ties and names
	// this node's entries in counters and sets. Default: random.
	NodeID uint64
	// Shards is the number of shards keys are spread over. Default 16.
	Shards int
	// VNodes is the number of points each shard has on the local ring.
	// Default 64.
	VNodes int
	// MaxKey is the largest key accepted, in bytes. Default 64 KiB.
	MaxKey int
	// MaxValue is the largest value accepted, in bytes (an LWW value, a set
	// member, a lattice's encoding). Default 8 MiB.
	MaxValue int
	// TombstoneGrace is how long a delete is remembered (so that older
	// writes arriving late cannot resurrect the key). Default 10 minutes.
	TombstoneGrace time.Duration
	// CollectEvery is how often Run collects expired tombstones. Default 1
	// minute.
	CollectEvery time.Duration
	// Now returns the current time; it drives the hybrid logical clock and
	// tombstone expiry. Default time.Now.
	Now func() time.Time
	// Disk, when set, persists the store's cells: NewStore loads them, and
	// Run writes changed cells behind the memory tier. Default none (the
	// store keeps its data in memory only).
	Disk Disk
	// FlushEvery is how often Run writes changed cells to Disk (a durable
	// write makes it flush at once). Default 10 ms.
	FlushEvery time.Duration
	// MemoryBudget bounds the memory the store's keys and values take, in
	// bytes of the store's own accounting (ShardStats.Bytes; INFO
	// used_memory_dataset). Above it, cold keys whose state is on disk leave
	// memory at a flush, and an operation on one reads it back first: every
	// method behaves as if it had never left. It needs a Disk that
	// implements DiskReader. The budget is soft: keys changed since the last
	// flush, tombstones and values written after a delete (until
	// TombstoneGrace has passed) are never evicted, and memory exceeds the
	// budget by what is written or read back between two flushes
	// (FlushEvery). docs/decisions.md §6. Default 0: no budget.
	MemoryBudget int64
	// Logger receives the store's logs. Default slog.Default().
	Logger *slog.Logger
}

// Defaults for StoreConfig.
const (
	DefaultShards         = 16
	DefaultVNodes         = 64
	DefaultMaxKey         = 64 << 10
	DefaultMaxValue       = 8 << 20
	DefaultTombstoneGrace = 10 * time.Minute
	DefaultCollectEvery   = time.Minute
	DefaultFlushEvery     = 10 * time.Millisecond
)

func (c StoreConfig) withDefaults() StoreConfig {
	if c.NodeID == 0 {
		c.NodeID = rand.Uint64() | 1
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.VNodes == 0 {
		c.VNodes = DefaultVNodes
	}
	if c.MaxKey == 0 {
		c.MaxKey = DefaultMaxKey
	}
	if c.MaxValue == 0 {
		c.MaxValue = DefaultMaxValue
	}
	if c.TombstoneGrace == 0 {
		c.TombstoneGrace = DefaultTombstoneGrace
	}
	if c.CollectEvery == 0 {
		c.CollectEvery = DefaultCollectEvery
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.FlushEvery == 0 {
		c.FlushEvery = DefaultFlushEvery
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// maxLimit bounds MaxKey and MaxValue: a table record's length must stay
// below 1 << 31 (its top bit is the record's reference bit).
const maxLimit = 1 << 30

// Validate reports whether c (after defaults) is usable.
func (c StoreConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Shards < 1 || c.Shards > 4096:
		return fmt.Errorf("kvs: shards must be in [1, 4096], got %d", c.Shards)
	case c.VNodes < 1:
		return fmt.Errorf("kvs: vnodes must be positive, got %d", c.VNodes)
	case c.MaxKey < 1 || c.MaxValue < 1:
		return errors.New("kvs: key and value limits must be positive")
	case c.MaxKey > maxLimit || c.MaxValue > maxLimit:
		return fmt.Errorf("kvs: key and value limits must be at most %d bytes", maxLimit)
	case c.TombstoneGrace < 0 || c.CollectEvery < 0 || c.FlushEvery < 0:
		return errors.New("kvs: durations must not be negative")
	case c.MemoryBudget < 0:
		return fmt.Errorf("kvs: memory budget must not be negative, got %d", c.MemoryBudget)
	case c.MemoryBudget > 0 && c.Disk == nil:
		return errors.New("kvs: a memory budget needs a disk to evict keys to (a data directory)")
	}
	if _, ok := c.Disk.(DiskReader); c.MemoryBudget > 0 && !ok {
		return fmt.Errorf("kvs: a memory budget needs a disk that reads keys back (kvs.DiskReader); %T is not one", c.Disk)
	}
	return nil
}

// Store is a storage node's keys: lattices in shards, each shard guarded by
// its own mutex and placed by a local consistent-hash ring. Every method is
// safe for concurrent use; an operation on one key locks only that key's
// shard, once.
//
// Byte slices passed in are not retained: the store copies what it keeps.
// Byte slices returned alias nothing inside the store.
type Store struct {
	cfg     StoreConfig
	ring    *ring.Ring
	shards  []*shard
	clock   *lattice.Clock
	persist *persistence // nil without a disk
	reader  DiskReader   // cfg.Disk, with a memory budget
	running atomic.Bool  // Run is running
	watch   watch        // watched keys' changes (watch.go)

	// evictMu orders the flusher's evictions and stale-entry cleanup
	// against the start and end of Each (eachActive). Lock order: eachMu,
	// then evictMu, then a shard's mu.
	eachMu     sync.Mutex // one Each at a time, with a budget
	evictMu    sync.Mutex
	eachActive bool // guarded by evictMu: no eviction, no stale cleanup
}

// NewStore returns a store holding what cfg.Disk holds (empty without a
// disk).
func NewStore(cfg StoreConfig) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	r, err := ring.NewShards(cfg.Shards, cfg.VNodes)
	if err != nil {
		return nil, fmt.Errorf("kvs: local ring: %w", err)
	}
	s := &Store{cfg: cfg, ring: r, clock: lattice.NewClock(func() int64 { return cfg.Now().UnixMilli() })}
	s.shards = make([]*shard, cfg.Shards)
	for i := range s.shards {
		s.shards[i] = newShard()
	}
	if cfg.MemoryBudget > 0 {
		s.reader = cfg.Disk.(DiskReader) // Validate checked
	}
	if cfg.Disk != nil {
		s.persist = &persistence{disk: cfg.Disk, log: cfg.Logger, wake: make(chan struct{}, 1)}
		start := time.Now()
		n, err := s.load()
		if err != nil {
			return nil, fmt.Errorf("kvs: loading from disk: %w", err)
		}
		evicted := 0
		for _, sh := range s.shards {
			evicted += sh.evicted
		}
		cfg.Logger.Info("store loaded from disk", "keys", n, "left_on_disk", evicted,
			"took", time.Since(start).Round(time.Millisecond))
	}
	return s, nil
}

// Config returns the store's configuration with defaults filled in.
func (s *Store) Config() StoreConfig { return s.cfg }

// NodeID returns the writer id the store stamps its writes with.
func (s *Store) NodeID() uint64 { return s.cfg.NodeID }

// Clock returns the store's hybrid logical clock.
func (s *Store) Clock() *lattice.Clock { return s.clock }

// shardFor returns key's shard, its owner on the local ring (looked up with
// ring.ShardHash so that shard placement is independent of node placement,
// docs/placement.md), and key's tag in the shard's table.
func (s *Store) shardFor(key []byte) (*shard, uint32) {
	h := ring.KeyHash(key)
	return s.shards[s.ring.Owner(ring.ShardHash(h))], tagOf(h)
}

func (s *Store) stamp() lattice.Stamp {
	return lattice.Stamp{TS: s.clock.Now(), Writer: s.cfg.NodeID}
}

func (s *Store) checkKey(key []byte) error {
	if len(key) > s.cfg.MaxKey {
		return fmt.Errorf("%w: key of %d bytes exceeds the limit of %d", ErrTooLarge, len(key), s.cfg.MaxKey)
	}
	return nil
}

func (s *Store) checkValue(key, value []byte) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if len(value) > s.cfg.MaxValue {
		return fmt.Errorf("%w: value of %d bytes exceeds the limit of %d", ErrTooLarge, len(value), s.cfg.MaxValue)
	}
	return nil
}

// prefetchChunk is how many keys Prefetch handles per pass.
const prefetchChunk = 32

// Prefetch brings into the cache what operations on keys are about to
// touch: each key's table slot and the record there. Called on a pipelined
// batch before executing it, it makes the batch's cache misses overlap
// instead of following one another (docs/decisions.md). It takes no lock,
// changes nothing, and may run concurrently with any other method.
func (s *Store) Prefetch(keys [][]byte) {
	var sl [prefetchChunk]*slots
	var home [prefetchChunk]int
	for len(keys) > 0 {
		n := min(len(keys), prefetchChunk)
		// Three passes, each a run of independent memory accesses: the
		// slots' cache lines, then the record pointers in them, then the
		// records' lines (a 100-byte value's record spans three).
		for i, k := range keys[:n] {
			h := ring.KeyHash(k)
			sl[i] = s.shards[s.ring.Owner(ring.ShardHash(h))].lww.s.Load()
			if sl[i] != nil {
				home[i] = sl[i].home(tagOf(h))
				prefetch(uintptr(unsafe.Pointer(&sl[i].tags[home[i]])))
				prefetch(uintptr(unsafe.Pointer(&sl[i].recs[home[i]])))
			}
		}
		for i := range n {
			if sl[i] == nil {
				continue
			}
			if r := uintptr(unsafe.Pointer(sl[i].recs[home[i]].Load())); r != 0 {
				prefetch(r)
				prefetch(r + 64)
				prefetch(r + 128)
			}
		}
		keys = keys[n:]
	}
}

// Get appends the encoding of key's value (lattice.Encode form) to dst.
// ErrNotFound if the key holds no value.
func (s *Store) Get(key, dst []byte) ([]byte, error) {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		return dst, err
	}
	dst, err = sh.getLocked(tag, key, dst)
	sh.unlock(t0)
	return dst, err
}

// GetString appends key's value read as a Redis string: an LWW register's
// bytes, or a counter's decimal value. ErrTypeMismatch for other lattices.
func (s *Store) GetString(key, dst []byte) ([]byte, error) {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		return dst, err
	}
	dst, err = sh.getStringLocked(tag, key, dst)
	sh.unlock(t0)
	return dst, err
}

// Lookup returns a copy of key's value as a lattice. ErrNotFound if none.
func (s *Store) Lookup(key []byte) (lattice.Lattice, error) {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		return nil, err
	}
	v, err := sh.lookupLocked(tag, key)
	sh.unlock(t0)
	return v, err
}

// Exists reports whether key holds a value. A key that cannot be read back
// from disk (an error, logged) does not.
func (s *Store) Exists(key []byte) bool {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		s.logReadBackError(err)
		return false
	}
	ok := sh.existsLocked(tag, key)
	sh.unlock(t0)
	return ok
}

// Type returns the lattice type of key's value; ok is false if it has none
// (or it cannot be read back from disk: an error, logged).
func (s *Store) Type(key []byte) (t lattice.Type, ok bool) {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		s.logReadBackError(err)
		return 0, false
	}
	t, ok = sh.typeLocked(tag, key)
	sh.unlock(t0)
	return t, ok
}

// logReadBackError logs a failure to read a key back from disk for a method
// that has no error to return it with.
func (s *Store) logReadBackError(err error) {
	s.cfg.Logger.Error("key read back from disk failed", "err", err)
}

// Put merges v into key's value. ErrTypeMismatch (nothing changes) if the
// key holds a lattice of another type.
func (s *Store) Put(key []byte, v lattice.Lattice) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	if v.Size() > s.cfg.MaxValue {
		return fmt.Errorf("%w: value of about %d bytes exceeds the limit of %d", ErrTooLarge, v.Size(), s.cfg.MaxValue)
	}
	return s.update(key, func(sh *shard, tag uint32) error { return sh.putLocked(tag, key, v) })
}

// PutEncoded merges the lattice encoded in enc into key's value. An LWW
// register takes a path that neither decodes into objects nor allocates
// unless the key is new or its value grows.
func (s *Store) PutEncoded(key, enc []byte) error {
	if err := s.checkValue(key, enc); err != nil {
		return err
	}
	if len(enc) > 0 && lattice.Type(enc[0]) == lattice.TypeLWW {
		ts, writer, value, err := lattice.ParseLWW(enc)
		if err != nil {
			return fmt.Errorf("%w: %w", errBadValue, err)
		}
		s.clock.Observe(ts) // (a client's stamp: this node's later writes order after it)
		return s.update(key, func(sh *shard, tag uint32) error { return sh.setLocked(tag, key, ts, writer, value, nil) })
	}
	v, err := lattice.Decode(enc)
	if err != nil {
		return fmt.Errorf("%w: %w", errBadValue, err)
	}
	return s.update(key, func(sh *shard, tag uint32) error { return sh.putLocked(tag, key, v) })
}

// update runs fn with key's shard locked and key resident (read back from
// disk if the memory budget evicted it), and records the change for the
// disk if fn succeeds.
func (s *Store) update(key []byte, fn func(sh *shard, tag uint32) error) error {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		return err
	}
	if err = fn(sh, tag); err == nil {
		s.markDirtyLocked(sh, key)
	}
	sh.unlock(t0)
	return err
}

// SetLWW writes value to key's LWW register, stamped with this node's clock.
// ErrTypeMismatch if the key holds another lattice type.
func (s *Store) SetLWW(key, value []byte) error {
	if err := s.checkValue(key, value); err != nil {
		return err
	}
	ts := s.clock.Now()
	return s.update(key, func(sh *shard, tag uint32) error { return sh.setLocked(tag, key, ts, s.cfg.NodeID, value, nil) })
}

// Overwrite is Redis's SET: it writes value to key's LWW register, and if the
// key holds another lattice type it replaces it (a new epoch, as a delete
// followed by a write would).
func (s *Store) Overwrite(key, value []byte) error {
	if err := s.checkValue(key, value); err != nil {
		return err
	}
	st := s.stamp()
	return s.update(key, func(sh *shard, tag uint32) error { return sh.setLocked(tag, key, st.TS, st.Writer, value, &st) })
}

// Delete deletes key: it records a tombstone that merges like any value, so
// the delete wins over writes that did not see it. It reports whether the
// key held a value.
func (s *Store) Delete(key []byte) (existed bool, err error) {
	if err := s.checkKey(key); err != nil {
		return false, err
	}
	st := s.stamp()
	err = s.update(key, func(sh *shard, tag uint32) error {
		existed = sh.deleteLocked(tag, key, st)
		return nil
	})
	return existed, err
}

// SetAdd adds members to the observed-remove set at key (creating it) and
// returns how many were not present. ErrTypeMismatch if the key holds
// another type (a grow-only set accepts adds too).
func (s *Store) SetAdd(key []byte, members [][]byte) (int, error) {
	if err := s.checkMembers(key, members); err != nil {
		return 0, err
	}
	var n int
	err := s.update(key, func(sh *shard, tag uint32) (err error) {
		n, err = sh.setAddLocked(tag, key, members, s.cfg.NodeID)
		return err
	})
	return n, err
}

// SetRemove removes members from the observed-remove set at key and returns
// how many were present.
func (s *Store) SetRemove(key []byte, members [][]byte) (int, error) {
	if err := s.checkMembers(key, members); err != nil {
		return 0, err
	}
	var n int
	err := s.update(key, func(sh *shard, tag uint32) (err error) {
		n, err = sh.setRemoveLocked(tag, key, members)
		return err
	})
	return n, err
}

func (s *Store) checkMembers(key []byte, members [][]byte) error {
	if err := s.checkKey(key); err != nil {
		return err
	}
	for _, m := range members {
		if len(m) > s.cfg.MaxValue {
			return fmt.Errorf("%w: member of %d bytes exceeds the limit of %d", ErrTooLarge, len(m), s.cfg.MaxValue)
		}
	}
	return nil
}

// Members returns copies of the members of the set at key (observed-remove,
// grow-only or ordered), in byte order. ErrNotFound if the key holds nothing.
func (s *Store) Members(key []byte) ([][]byte, error) {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		return nil, err
	}
	m, err := sh.membersLocked(tag, key)
	sh.unlock(t0)
	return m, err
}

// IsMember reports whether member is in the set at key. A missing key is an
// empty set.
func (s *Store) IsMember(key, member []byte) (bool, error) {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		return false, err
	}
	ok, err := sh.isMemberLocked(tag, key, member)
	sh.unlock(t0)
	return ok, err
}

// Card returns the number of members of the set at key (0 for a missing key).
func (s *Store) Card(key []byte) (int, error) {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		return 0, err
	}
	n, err := sh.cardLocked(tag, key)
	sh.unlock(t0)
	return n, err
}

// CounterAdd adds delta to the PN-counter at key (creating it) and returns the
// new value. ErrTypeMismatch if the key holds another type, ErrOverflow if
// the value would leave int64 (nothing changes).
func (s *Store) CounterAdd(key []byte, delta int64) (int64, error) {
	return s.counterAdd(key, delta, false)
}

// IncrBy is Redis's INCRBY: like CounterAdd, but a key holding an LWW
// register whose bytes are a decimal integer becomes a counter starting from
// that integer (a new epoch, as Redis users expect after SET k 10; INCR k).
// ErrNotInteger if the register holds anything else.
func (s *Store) IncrBy(key []byte, delta int64) (int64, error) {
	return s.counterAdd(key, delta, true)
}

func (s *Store) counterAdd(key []byte, delta int64, convert bool) (int64, error) {
	if err := s.checkKey(key); err != nil {
		return 0, err
	}
	var st lattice.Stamp
	if convert {
		st = s.stamp()
	}
	var v int64
	err := s.update(key, func(sh *shard, tag uint32) (err error) {
		v, err = sh.counterAddLocked(tag, key, delta, s.cfg.NodeID, convert, st)
		return err
	})
	return v, err
}

// ShardStats describes one shard's contents and work.
type ShardStats struct {
	Keys       int           // keys holding a value, in memory or evicted
	Tombstones int           // deleted keys still remembered
	Reads      uint64        // read operations
	Writes     uint64        // write operations (including deletes)
	Bytes      int64         // approximate memory held by keys and values
	Busy       time.Duration // time spent holding the shard (sampled, see shard.lock)

	// With a memory budget (StoreConfig.MemoryBudget):
	Evicted    int    // of Keys, those whose only copy is on disk now
	Evictions  uint64 // keys moved out of memory since the store was built
	ReadBacks  uint64 // evicted keys read back from disk
	DiskMisses uint64 // disk lookups for a key absent from memory that found nothing
}

// Stats returns every shard's statistics, in shard order.
func (s *Store) Stats() []ShardStats {
	out := make([]ShardStats, len(s.shards))
	for i, sh := range s.shards {
		sh.mu.Lock()
		out[i] = ShardStats{
			Keys: sh.live + sh.evicted, Tombstones: sh.tombstones,
			Reads: sh.stats.reads, Writes: sh.stats.writes,
			Bytes: sh.stats.bytes, Busy: time.Duration(sh.stats.busyNanos),
			Evicted: sh.evicted, Evictions: sh.stats.evictions,
			ReadBacks: sh.stats.readBacks, DiskMisses: sh.stats.diskMisses,
		}
		sh.mu.Unlock()
	}
	return out
}

// Len returns the number of keys holding a value, evicted ones included
// (tombstones not counted).
func (s *Store) Len() int {
	n := 0
	for _, sh := range s.shards {
		sh.mu.Lock()
		n += sh.live + sh.evicted
		sh.mu.Unlock()
	}
	return n
}

// Collect forgets tombstones and delete epochs older than the grace period
// as of now, and returns how many keys it touched.
func (s *Store) Collect(now time.Time) int {
	horizon := lattice.MakeTimestamp(now.Add(-s.cfg.TombstoneGrace).UnixMilli(), 0)
	n := 0
	for _, sh := range s.shards {
		sh.mu.Lock()
		n += sh.collectLocked(horizon, func(k string, removed bool) {
			// The disk's copy holds the tombstone or the epoch: the
			// flusher deletes it (and writes what is left).
			if removed {
				s.removedLocked(sh, []byte(k))
			} else {
				s.staleLocked(sh, []byte(k))
			}
		})
		sh.mu.Unlock()
	}
	return n
}

// Run collects expired tombstones and, with a disk, writes changed cells
// behind the memory tier, until ctx is done; then it writes and syncs what
// is left. It returns the error of that final flush, if any.
func (s *Store) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("kvs: Store.Run called twice (a Server runs its store)")
	}
	defer s.running.Store(false)
	collect := time.NewTicker(s.cfg.CollectEvery)
	defer collect.Stop()
	var flush <-chan time.Time
	var wake <-chan struct{}
	if s.persist != nil {
		t := time.NewTicker(s.cfg.FlushEvery)
		defer t.Stop()
		flush, wake = t.C, s.persist.wake
	}
	for {
		select {
		case <-ctx.Done():
			return s.Flush()
		case <-collect.C:
			s.Collect(s.cfg.Now())
		case <-flush:
			s.flushAndLog(false)
		case <-wake:
			s.flushAndLog(true)
		}
	}
}

// Flush writes every changed cell to the disk and syncs it. Run does this
// by itself; Flush is for a store that is not running (tests, tools).
func (s *Store) Flush() error {
	if s.persist == nil {
		return nil
	}
	return s.flush(true)
}

func (s *Store) flushAndLog(sync bool) {
	if err := s.flush(sync); err != nil {
		s.persist.log.Error("flush failed; will retry", "err", err)
	}
}
