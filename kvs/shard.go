package kvs

import (
	"bytes"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/ring"
)

// shard holds one share of a node's keys. Every field is guarded by mu.
//
// A key lives in at most one of two places:
//   - lww: keys whose cell has no delete epoch and holds an LWW register,
//     in a table whose record holds the key and the register's canonical
//     encoding (lattice.AppendLWW) in one allocation. The encoding's own
//     length prefix says where it ends, so a write that fits is done in
//     place. This is the Redis-string fast path: one allocation per key,
//     and a GET reply is a copy.
//   - cells: every other key, decoded, including tombstones (Value == nil).
//
// With a memory budget a third place exists: the disk alone holds the keys
// the budget evicted (evict.go). Every Store method makes its key resident
// (Store.lockKey) before the shard methods here see it, so these methods
// never consider the disk.
//
// Methods take the key's tag (tagOf of its ring.KeyHash) with the key.
type shard struct {
	mu    sync.Mutex
	lww   table
	cells map[string]*cellEntry

	live       int // keys holding a value, in memory
	tombstones int // cells with a nil Value
	stats      shardStats
	dirty      dirtyLog // keys changed since the last flush (only with a disk)
	changes    uint64   // changes to the shard's contents (Store.Changes)

	// The memory budget's state (evict.go).
	evicted int    // keys holding a value whose only copy is on disk
	gen     uint64 // bumped whenever keys leave memory (see Store.readBack)
	hand    int    // the CLOCK hand: the next table slot eviction looks at
	// stale holds the keys whose disk copy holds what memory dropped (the
	// key, or a delete epoch) until a flush rewrites it, with the value of
	// takes when they were recorded: a miss must not read them back, and the
	// flush deletes the copy before writing the key's current state.
	stale map[string]uint64
	takes uint64     // dirty logs the flusher has taken
	each  *eachState // set while Each runs (replica.go)
}

// cellEntry is a key's decoded cell and its CLOCK reference flag.
type cellEntry struct {
	lattice.Cell
	ref bool // accessed since the eviction hand last looked
}

// shardStats counts a shard's work. Guarded by the shard's mutex.
type shardStats struct {
	reads, writes uint64
	bytes         int64 // approximate bytes held by keys and values
	ops           uint64
	busyNanos     int64  // sampled: see lock
	evictions     uint64 // keys moved out of memory by the budget
	readBacks     uint64 // evicted keys read back from disk
	diskMisses    uint64 // disk lookups of a missing key that found nothing
}

// busySample is the sampling period of busy time: one operation in
// busySample is timed and counted busySample times, so timing costs about
// one clock read per busySample operations.
const busySample = 64

// busyClockStart is the reference point of the shard busy-time clock.
var busyClockStart = time.Now()

// lock locks the shard and, for one operation in busySample, returns a start
// time for unlock to account busy time from (0 otherwise).
func (sh *shard) lock() int64 {
	sh.mu.Lock()
	sh.stats.ops++
	if sh.stats.ops%busySample == 0 {
		return int64(time.Since(busyClockStart)) | 1
	}
	return 0
}

// unlock accounts the sampled busy time and unlocks the shard.
func (sh *shard) unlock(t0 int64) {
	if t0 != 0 {
		sh.stats.busyNanos += (int64(time.Since(busyClockStart)) - t0) * busySample
	}
	sh.mu.Unlock()
}

// entryOverhead approximates what a cell costs beyond its key and value
// bytes (map slot, string header, Cell). slotOverhead is a table slot at its
// typical load.
const (
	entryOverhead = 64
	slotOverhead  = 20
)

func newShard() *shard {
	return &shard{cells: make(map[string]*cellEntry)}
}

// cellLocked returns key's cell entry, marking it referenced.
func (sh *shard) cellLocked(key []byte) (*cellEntry, bool) {
	c, ok := sh.cells[string(key)]
	if ok {
		c.ref = true
	}
	return c, ok
}

// lwwAt returns the LWW encoding of the record in table slot i.
func (sh *shard) lwwAt(i int) []byte {
	v := recValue(sh.lww.rec(i))
	return v[:lattice.LWWEncodedLen(v)]
}

