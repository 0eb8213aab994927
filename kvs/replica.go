package kvs

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/trellisdb/trellis/lattice"
)

// Cell appends key's cell encoding (lattice.Cell.AppendBinary: the value and
// the stamp of its last delete; a tombstone is a cell too) to dst. ok is
// false if the store holds nothing for key (or an evicted key cannot be
// read back from disk: an error, logged). Replication sends cells, never
// bare values, so that deletes travel like writes.
func (s *Store) Cell(key, dst []byte) (out []byte, ok bool) {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		s.logReadBackError(err)
		return dst, false
	}
	sh.stats.reads++
	out, ok = sh.appendCellLocked(tag, key, dst)
	sh.unlock(t0)
	return out, ok
}

// MergeCell merges a cell encoding received from another replica into key
// and reports whether the key changed. Unlike the client-facing writes it
// never refuses a type: replicas that took writes of different types
// converge by the lattice's ordinal sum (the larger type wins), as every
// replica must agree. The hybrid logical clock observes the cell's
// timestamps, so this node's later writes order after it.
func (s *Store) MergeCell(key, enc []byte) (changed bool, err error) {
	if err := s.checkValue(key, enc); err != nil {
		return false, err
	}
	in, err := lattice.DecodeCell(enc)
	if err != nil {
		return false, fmt.Errorf("%w: %w", errBadValue, err)
	}
	s.observe(in)
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		return false, err
	}
	changed = sh.mergeCellLocked(tag, key, in)
	if changed {
		s.markDirtyLocked(sh, key)
	}
	sh.unlock(t0)
	return changed, nil
}

// observe moves the clock past a received cell's timestamps.
func (s *Store) observe(c lattice.Cell) {
	if !c.Epoch.IsZero() {
		s.clock.Observe(c.Epoch.TS)
	}
	if w, ok := c.Value.(*lattice.LWW); ok {
		s.clock.Observe(w.TS)
	}
}

// mergeCellLocked joins in into key's cell, keeping the shard's invariant
// (an epoch-less LWW register lives in the table, everything else in cells).
func (sh *shard) mergeCellLocked(tag uint32, key []byte, in lattice.Cell) bool {
	sh.stats.writes++
	if i := sh.lww.find(tag, key); i >= 0 {
		if w, ok := in.Value.(*lattice.LWW); ok && in.Epoch.IsZero() {
			// The common case: a register meets the fast path's merge.
			changed, err := sh.mergeLWWLocked(i, key, w.TS, w.Writer, w.Value)
			return err == nil && changed
		}
		ts, w, v, err := sh.parseLWWAt(i)
		if err != nil {
			return false
		}
		merged := lattice.Cell{Value: &lattice.LWW{TS: ts, Writer: w, Value: bytes.Clone(v)}}
		if !merged.Merge(in) {
			return false
		}
		sh.removeLWWLocked(i)
		sh.placeCellLocked(tag, key, merged)
		return true
	}
	if c, ok := sh.cellLocked(key); ok {
		before := c.Size()
		wasLive, wasTomb := c.Value != nil, c.Deleted()
		if !c.Merge(in) {
			return false
		}
		sh.stats.bytes += int64(c.Size() - before)
		switch {
		case wasLive && c.Value == nil:
			sh.live--
			sh.tombstones++
		case wasTomb && c.Value != nil:
			sh.tombstones--
			sh.live++
		}
		if c.Epoch.IsZero() {
			if w, ok := c.Value.(*lattice.LWW); ok { // back to the fast path
				delete(sh.cells, string(key))
				sh.live--
				sh.stats.bytes -= int64(len(key) + w.Size() + entryOverhead)
				sh.insertLWWLocked(tag, key, w.TS, w.Writer, w.Value)
			}
		}
		return true
	}
	if in.Value == nil && in.Epoch.IsZero() {
		return false // nothing meets nothing
	}
	sh.placeCellLocked(tag, key, in.Clone())
	return true
}

// placeCellLocked stores c as key's cell; key must be in neither place.
func (sh *shard) placeCellLocked(tag uint32, key []byte, c lattice.Cell) {
	if w, ok := c.Value.(*lattice.LWW); ok && c.Epoch.IsZero() {
		sh.insertLWWLocked(tag, key, w.TS, w.Writer, w.Value)
		return
	}
	sh.insertCellLocked(key, c)
}

// Changes returns a count of the changes made to the store's contents
// (writes, merges, deletes, drops): when two calls return the same number,
// nothing changed in between. Anti-entropy uses it to reuse digests.
func (s *Store) Changes() uint64 {
	var n uint64
	for _, sh := range s.shards {
		sh.mu.Lock()
		n += sh.changes
		sh.mu.Unlock()
	}
	return n
}

