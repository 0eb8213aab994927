package kvs

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/ring"
)

// Change is one key's update in a Disk write: Cell is the key's cell
// encoding (lattice.Cell.AppendBinary) to merge into what the disk holds, or
// nil to delete the key.
type Change struct {
	Key, Cell []byte
}

// Disk is where a store keeps its cells across restarts (package disk
// provides one). Write is called only by the store's flusher, one call at a
// time; Scan only while the store is being built.
type Disk interface {
	// Write merges every change into the disk atomically; with sync it
	// returns once they are durable.
	Write(changes []Change, sync bool) error
	// Scan calls fn with every key and its cell encoding.
	Scan(fn func(key, cell []byte) error) error
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

	// Owned by the flusher goroutine.
	changes []Change
	buf     []byte
	taken   []dirtyLog
	seen    map[string]struct{}
	spans   []changeSpan
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

// flush writes every dirty key's current cell to the disk; with sync (or
// when a durable write waits) it syncs and releases the waiters it covers.
// On a disk error the dirty keys are kept for the next flush: nothing a
// writer was told is stored is dropped.
func (s *Store) flush(sync bool) error {
	p := s.persist
	p.mu.Lock()
	if len(p.waiters) > 0 {
		sync = true
	}
	p.mu.Unlock()
	target := p.writeSeq.Load()
	if p.taken == nil {
		p.taken = make([]dirtyLog, len(s.shards))
		p.seen = make(map[string]struct{})
	}
	p.changes, p.buf = p.changes[:0], p.buf[:0]
	// Take each shard's dirty log and encode the current cells of its keys.
	// The encodings go into one buffer; Change slices are set afterwards,
	// once the buffer has stopped moving.
	p.spans = p.spans[:0]
	for i, sh := range s.shards {
		sh.mu.Lock()
		sh.dirty, p.taken[i] = p.taken[i], sh.dirty
		sh.dirty.reset()
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
				c1 = -1 // gone: a tombstone collected after its grace
			}
			p.spans = append(p.spans, changeSpan{k0, c0, c0, c1})
		}
		sh.mu.Unlock()
	}
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
	// latency.
	for start := 0; start < len(p.changes) || (start == 0 && sync); start += flushChunk {
		end := min(start+flushChunk, len(p.changes))
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
	if sync {
		p.syncedSeq.Store(target)
		s.releaseWaiters(target)
	}
	return nil
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
// key holds nothing in memory (a collected tombstone).
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
// any write would place them; nothing is marked dirty.
func (s *Store) load() (int, error) {
	n := 0
	err := s.persist.disk.Scan(func(key, enc []byte) error {
		sh, tag := s.shardFor(key)
		if err := sh.loadLocked(tag, key, enc); err != nil {
			return fmt.Errorf("key %.64q: %w", key, err)
		}
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
	sh.insertCellLocked(key, &c)
	return nil
}
