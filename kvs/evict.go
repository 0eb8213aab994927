package kvs

import (
	"fmt"

	"github.com/trellisdb/trellis/lattice"
)

// The memory budget (StoreConfig.MemoryBudget; docs/decisions.md §6).
//
// Eviction. The flusher evicts, and only at the moment it takes a shard's
// dirty log (Store.flush), with the shard locked: then every key of the shard
// except those in the log being taken has its current state on disk, because
// flushes are one at a time (persistence.flushMu) and each earlier log was
// written by a flush that either landed or put its keys back into the dirty
// log (requeue) before this take. So a key is evictable exactly when it is
// not in the log being taken, and no per-key dirty flag is needed. Keys
// written while the flush is on its way to disk are in the next log; a key
// that the flush is writing is in its log, so it cannot be evicted, and so
// read back, before that write has landed.
//
// Coldness is CLOCK (second chance): a table record's reference bit lives
// in its capacity field (table.go) and is set by find; a cell's in its
// cellEntry. The hand sweeps the table's slots, clearing set bits and
// evicting clean keys whose bit is clear. Cells, in a Go map that has no
// stable order, are sampled from a random point instead, in proportion to
// their share of the shard's keys.
//
// Tombstones and values with a delete epoch stay in memory (Collect forgets
// the one and clears the other after TombstoneGrace; the value can leave
// then): only Collect's view of them, in memory, says when they expire. So a
// key whose only copy is on disk holds a value and no epoch, and reading it
// back is decoding it.
//
// Misses. A shard counts its evicted keys (shard.evicted); while that is 0 a
// miss is a miss and the disk is never read. Otherwise Store.lockKey reads a
// missing key back before the operation runs, with the shard unlocked
// during the disk read; shard.gen, bumped by every removal from memory
// (eviction, DropIf, a collected tombstone), tells it whether to look again
// after relocking (readBack has the argument).
//
// Stale disk copies. The disk merges what the flusher writes into what it
// holds, so it cannot forget: not a key that memory removed (DropIf, a
// collected tombstone) and not a delete epoch that Collect cleared in memory
// (the old epoch would win over every later write of the key). Such keys are
// in shard.stale, marked dirty, until the flush that deletes the disk's
// copy, and writes the key's current state in the same Write if it has one,
// has landed. A missing key in stale is never read back.
//
// Each (replica.go) visits memory shard by shard, then scans the disk for
// the keys memory does not hold. While it runs nothing is evicted and stale
// keeps its entries (evictMu, eachActive), so a key on disk and not in
// memory is either evicted (reported from disk) or stale (removed: skipped);
// a key read back after its shard's memory was visited is recorded in
// eachState.late and reported from disk too.

// Eviction pacing: at most maxEvictVisits slots or cells looked at per shard
// per flush (bounds the time the flusher holds a shard's lock), and eviction
// frees a little more than the excess so that a store hovering at its budget
// does not evict a few keys on every flush.
const (
	maxEvictVisits = 4096
	evictSlack     = 64
	evictRound     = 32 // visits per round, split between table and cells
)

// eachState is a shard's part of a running Each (replica.go): set once Each
// has visited the shard's memory, so that keys read back afterwards, which
// that visit missed, are reported by the disk pass.
type eachState struct {
	late map[string]struct{}
}

// lockKey locks key's shard with key resident: if the key's only copy is
// on disk, it is read back into memory first. It returns the shard, the key's
// tag and lock's start time for unlock; on error the shard is not locked.
//
// The check costs one predictable branch while the shard has evicted nothing
// (always, without a budget).
func (s *Store) lockKey(key []byte) (*shard, uint32, int64, error) {
	sh, tag := s.shardFor(key)
	t0 := sh.lock()
	if sh.evicted == 0 {
		return sh, tag, t0, nil
	}
	t0, err := s.readBack(sh, tag, key, t0)
	return sh, tag, t0, err
}

// residentLocked reports whether key is in memory (a value or a tombstone).
func (sh *shard) residentLocked(tag uint32, key []byte) bool {
	if sh.lww.contains(tag, key) {
		return true
	}
	_, ok := sh.cells[string(key)]
	return ok
}