// Each calls fn with every key the store holds and its cell encoding,
// including tombstones and evicted keys, once each. It visits memory one
// shard at a time (the shard is locked while its keys are visited, so fn
// must be quick and must not call the store), then, if the memory budget
// has evicted keys, scans the disk for them: a full scan of the disk tier
// with a shard lookup per key on it. With a budget, Eachs run one at a time
// and nothing is evicted while one runs. Each stops early when fn returns
// false. The slices are valid only during the call.
func (s *Store) Each(fn func(key, cell []byte) bool) {
	if s.reader == nil {
		s.eachMemory(fn, false)
		return
	}
	s.eachMu.Lock()
	defer s.eachMu.Unlock()
	s.evictMu.Lock()
	s.eachActive = true
	s.evictMu.Unlock()
	defer func() {
		for _, sh := range s.shards {
			sh.mu.Lock()
			sh.each = nil
			sh.mu.Unlock()
		}
		s.evictMu.Lock()
		s.eachActive = false
		s.evictMu.Unlock()
	}()
	// With eviction stopped, a shard that has evicted nothing now will not
	// read anything back: memory is then all there is.
	evicted := 0
	for _, sh := range s.shards {
		sh.mu.Lock()
		evicted += sh.evicted
		sh.mu.Unlock()
	}
	if !s.eachMemory(fn, evicted > 0) || evicted == 0 {
		return
	}
	s.eachDisk(fn)
}

// errStopEach stops eachDisk's scan when fn returns false.
var errStopEach = errors.New("kvs: Each stopped")

// eachDisk is Each's disk pass: it reports the keys on disk that the memory
// pass could not see (evict.go). A key on disk and not in memory is evicted,
// or removed from memory (stale: its entry is kept while Each runs); a key
// in memory that the memory pass missed was read back after its shard was
// visited (each.late; a removal takes it out).
func (s *Store) eachDisk(fn func(key, cell []byte) bool) {
	err := s.persist.disk.Scan(func(key, enc []byte) error {
		sh, tag := s.shardFor(key)
		sh.mu.Lock()
		var report bool
		if sh.residentLocked(tag, key) {
			if sh.each != nil { // (always: the memory pass visited every shard)
				_, report = sh.each.late[string(key)]
			}
		} else {
			_, removed := sh.stale[string(key)]
			report = !removed
		}
		sh.mu.Unlock()
		if !report {
			return nil
		}
		if !fn(key, enc) {
			return errStopEach
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopEach) {
		s.cfg.Logger.Error("Each: scanning the disk for evicted keys failed; some keys were not visited", "err", err)
	}
}

// eachMemory is Each's memory pass; it reports whether fn asked to go on.
// With late, each shard starts recording the keys it reads back once it has
// been visited.
func (s *Store) eachMemory(fn func(key, cell []byte) bool, late bool) bool {
	var buf []byte
	for _, sh := range s.shards {
		sh.mu.Lock()
		if late {
			sh.each = &eachState{late: map[string]struct{}{}}
		}
		cont := true
		sh.lww.each(func(key, value []byte) bool {
			cont = fn(key, value[:lattice.LWWEncodedLen(value)])
			return cont
		})
		if cont {
			for k, c := range sh.cells {
				var err error
				buf, err = c.AppendBinary(buf[:0])
				if err != nil {
					continue
				}
				if cont = fn([]byte(k), buf); !cont {
					break
				}
			}
		}
		sh.mu.Unlock()
		if !cont {
			return false
		}
	}
	return true
}

// DropIf removes key's copy from this store, memory and disk, if its cell
// encoding is still cell, and reports whether it did. Unlike Delete it
// leaves no tombstone: it is for a replica that no longer holds the key
// (the key's new owners have confirmed they hold cell), not a delete that
// must reach other replicas. A key changed since cell was read is kept.
func (s *Store) DropIf(key, cell []byte) bool {
	sh, tag, t0, err := s.lockKey(key)
	if err != nil {
		s.logReadBackError(err)
		return false
	}
	defer sh.unlock(t0)
	if i := sh.lww.find(tag, key); i >= 0 {
		if !bytes.Equal(sh.lwwAt(i), cell) {
			return false
		}
		sh.removeLWWLocked(i)
	} else {
		c, ok := sh.cells[string(key)]
		if !ok {
			return false
		}
		enc, err := c.AppendBinary(nil)
		if err != nil || !bytes.Equal(enc, cell) {
			return false
		}
		delete(sh.cells, string(key))
		if c.Value == nil {
			sh.tombstones--
			sh.stats.bytes -= int64(len(key) + entryOverhead)
		} else {
			sh.live--
			sh.stats.bytes -= int64(len(key) + c.Value.Size() + entryOverhead)
		}
	}
	s.removedLocked(sh, key) // the flusher finds it gone and deletes it on disk
	return true
}
