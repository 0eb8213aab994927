package kvs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/ring"
	"github.com/trellisdb/trellis/wire"
)

// Change is one key's update in a Disk write: Cell is the key's cell
// encoding (lattice.Cell.AppendBinary) to merge into what the disk holds, or
// nil to delete the key.
type Change struct {
	Key, Cell []byte
}

// Disk is where a store keeps its cells across restarts (package disk
// provides one). Write is called only by the store's flusher, one call at a
// time. Scan is called while the store is being built and, with a memory
// budget, by Each, concurrently with Write.
type Disk interface {
	// Write merges every change into the disk atomically, in order (a
	// delete followed by a merge of the same key leaves what was merged);
	// with sync it returns once they are durable.
	Write(changes []Change, sync bool) error
	// Scan calls fn with every key and its cell encoding, as of some moment
	// after every Write that returned before the call, until fn returns an
	// error, which Scan returns.
	Scan(fn func(key, cell []byte) error) error
}

// DiskReader is a Disk that reads one key back; a store with a memory
// budget needs one (StoreConfig.MemoryBudget).
type DiskReader interface {
	Disk
	// ReadCell appends key's cell encoding to dst; found is false if the
	// disk holds nothing for key. It sees every Write that has returned, and
	// may run concurrently with Write, Scan and other ReadCells.
	ReadCell(key, dst []byte) (out []byte, found bool, err error)
}

// dirtyLog records the keys a shard changed since its last flush, end to
// end in one buffer (no allocation per key). A key may appear more than
// once; the flusher writes it once.
type dirtyLog struct {
	keys []byte
	ends []int
}

func (d *dirtyLog) add(key []byte) {
	d.keys = append(d.keys, key...)
	d.ends = append(d.ends, len(d.keys))
}

func (d *dirtyLog) reset() {
	d.keys, d.ends = d.keys[:0], d.ends[:0]
}

// persistence is a store's write-behind state. Guarded as each field says.
type persistence struct {
	disk Disk
	log  *slog.Logger

	// writeSeq numbers the store's writes; a write takes its number under
	// its shard's lock, after recording its key in the shard's dirty log.
	writeSeq     atomic.Uint64
	persistedSeq atomic.Uint64 // every write numbered <= it is on disk (maybe not synced)
	syncedSeq    atomic.Uint64 // every write numbered <= it is durable
	wake         chan struct{}

	mu      sync.Mutex // guards waiters
	waiters []durableWaiter

	// flushMu makes flushes (Run's and Flush's) one at a time, which the
	// eviction's reasoning relies on (evict.go). It guards the fields
	// below.
	flushMu sync.Mutex
	changes []Change
	buf     []byte
	taken   []dirtyLog
	takeNo  []uint64 // each shard's take number in this flush
	seen    map[string]struct{}
	spans   []changeSpan
	targets []int64 // eviction targets, per shard
}

// flushChunk is how many changes the flusher writes to the disk at a time.
const flushChunk = 256

// changeSpan locates a Change's key and cell in persistence.buf (c1 < 0:
// delete).
type changeSpan struct{ k0, k1, c0, c1 int }

type durableWaiter struct {
	seq uint64
	fn  func()
}

// markDirtyLocked records that key changed. The shard's lock is held.
func (s *Store) markDirtyLocked(sh *shard, key []byte) {
	sh.changes++
	s.watch.noteLocked(key)
	if s.persist == nil {
		return
	}
	sh.dirty.add(key)
	s.persist.writeSeq.Add(1)
}

// WriteSeq returns the number of the store's latest write. A caller that
// wants its write durable waits (OnDurable) for this number after writing.
// It is 0 when the store has no disk.
func (s *Store) WriteSeq() uint64 {
	if s.persist == nil {
		return 0
	}
	return s.persist.writeSeq.Load()
}

// HasDisk reports whether the store persists its cells.
func (s *Store) HasDisk() bool { return s.persist != nil }

// Durable reports whether every write numbered up to seq is on disk and
// synced.
func (s *Store) Durable(seq uint64) bool {
	return s.persist == nil || s.persist.syncedSeq.Load() >= seq
}