// readBack makes key resident if the disk alone holds it. It is called with
// the shard locked (t0 from lock) and returns with it locked, or unlocked
// with an error. The disk is read without the lock; afterwards, if no key
// left the shard's memory meanwhile (gen unchanged), what was read is still
// the key's state: a key not in memory changes on disk only by a flush of a
// state it had in memory, and a key leaves memory only with gen bumped.
// Otherwise it looks again.
func (s *Store) readBack(sh *shard, tag uint32, key []byte, t0 int64) (int64, error) {
	for sh.evicted > 0 && !sh.residentLocked(tag, key) {
		if _, removed := sh.stale[string(key)]; removed {
			break // its disk copy is being deleted
		}
		gen := sh.gen
		sh.unlock(t0)
		enc, found, err := s.reader.ReadCell(key, nil)
		t0 = sh.lock()
		if err != nil {
			sh.unlock(t0)
			return 0, fmt.Errorf("kvs: reading %.64q back from disk: %w", key, err)
		}
		if sh.gen != gen {
			continue
		}
		if sh.residentLocked(tag, key) {
			break // another operation read it back meanwhile
		}
		if !found {
			sh.stats.diskMisses++
			break
		}
		if err := sh.installLocked(tag, key, enc); err != nil {
			sh.unlock(t0)
			return 0, fmt.Errorf("kvs: key %.64q read back from disk: %w", key, err)
		}
		sh.evicted--
		sh.stats.readBacks++
		if sh.each != nil {
			sh.each.late[string(key)] = struct{}{}
		}
		break
	}
	return t0, nil
}