// parseLWWAt parses the register in table slot i.
func (sh *shard) parseLWWAt(i int) (lattice.Timestamp, uint64, []byte, error) {
	ts, w, v, err := lattice.ParseLWW(sh.lwwAt(i))
	if err != nil {
		err = fmt.Errorf("kvs: stored register is corrupt: %w", err)
	}
	return ts, w, v, err
}

// removeLWWLocked removes the register in table slot i.
func (sh *shard) removeLWWLocked(i int) {
	sh.stats.bytes -= int64(recSize(sh.lww.rec(i)) + slotOverhead)
	sh.lww.remove(i)
	sh.live--
}

// insertLWWLocked adds key's register (ts, writer, value) to the table; the
// key must be in neither the table nor cells.
func (sh *shard) insertLWWLocked(tag uint32, key []byte, ts lattice.Timestamp, writer uint64, value []byte) {
	rec, buf := newRecord(key, lattice.LWWSize(len(value)))
	lattice.AppendLWW(buf[:0], ts, writer, value)
	sh.lww.insert(tag, rec)
	sh.live++
	sh.stats.bytes += int64(recSize(rec) + slotOverhead)
}

func (sh *shard) getLocked(tag uint32, key, dst []byte) ([]byte, error) {
	sh.stats.reads++
	if i := sh.lww.find(tag, key); i >= 0 {
		return append(dst, sh.lwwAt(i)...), nil
	}
	if c, ok := sh.cellLocked(key); ok && c.Value != nil {
		return c.Value.AppendBinary(dst)
	}
	return dst, ErrNotFound
}

func (sh *shard) getStringLocked(tag uint32, key, dst []byte) ([]byte, error) {
	sh.stats.reads++
	if i := sh.lww.find(tag, key); i >= 0 {
		_, _, v, err := sh.parseLWWAt(i)
		if err != nil {
			return dst, err
		}
		return append(dst, v...), nil
	}
	c, ok := sh.cellLocked(key)
	if !ok || c.Value == nil {
		return dst, ErrNotFound
	}
	switch v := c.Value.(type) {
	case *lattice.LWW:
		return append(dst, v.Value...), nil
	case *lattice.Counter:
		return strconv.AppendInt(dst, v.Value(), 10), nil
	}
	return dst, typeMismatch(c.Value.Type(), "a string")
}

func (sh *shard) lookupLocked(tag uint32, key []byte) (lattice.Lattice, error) {
	sh.stats.reads++
	if i := sh.lww.find(tag, key); i >= 0 {
		ts, w, v, err := sh.parseLWWAt(i)
		if err != nil {
			return nil, err
		}
		return &lattice.LWW{TS: ts, Writer: w, Value: bytes.Clone(v)}, nil
	}
	if c, ok := sh.cellLocked(key); ok && c.Value != nil {
		return c.Value.Clone(), nil
	}
	return nil, ErrNotFound
}

func (sh *shard) existsLocked(tag uint32, key []byte) bool {
	sh.stats.reads++
	if sh.lww.find(tag, key) >= 0 {
		return true
	}
	c, ok := sh.cellLocked(key)
	return ok && c.Value != nil
}

func (sh *shard) typeLocked(tag uint32, key []byte) (lattice.Type, bool) {
	sh.stats.reads++
	if sh.lww.find(tag, key) >= 0 {
		return lattice.TypeLWW, true
	}
	if c, ok := sh.cellLocked(key); ok && c.Value != nil {
		return c.Value.Type(), true
	}
	return 0, false
}

// setLocked merges the LWW write (ts, writer, value) into key. If reset is
// non-nil and the key holds another type, the key is given the new epoch
// *reset and the register replaces the old value; otherwise another type is
// ErrTypeMismatch.
func (sh *shard) setLocked(tag uint32, key []byte, ts lattice.Timestamp, writer uint64, value []byte, reset *lattice.Stamp) error {
	sh.stats.writes++
	if i := sh.lww.find(tag, key); i >= 0 {
		_, err := sh.mergeLWWLocked(i, key, ts, writer, value)
		return err
	}
	if c, ok := sh.cellLocked(key); ok {
		w := &lattice.LWW{TS: ts, Writer: writer, Value: value}
		switch {
		case c.Value == nil:
			sh.tombstones--
			sh.live++
			c.Value = w.Clone()
			sh.stats.bytes += int64(c.Value.Size())
		case c.Value.Type() == lattice.TypeLWW:
			before := c.Value.Size()
			if _, err := c.Value.Merge(w); err != nil {
				return err
			}
			sh.stats.bytes += int64(c.Value.Size() - before)
		case reset != nil:
			sh.stats.bytes -= int64(c.Value.Size())
			c.Cell = lattice.Cell{Epoch: *reset, Value: w.Clone()}
			sh.stats.bytes += int64(c.Value.Size())
		default:
			return typeMismatch(c.Value.Type(), "an LWW register")
		}
		return nil
	}
	sh.insertLWWLocked(tag, key, ts, writer, value)
	return nil
}