// OnDurable calls fn, on the store's flusher goroutine or at once, when every
// write numbered up to seq is on disk and synced, and makes the flusher sync
// soon. fn must not block. With no disk it calls fn at once.
func (s *Store) OnDurable(seq uint64, fn func()) {
	p := s.persist
	if p == nil || p.syncedSeq.Load() >= seq {
		fn()
		return
	}
	p.mu.Lock()
	p.waiters = append(p.waiters, durableWaiter{seq, fn})
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// ErrNoDisk answers a durable write on a store that persists nothing.
var ErrNoDisk = wire.Errorf(wire.CodeUnavailable, "a durable acknowledgement needs a node with a data directory (--data-dir)")

// WaitDurable waits until every write made so far is on disk and synced.
// ErrNoDisk for a store without a disk; the context's error, wrapped, if it
// ends first.
func (s *Store) WaitDurable(ctx context.Context) error {
	if !s.HasDisk() {
		return ErrNoDisk
	}
	synced := make(chan struct{})
	s.OnDurable(s.WriteSeq(), func() { close(synced) })
	select {
	case <-synced:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the disk sync: %w", ctx.Err())
	}
}

// flush writes every dirty key's current cell to the disk; with sync (or
// when a durable write waits) it syncs and releases the waiters it covers.
// On a disk error the dirty keys are kept for the next flush: nothing a
// writer was told is stored is dropped.
func (s *Store) flush(sync bool) error {
	p := s.persist
	p.flushMu.Lock()
	defer p.flushMu.Unlock()
	p.mu.Lock()
	if len(p.waiters) > 0 {
		sync = true
	}
	p.mu.Unlock()
	target := p.writeSeq.Load()
	if p.taken == nil {
		p.taken = make([]dirtyLog, len(s.shards))
		p.takeNo = make([]uint64, len(s.shards))
		p.seen = make(map[string]struct{})
	}
	p.changes, p.buf = p.changes[:0], p.buf[:0]
	// With a memory budget over its budget, evict at the take (evict.go);
	// not while Each runs.
	s.evictMu.Lock()
	var targets []int64
	if !s.eachActive {
		targets = s.evictionTargets(p.targets)
		if targets != nil {
			p.targets = targets
		}
	}
	// Take each shard's dirty log and encode the current cells of its keys.
	// The encodings go into one buffer; Change slices are set afterwards,
	// once the buffer has stopped moving.
	p.spans = p.spans[:0]
	for i, sh := range s.shards {
		sh.mu.Lock()
		sh.dirty, p.taken[i] = p.taken[i], sh.dirty
		sh.dirty.reset()
		sh.takes++
		p.takeNo[i] = sh.takes
		d := &p.taken[i]
		start := 0
		clear(p.seen)
		for _, end := range d.ends {
			key := d.keys[start:end]
			start = end
			if _, dup := p.seen[string(key)]; dup {
				continue
			}
			p.seen[string(key)] = struct{}{}
			k0 := len(p.buf)
			p.buf = append(p.buf, key...)
			c0 := len(p.buf)
			var ok bool
			p.buf, ok = sh.appendCellLocked(tagOf(ring.KeyHash(key)), key, p.buf)
			c1 := len(p.buf)
			if !ok {
				c1 = -1 // gone: dropped, or a tombstone collected after its grace
			} else if _, stale := sh.stale[string(key)]; stale {
				// The disk's copy must not merge into the current state
				// (evict.go): delete it first, in the same Write.
				p.spans = append(p.spans, changeSpan{k0, c0, c0, -1})
			}
			p.spans = append(p.spans, changeSpan{k0, c0, c0, c1})
		}
		if targets != nil {
			sh.evictLocked(targets[i], p.seen)
		}
		sh.mu.Unlock()
	}
	s.evictMu.Unlock()
	for _, sp := range p.spans {
		ch := Change{Key: p.buf[sp.k0:sp.k1:sp.k1]}
		if sp.c1 >= 0 {
			ch.Cell = p.buf[sp.c0:sp.c1:sp.c1]
		}
		p.changes = append(p.changes, ch)
	}
	// Write in chunks, yielding between them: on a single CPU (GOMAXPROCS=1)
	// one long write would keep the event loops from running until the
	// scheduler preempts it (~10 ms), which shows up in every client's tail
	// latency. A stale copy's delete and the key's new state go in one
	// chunk: a crash between two chunks must not leave the key deleted.
	for start, end := 0, 0; start < len(p.changes) || (start == 0 && sync); start = end {
		end = min(start+flushChunk, len(p.changes))
		if end < len(p.changes) && p.changes[end-1].Cell == nil && bytes.Equal(p.changes[end-1].Key, p.changes[end].Key) {
			end++
		}
		last := end == len(p.changes)
		if err := p.disk.Write(p.changes[start:end], sync && last); err != nil {
			s.requeue()
			return fmt.Errorf("kvs: writing to disk: %w", err)
		}
		if last {
			break
		}
		runtime.Gosched()
	}
	p.persistedSeq.Store(target)
	s.forgetStale()
	if sync {
		p.syncedSeq.Store(target)
		s.releaseWaiters(target)
	}
	return nil
}

// forgetStale drops the stale entries (evict.go) whose rewrites the flush
// that just landed wrote. Not while Each runs: its disk pass relies on them
// to skip keys its disk snapshot may still hold.
func (s *Store) forgetStale() {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	if s.eachActive {
		return
	}
	for i, sh := range s.shards {
		sh.mu.Lock()
		if len(sh.stale) > 0 {
			sh.forgetStaleLocked(s.persist.takeNo[i])
		}
		sh.mu.Unlock()
	}
}

// UnflushedWrites returns how many writes the store has not yet written to
// its disk (0 without a disk): how far write-behind lags.
func (s *Store) UnflushedWrites() uint64 {
	if s.persist == nil {
		return 0
	}
	return s.persist.writeSeq.Load() - s.persist.persistedSeq.Load()
}

// requeue puts the keys of a failed flush back into the shards' dirty logs.
func (s *Store) requeue() {
	p := s.persist
	for i, sh := range s.shards {
		d := &p.taken[i]
		sh.mu.Lock()
		start := 0
		for _, end := range d.ends {
			sh.dirty.add(d.keys[start:end])
			start = end
		}
		sh.mu.Unlock()
	}
}

// releaseWaiters calls (and forgets) the waiters covered by synced.
func (s *Store) releaseWaiters(synced uint64) {
	p := s.persist
	p.mu.Lock()
	var ready []durableWaiter
	kept := p.waiters[:0]
	for _, w := range p.waiters {
		if w.seq <= synced {
			ready = append(ready, w)
		} else {
			kept = append(kept, w)
		}
	}
	clear(p.waiters[len(kept):])
	p.waiters = kept
	more := len(kept) > 0
	p.mu.Unlock()
	for _, w := range ready {
		w.fn()
	}
	if more { // writes that came in during this flush: sync again soon
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// appendCellLocked appends key's cell encoding to dst; ok is false when the
// key holds nothing in memory (a collected tombstone, a dropped key; or an
// evicted one: callers that may meet one make it resident first).
func (sh *shard) appendCellLocked(tag uint32, key, dst []byte) ([]byte, bool) {
	if i := sh.lww.find(tag, key); i >= 0 {
		return append(dst, sh.lwwAt(i)...), true
	}
	c, ok := sh.cells[string(key)]
	if !ok {
		return dst, false
	}
	out, err := c.AppendBinary(dst)
	if err != nil { // a value too large to encode cannot have been stored
		return dst, false
	}
	return out, true
}

// load fills the store from its disk, before it serves. Keys are placed as
// any write would place them; nothing is marked dirty. With a memory budget,
// once memory holds the budget the remaining values stay on disk, counted
// as evicted (tombstones and values with a delete epoch, which eviction
// never leaves on disk, are loaded all the same: evict.go).
func (s *Store) load() (int, error) {
	n := 0
	var held int64
	budget := s.cfg.MemoryBudget
	err := s.persist.disk.Scan(func(key, enc []byte) error {
		sh, tag := s.shardFor(key)
		if budget > 0 && held >= budget && evictable(enc) {
			sh.evicted++
			n++
			return nil
		}
		before := sh.stats.bytes
		if err := sh.loadLocked(tag, key, enc); err != nil {
			return fmt.Errorf("key %.64q: %w", key, err)
		}
		held += sh.stats.bytes - before
		n++
		return nil
	})
	return n, err
}

// loadLocked inserts key's stored cell. (Called before the store is shared,
// so no lock is needed; the name says what it assumes.)
func (sh *shard) loadLocked(tag uint32, key, enc []byte) error {
	if len(enc) > 0 && lattice.Type(enc[0]) == lattice.TypeLWW {
		ts, w, v, err := lattice.ParseLWW(enc)
		if err != nil {
			return err
		}
		sh.insertLWWLocked(tag, key, ts, w, v)
		return nil
	}
	c, err := lattice.DecodeCell(enc)
	if err != nil {
		return err
	}
	sh.insertCellLocked(key, c)
	return nil
}