// installLocked puts key's cell read from disk into memory, referenced. The
// key must be in neither place, and the cell an evicted one: a value without
// a delete epoch.
func (sh *shard) installLocked(tag uint32, key, enc []byte) error {
	if !evictable(enc) {
		return fmt.Errorf("%w: not a value without a delete epoch", lattice.ErrMalformed)
	}
	if lattice.Type(enc[0]) == lattice.TypeLWW {
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

// evictable reports whether a stored cell encoding is a value without a
// delete epoch (a cell with an epoch, or none, is in the TypeCell form).
func evictable(enc []byte) bool {
	return len(enc) > 0 && lattice.Type(enc[0]) != lattice.TypeCell
}

// staleLocked records that the disk's copy of key holds what memory no
// longer does (a delete epoch Collect cleared, or the whole key), and marks
// the key dirty: the next flush deletes the copy before it writes the key's
// current state, if any. Until that flush has landed, a miss does not read
// the key back.
func (s *Store) staleLocked(sh *shard, key []byte) {
	if s.persist == nil {
		sh.changes++ // (markDirtyLocked counts it otherwise)
		return
	}
	s.markDirtyLocked(sh, key)
	if sh.stale == nil {
		sh.stale = make(map[string]uint64)
	}
	sh.stale[string(key)] = sh.takes
}

// removedLocked records that key left memory for good (DropIf, a collected
// tombstone) while its disk copy may still be there.
func (s *Store) removedLocked(sh *shard, key []byte) {
	s.staleLocked(sh, key)
	sh.gen++
	if sh.each != nil {
		delete(sh.each.late, string(key))
	}
}

// forgetStaleLocked drops the stale entries that the flush of take number
// take rewrote on disk.
func (sh *shard) forgetStaleLocked(take uint64) {
	for k, t := range sh.stale {
		if t < take {
			delete(sh.stale, k)
		}
	}
}

// evictionTargets returns, for each shard, the bytes it should come down to,
// or nil if the store is within its budget: every shard gives up the same
// share of what it holds.
func (s *Store) evictionTargets(buf []int64) []int64 {
	budget := s.cfg.MemoryBudget
	if budget <= 0 {
		return nil
	}
	buf = buf[:0]
	var total int64
	for _, sh := range s.shards {
		sh.mu.Lock()
		b := sh.stats.bytes
		sh.mu.Unlock()
		buf = append(buf, b)
		total += b
	}
	if total <= budget {
		return nil
	}
	keep := float64(budget) / float64(total)
	for i, b := range buf {
		buf[i] = int64(float64(b) * keep)
	}
	return buf
}

// evictLocked evicts cold keys that are not in dirty until the shard holds
// at most target bytes (or it has looked at maxEvictVisits keys), and
// returns how many it evicted. dirty holds the keys whose current state is
// not known to be on disk.
func (sh *shard) evictLocked(target int64, dirty map[string]struct{}) int {
	need := sh.stats.bytes - target
	if need <= 0 {
		return 0
	}
	keys := sh.live + sh.tombstones
	if keys == 0 {
		return 0
	}
	// Free a bit more than needed (evictSlack average keys' worth, at most
	// an eighth of the target) so that the next flush does not start over
	// for a handful of bytes.
	avg := max(sh.stats.bytes/int64(keys), 1)
	need += min(avg*evictSlack, target/8)
	evicted, visits := 0, 0
	for need > 0 && visits < maxEvictVisits && sh.live > 0 {
		nT, nC := sh.lww.Len(), len(sh.cells)-sh.tombstones
		tv := evictRound * nT / max(nT+nC, 1)
		if nT > 0 && tv == 0 {
			tv = 1
		}
		cv := evictRound - tv
		if nC == 0 {
			cv = 0
		}
		if tv+cv == 0 {
			break
		}
		freedT, nT2 := sh.clockTableLocked(tv, dirty)
		freedC, nC2 := sh.sampleCellsLocked(cv, dirty)
		need -= freedT + freedC
		evicted += nT2 + nC2
		visits += tv + cv
	}
	if evicted > 0 {
		sh.evicted += evicted
		sh.stats.evictions += uint64(evicted)
		sh.gen++
	}
	return evicted
}

// clockTableLocked advances the CLOCK hand over up to visits table slots,
// evicting clean records whose reference bit is clear and clearing the bits
// that are set. It returns the bytes freed and the keys evicted (which it
// takes off live; the caller counts them as evicted).
func (sh *shard) clockTableLocked(visits int, dirty map[string]struct{}) (freed int64, n int) {
	for ; visits > 0 && sh.lww.Len() > 0; visits-- {
		sl := sh.lww.s.Load()
		if sh.hand >= len(sl.tags) {
			sh.hand = 0
		}
		i := sh.hand
		if sl.tags[i].Load() == 0 {
			sh.hand++
			continue
		}
		rec := sl.recs[i].Load()
		if recTestAndClear(rec) {
			sh.hand++
			continue
		}
		key := recKey(rec)
		if _, d := dirty[string(key)]; d {
			sh.hand++
			continue
		}
		if len(sh.stale) > 0 {
			delete(sh.stale, string(key)) // its rewrite has landed
		}
		freed += int64(recSize(rec) + slotOverhead)
		sh.stats.bytes -= int64(recSize(rec) + slotOverhead)
		sh.lww.remove(i) // a later entry may shift into slot i: the hand stays
		sh.live--
		n++
	}
	return freed, n
}

// sampleCellsLocked looks at up to visits cells from a random point of the
// map and evicts the clean live ones not referenced since they were last
// looked at. It returns the bytes freed and the keys evicted (taken off
// live, as clockTableLocked does).
func (sh *shard) sampleCellsLocked(visits int, dirty map[string]struct{}) (freed int64, n int) {
	if visits == 0 {
		return 0, 0
	}
	for k, c := range sh.cells { // Go starts a map iteration at a random point
		if visits--; visits < 0 {
			break
		}
		if c.Value == nil || !c.Epoch.IsZero() {
			continue // tombstones and values with a delete epoch stay
		}
		if c.ref {
			c.ref = false
			continue
		}
		if _, d := dirty[k]; d {
			continue
		}
		if len(sh.stale) > 0 {
			delete(sh.stale, k) // its rewrite has landed
		}
		size := int64(len(k) + c.Value.Size() + entryOverhead)
		delete(sh.cells, k)
		freed += size
		sh.stats.bytes -= size
		sh.live--
		n++
	}
	return freed, n
}