// mergeLWWLocked merges the write (ts, writer, value) into the register in
// table slot i (key's) and reports whether it won.
func (sh *shard) mergeLWWLocked(i int, key []byte, ts lattice.Timestamp, writer uint64, value []byte) (bool, error) {
	ts0, w0, v0, err := sh.parseLWWAt(i)
	if err != nil {
		return false, err
	}
	if !lwwLess(ts0, w0, v0, ts, writer, value) {
		return false, nil // the stored write wins (or is the same write)
	}
	room := recValue(sh.lww.rec(i))
	need := lattice.LWWSize(len(value))
	if need <= len(room) && need > len(room)/2 {
		lattice.AppendLWW(room[:0], ts, writer, value)
		return true, nil
	}
	rec, buf := newRecord(key, need)
	lattice.AppendLWW(buf[:0], ts, writer, value)
	sh.stats.bytes += int64(recSize(rec) - recSize(sh.lww.rec(i)))
	sh.lww.setRec(i, rec)
	return true, nil
}

// lwwLess reports whether register a sorts before register b in the LWW
// total order (timestamp, then writer, then value bytes).
func lwwLess(tsA lattice.Timestamp, wA uint64, vA []byte, tsB lattice.Timestamp, wB uint64, vB []byte) bool {
	if tsA != tsB {
		return tsA < tsB
	}
	if wA != wB {
		return wA < wB
	}
	return bytes.Compare(vA, vB) < 0
}

func (sh *shard) putLocked(tag uint32, key []byte, v lattice.Lattice) error {
	if w, ok := v.(*lattice.LWW); ok {
		return sh.setLocked(tag, key, w.TS, w.Writer, w.Value, nil)
	}
	sh.stats.writes++
	if sh.lww.find(tag, key) >= 0 {
		return typeMismatch(lattice.TypeLWW, v.Type().String())
	}
	if c, ok := sh.cellLocked(key); ok {
		if c.Value == nil {
			sh.tombstones--
			sh.live++
			c.Value = v.Clone()
			sh.stats.bytes += int64(c.Value.Size())
			return nil
		}
		if c.Value.Type() != v.Type() {
			return typeMismatch(c.Value.Type(), v.Type().String())
		}
		before := c.Value.Size()
		if _, err := c.Value.Merge(v); err != nil {
			return err
		}
		sh.stats.bytes += int64(c.Value.Size() - before)
		return nil
	}
	sh.insertCellLocked(key, lattice.Cell{Value: v.Clone()})
	return nil
}

// insertCellLocked adds key's cell; the key must be in neither place. It
// returns the new entry.
func (sh *shard) insertCellLocked(key []byte, cell lattice.Cell) *cellEntry {
	c := &cellEntry{Cell: cell, ref: true}
	sh.cells[string(key)] = c
	if c.Value == nil {
		sh.tombstones++
		sh.stats.bytes += int64(len(key) + entryOverhead)
		return c
	}
	sh.live++
	sh.stats.bytes += int64(len(key) + c.Value.Size() + entryOverhead)
	return c
}

func (sh *shard) deleteLocked(tag uint32, key []byte, st lattice.Stamp) bool {
	sh.stats.writes++
	if i := sh.lww.find(tag, key); i >= 0 {
		sh.removeLWWLocked(i)
		sh.insertCellLocked(key, lattice.Cell{Epoch: st})
		return true
	}
	if c, ok := sh.cellLocked(key); ok {
		existed := c.Value != nil
		if existed {
			sh.stats.bytes -= int64(c.Value.Size())
		}
		if c.Merge(lattice.Cell{Epoch: st}) && existed && c.Value == nil {
			sh.live--
			sh.tombstones++
		} else if existed {
			sh.stats.bytes += int64(c.Value.Size())
		}
		return existed
	}
	sh.insertCellLocked(key, lattice.Cell{Epoch: st})
	return false
}

