package kvs

import (
	"bytes"
	"encoding/binary"
	"slices"
	"sync/atomic"
	"unsafe"
)

// table is an open-addressing hash table (linear probing, backward-shift
// deletion) from keys to records, for a shard's LWW registers. It exists for
// memory and cache behaviour: a Go map from string to []byte costs a 40-byte
// slot, a separate key allocation and a separate value allocation per key;
// here a key costs a 12-byte slot (a 32-bit tag and a record pointer) and one
// allocation holding key and value together, so a lookup touches the tag
// array and then one record whose key and value are adjacent.
// docs/decisions.md has the measurements.
//
// A record is one allocation laid out as
//
//	[capacity: uint32 little-endian][key length: uvarint][key][value...]
//
// where capacity is the allocation's length and the value runs to its end
// (the value is self-delimiting: an LWW encoding). The capacity field's top
// bit (recRefBit) is not part of the length: it is the record's CLOCK
// reference bit, set when find returns the record and when the record is
// created, cleared by the eviction hand (evict.go). Records are written only
// by their table's owner, with the shard's mutex held; key bytes are never
// changed after creation.
//
// Every method except homeRec must be called with the shard's mutex held.
// homeRec (for prefetching) may run concurrently with them: the slot arrays are published
// through an atomic pointer and their elements are read and written
// atomically (plain moves for loads on amd64; stores, which only inserts,
// removes and record replacements do, cost an exchange), and a prefetcher
// reads nothing of a record (it only issues PREFETCHT0 for its address; the
// header's reference bit changes under the mutex).
type table struct {
	s atomic.Pointer[slots] // nil until the first insert
	n int                   // occupied slots
}

// slots are a table's arrays, replaced as a whole when the table resizes.
type slots struct {
	tags []atomic.Uint32        // 0: empty slot; else the entry's tag (see tagOf)
	recs []atomic.Pointer[byte] // the record of each occupied slot, nil when empty
	bits uint                   // len(tags) == 1 << bits
}

const (
	tableMinBits = 4 // smallest allocated table: 16 slots
	recHeader    = 4 // the capacity field; the key length follows

	// recRefBit is the reference bit in a record's capacity field, so a
	// record's capacity is below 1 << 31 (StoreConfig.Validate bounds keys
	// and values well below that).
	recRefBit = 1 << 31
)

// tagOf derives a slot tag from a key's 64-bit hash: the top 32 bits of a
// Fibonacci-multiplied hash, so every bit of the hash (whose high and low
// halves are each constrained by ring placement) influences it. The tag's top
// bits pick the home slot; all 32 bits filter comparisons. 0 marks an empty
// slot, so a zero tag becomes 1.
func tagOf(h uint64) uint32 {
	t := uint32((h * 0x9E3779B97F4A7C15) >> 32)
	if t == 0 {
		t = 1
	}
	return t
}

func (s *slots) home(tag uint32) int { return int(tag >> (32 - s.bits)) }

func (s *slots) mask() int { return len(s.tags) - 1 }

// Len returns the number of entries.
func (t *table) Len() int { return t.n }

// find returns the slot holding key, or -1, and marks the record as
// referenced.
func (t *table) find(tag uint32, key []byte) int {
	if t.n == 0 {
		return -1
	}
	s := t.s.Load()
	m := s.mask()
	for i := s.home(tag); ; i = (i + 1) & m {
		switch s.tags[i].Load() {
		case 0:
			return -1
		case tag:
			if r := s.recs[i].Load(); bytes.Equal(recKey(r), key) {
				recTouch(r)
				return i
			}
		}
	}
}

// contains reports whether key is in the table, without marking it
// referenced.
func (t *table) contains(tag uint32, key []byte) bool {
	if t.n == 0 {
		return false
	}
	s := t.s.Load()
	m := s.mask()
	for i := s.home(tag); ; i = (i + 1) & m {
		switch s.tags[i].Load() {
		case 0:
			return false
		case tag:
			if bytes.Equal(recKey(s.recs[i].Load()), key) {
				return true
			}
		}
	}
}

// rec returns the record in slot i.
func (t *table) rec(i int) *byte { return t.s.Load().recs[i].Load() }

// setRec replaces the record in slot i (for a key whose value outgrew its
// record).
func (t *table) setRec(i int, rec *byte) { t.s.Load().recs[i].Store(rec) }

// homeRec returns the record in tag's home slot (nil if it is empty), for
// prefetching: it may be any key's record, or stale. It is safe to call
// without the shard's mutex, concurrently with any other method.
func (t *table) homeRec(tag uint32) *byte {
	s := t.s.Load()
	if s == nil {
		return nil
	}
	return s.recs[s.home(tag)].Load()
}

// insert adds rec, whose key must not be in the table, and returns its slot.
func (t *table) insert(tag uint32, rec *byte) int {
	s := t.s.Load()
	if s == nil || (t.n+1)*4 > len(s.tags)*3 { // keep the load at most 3/4
		bits := uint(tableMinBits)
		if s != nil {
			bits = s.bits + 1
		}
		s = t.resize(bits)
	}
	i := s.place(tag, rec)
	t.n++
	return i
}