// mutableCellLocked returns key's cell for a structured (non-LWW) update,
// creating it with fresh() if the key is absent and filling a tombstone with
// fresh(). It fails with ErrTypeMismatch if the key holds a register.
func (sh *shard) mutableCellLocked(tag uint32, key []byte, want string, fresh func() lattice.Lattice) (*cellEntry, error) {
	if sh.lww.find(tag, key) >= 0 {
		return nil, typeMismatch(lattice.TypeLWW, want)
	}
	c, ok := sh.cellLocked(key)
	if !ok {
		return sh.insertCellLocked(key, lattice.Cell{Value: fresh()}), nil
	}
	if c.Value == nil {
		c.Value = fresh()
		sh.tombstones--
		sh.live++
		sh.stats.bytes += int64(c.Value.Size())
	}
	return c, nil
}

func newORSet() lattice.Lattice { return lattice.NewORSet() }

func (sh *shard) setAddLocked(tag uint32, key []byte, members [][]byte, actor uint64) (int, error) {
	sh.stats.writes++
	c, err := sh.mutableCellLocked(tag, key, "a set", newORSet)
	if err != nil {
		return 0, err
	}
	before := c.Value.Size()
	n := 0
	switch v := c.Value.(type) {
	case *lattice.ORSet:
		n = v.Add(actor, members...)
	case *lattice.GSet:
		n = v.Add(members...)
	default:
		return 0, typeMismatch(c.Value.Type(), "a set")
	}
	sh.stats.bytes += int64(c.Value.Size() - before)
	return n, nil
}

func (sh *shard) setRemoveLocked(tag uint32, key []byte, members [][]byte) (int, error) {
	sh.stats.writes++
	if sh.lww.find(tag, key) >= 0 {
		return 0, typeMismatch(lattice.TypeLWW, "a set")
	}
	c, ok := sh.cellLocked(key)
	if !ok || c.Value == nil {
		return 0, nil
	}
	v, ok := c.Value.(*lattice.ORSet)
	if !ok {
		return 0, typeMismatch(c.Value.Type(), "an observed-remove set")
	}
	before := v.Size()
	n := v.Remove(members...)
	sh.stats.bytes += int64(v.Size() - before)
	return n, nil
}

// setView returns the set-like lattice at key, nil if the key is absent.
func (sh *shard) setViewLocked(tag uint32, key []byte) (setView, error) {
	sh.stats.reads++
	if sh.lww.find(tag, key) >= 0 {
		return nil, typeMismatch(lattice.TypeLWW, "a set")
	}
	c, ok := sh.cellLocked(key)
	if !ok || c.Value == nil {
		return nil, nil
	}
	if v, ok := c.Value.(setView); ok {
		return v, nil
	}
	return nil, typeMismatch(c.Value.Type(), "a set")
}

// setView is what the set lattices (observed-remove, grow-only, ordered)
// share for reads.
type setView interface {
	Contains(member []byte) bool
	Len() int
	Elements() [][]byte
}

func (sh *shard) membersLocked(tag uint32, key []byte) ([][]byte, error) {
	v, err := sh.setViewLocked(tag, key)
	if v == nil || err != nil {
		return nil, err
	}
	elems := v.Elements()
	out := make([][]byte, len(elems))
	for i, e := range elems {
		out[i] = bytes.Clone(e)
	}
	return out, nil
}

func (sh *shard) isMemberLocked(tag uint32, key, member []byte) (bool, error) {
	v, err := sh.setViewLocked(tag, key)
	if v == nil || err != nil {
		return false, err
	}
	return v.Contains(member), nil
}

func (sh *shard) cardLocked(tag uint32, key []byte) (int, error) {
	v, err := sh.setViewLocked(tag, key)
	if v == nil || err != nil {
		return 0, err
	}
	return v.Len(), nil
}

func newCounter() lattice.Lattice { return lattice.NewCounter() }

func (sh *shard) counterAddLocked(tag uint32, key []byte, delta int64, actor uint64, convert bool, reset lattice.Stamp) (int64, error) {
	sh.stats.writes++
	if i := sh.lww.find(tag, key); i >= 0 {
		if !convert {
			return 0, typeMismatch(lattice.TypeLWW, "a counter")
		}
		_, _, v, err := sh.parseLWWAt(i)
		if err != nil {
			return 0, err
		}
		c, n, err := counterFrom(v, delta, actor, reset)
		if err != nil {
			return 0, err
		}
		sh.removeLWWLocked(i)
		sh.insertCellLocked(key, *c)
		return n, nil
	}
	if c, ok := sh.cellLocked(key); ok && c.Value != nil {
		if w, isLWW := c.Value.(*lattice.LWW); isLWW && convert {
			fresh, n, err := counterFrom(w.Value, delta, actor, reset)
			if err != nil {
				return 0, err
			}
			sh.stats.bytes += int64(fresh.Value.Size() - c.Value.Size())
			c.Cell = *fresh
			return n, nil
		}
	}
	c, err := sh.mutableCellLocked(tag, key, "a counter", newCounter)
	if err != nil {
		return 0, err
	}
	ctr, ok := c.Value.(*lattice.Counter)
	if !ok {
		return 0, typeMismatch(c.Value.Type(), "a counter")
	}
	before := ctr.Size()
	n, err := ctr.Add(actor, delta)
	if err != nil {
		return 0, ErrOverflow
	}
	sh.stats.bytes += int64(ctr.Size() - before) // a new actor's entry
	return n, nil
}

// counterFrom returns a cell holding a counter that starts at the integer
// written in v plus delta, under the new epoch reset.
func counterFrom(v []byte, delta int64, actor uint64, reset lattice.Stamp) (*lattice.Cell, int64, error) {
	start, err := parseRedisInt(v)
	if err != nil {
		return nil, 0, err
	}
	ctr := lattice.NewCounter()
	if _, err := ctr.Add(actor, start); err != nil {
		return nil, 0, ErrNotInteger
	}
	n, err := ctr.Add(actor, delta)
	if err != nil {
		return nil, 0, ErrOverflow
	}
	return &lattice.Cell{Epoch: reset, Value: ctr}, n, nil
}

// parseRedisInt parses v the way Redis's string2ll does: an optional minus
// sign and decimal digits, no leading zeros, spaces or plus sign, in int64
// range.
func parseRedisInt(v []byte) (int64, error) {
	if len(v) == 0 || len(v) > 20 || (len(v) > 1 && v[0] == '0') || v[0] == '+' ||
		(len(v) > 1 && v[0] == '-' && v[1] == '0') {
		return 0, ErrNotInteger
	}
	n, err := strconv.ParseInt(string(v), 10, 64)
	if err != nil {
		return 0, ErrNotInteger
	}
	return n, nil
}

// collectLocked forgets tombstones older than horizon and clears older delete
// epochs, moving plain registers back to the fast path. It calls forgotten
// with each key it changed, removed telling whether the key left memory.
func (sh *shard) collectLocked(horizon lattice.Timestamp, forgotten func(key string, removed bool)) int {
	if len(sh.cells) == 0 {
		return 0
	}
	n := 0
	for k, c := range sh.cells {
		if c.Epoch.IsZero() || c.Epoch.TS >= horizon {
			continue
		}
		n++
		if c.Value == nil {
			delete(sh.cells, k)
			sh.tombstones--
			sh.stats.bytes -= int64(len(k) + entryOverhead)
			forgotten(k, true)
			continue
		}
		c.Epoch = lattice.Stamp{}
		forgotten(k, false)
		if w, ok := c.Value.(*lattice.LWW); ok {
			delete(sh.cells, k)
			sh.stats.bytes -= int64(len(k) + w.Size() + entryOverhead)
			sh.live--
			key := []byte(k)
			sh.insertLWWLocked(tagOf(ring.KeyHash(key)), key, w.TS, w.Writer, w.Value)
		}
	}
	return n
}

func typeMismatch(have lattice.Type, want string) error {
	return fmt.Errorf("%w: the key holds %s, not %s", ErrTypeMismatch, have, want)
}