// place puts (tag, rec) in the first free slot from tag's home. The record
// is published before the tag, so a slot with a tag always has its record.
func (s *slots) place(tag uint32, rec *byte) int {
	m := s.mask()
	i := s.home(tag)
	for s.tags[i].Load() != 0 {
		i = (i + 1) & m
	}
	s.recs[i].Store(rec)
	s.tags[i].Store(tag)
	return i
}

// remove empties slot i, shifting later entries of its probe run back so
// that every entry stays reachable from its home without tombstones.
func (t *table) remove(i int) {
	s := t.s.Load()
	m := s.mask()
	for {
		s.tags[i].Store(0)
		s.recs[i].Store(nil)
		j := i
		for {
			j = (j + 1) & m
			tag := s.tags[j].Load()
			if tag == 0 {
				t.n--
				t.maybeShrink()
				return
			}
			// The entry at j may move to i if i lies cyclically in
			// [home(j), j): moving it keeps it reachable.
			h := s.home(tag)
			if (j > i && (h <= i || h > j)) || (j < i && h <= i && h > j) {
				s.recs[i].Store(s.recs[j].Load())
				s.tags[i].Store(tag)
				i = j
				break
			}
		}
	}
}

// maybeShrink halves a table that has become mostly empty (load under 1/8),
// so memory follows the number of keys down as well as up.
func (t *table) maybeShrink() {
	if s := t.s.Load(); s.bits > tableMinBits && t.n*8 < len(s.tags) {
		t.resize(s.bits - 1)
	}
}

// resize rehashes into new arrays of 1 << bits slots and publishes them.
func (t *table) resize(bits uint) *slots {
	s := &slots{
		tags: make([]atomic.Uint32, 1<<bits),
		recs: make([]atomic.Pointer[byte], 1<<bits),
		bits: bits,
	}
	if old := t.s.Load(); old != nil {
		for i := range old.tags {
			if tag := old.tags[i].Load(); tag != 0 {
				s.place(tag, old.recs[i].Load())
			}
		}
	}
	t.s.Store(s)
	return s
}

// each calls fn with the key and value of every entry until fn returns
// false. fn must not modify the table.
func (t *table) each(fn func(key, value []byte) bool) {
	s := t.s.Load()
	if s == nil {
		return
	}
	for i := range s.tags {
		if s.tags[i].Load() != 0 {
			r := s.recs[i].Load()
			if !fn(recKey(r), recValue(r)) {
				return
			}
		}
	}
}

// newRecord allocates a record holding key and room for a value of
// valueLen bytes (more if the allocator's size class leaves room), and
// returns it with its value part.
func newRecord(key []byte, valueLen int) (*byte, []byte) {
	hdr := recHeader + uvarintLen(uint64(len(key)))
	buf := slices.Grow([]byte(nil), hdr+len(key)+valueLen) // rounded up to the size class
	buf = buf[:cap(buf)]
	binary.LittleEndian.PutUint32(buf, uint32(len(buf))|recRefBit)
	n := binary.PutUvarint(buf[recHeader:], uint64(len(key)))
	copy(buf[recHeader+n:], key)
	return &buf[0], buf[hdr+len(key):]
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// recBytes returns the whole record rec points to.
func recBytes(rec *byte) []byte {
	c := binary.LittleEndian.Uint32(unsafe.Slice(rec, recHeader)) &^ recRefBit
	return unsafe.Slice(rec, c)
}

// recRefByte returns the capacity field's top byte, which holds recRefBit.
func recRefByte(rec *byte) *byte { return (*byte)(unsafe.Add(unsafe.Pointer(rec), recHeader-1)) }

// recTouch sets rec's reference bit. It writes only when the bit is clear,
// so a hot record's cache line is not dirtied on every read.
func recTouch(rec *byte) {
	if p := recRefByte(rec); *p&(recRefBit>>24) == 0 {
		*p |= recRefBit >> 24
	}
}

// recTestAndClear clears rec's reference bit and reports whether it was set.
func recTestAndClear(rec *byte) bool {
	p := recRefByte(rec)
	set := *p&(recRefBit>>24) != 0
	*p &^= recRefBit >> 24
	return set
}

// recSplit returns a record's key and value parts.
func recSplit(rec *byte) (key, value []byte) {
	b := recBytes(rec)
	klen, n := binary.Uvarint(b[recHeader:])
	start := recHeader + n
	end := start + int(klen)
	return b[start:end:end], b[end:]
}

func recKey(rec *byte) []byte {
	k, _ := recSplit(rec)
	return k
}

func recValue(rec *byte) []byte {
	_, v := recSplit(rec)
	return v
}

// recSize returns the bytes a record occupies.
func recSize(rec *byte) int { return len(recBytes(rec)) }
