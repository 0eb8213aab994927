package kvs

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/disk"
	"github.com/trellisdb/trellis/lattice"
)

// pebbleDisk is the Pebble tier as a store's DiskReader, adapted as
// cmd/trellis adapts it.
type pebbleDisk struct {
	db         *disk.DB
	changes    []disk.Change
	failWrites int // fail the next failWrites Writes, writing nothing
}

// openPebble opens the Pebble tier in fs (closed when the test ends, unless
// the test closed it).
func openPebble(t testing.TB, fs vfs.FS) *pebbleDisk {
	t.Helper()
	db, err := disk.Open("kvs", disk.Options{FS: fs, Logger: quiet, CacheSize: 1 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return &pebbleDisk{db: db}
}

func (d *pebbleDisk) Write(changes []Change, sync bool) error {
	if d.failWrites > 0 {
		d.failWrites--
		return errors.New("disk full")
	}
	d.changes = d.changes[:0]
	for _, c := range changes {
		d.changes = append(d.changes, disk.Change{Key: c.Key, Cell: c.Cell})
	}
	return d.db.Write(d.changes, sync)
}

func (d *pebbleDisk) Scan(fn func(key, cell []byte) error) error { return d.db.Scan(fn) }

func (d *pebbleDisk) ReadCell(key, dst []byte) ([]byte, bool, error) {
	return d.db.ReadCell(key, dst)
}

// budgetStore returns a store over d with the given memory budget.
func budgetStore(t testing.TB, d Disk, clk *fakeClock, budget int64) *Store {
	t.Helper()
	s, err := NewStore(StoreConfig{NodeID: 7, Shards: 4, Disk: d, Now: clk.Now, MemoryBudget: budget, Logger: quiet})
	require.NoError(t, err)
	return s
}

func newClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
}

// resident reports whether key is in s's memory (a value or a tombstone).
func resident(s *Store, key string) bool {
	sh, tag := s.shardFor([]byte(key))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.residentLocked(tag, []byte(key))
}

// evictableInMemory returns the keys in s's memory that eviction may move
// to disk: values without a delete epoch.
func evictableInMemory(s *Store) []string {
	var out []string
	for _, sh := range s.shards {
		sh.mu.Lock()
		sh.lww.each(func(key, _ []byte) bool {
			out = append(out, string(key))
			return true
		})
		for k, c := range sh.cells {
			if c.Value != nil && c.Epoch.IsZero() {
				out = append(out, k)
			}
		}
		sh.mu.Unlock()
	}
	return out
}

// totals sums s's shard statistics.
func totals(s *Store) ShardStats {
	var t ShardStats
	for _, st := range s.Stats() {
		t.Keys += st.Keys
		t.Tombstones += st.Tombstones
		t.Bytes += st.Bytes
		t.Evicted += st.Evicted
		t.Evictions += st.Evictions
		t.ReadBacks += st.ReadBacks
		t.DiskMisses += st.DiskMisses
	}
	return t
}

func flushTimes(t testing.TB, s *Store, n int) {
	t.Helper()
	for range n {
		require.NoError(t, s.Flush())
	}
}

// eachOnce returns what s's Each visits, failing if it visits a key twice.
func eachOnce(t testing.TB, s *Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	var twice []string
	s.Each(func(key, cell []byte) bool {
		if _, dup := out[string(key)]; dup {
			twice = append(twice, string(key))
		}
		out[string(key)] = string(cell)
		return true
	})
	if len(twice) > 0 {
		t.Fatalf("Each visited %q more than once", twice)
	}
	return out
}

// A budget needs a disk that reads keys back, and is not negative.
func TestBudgetValidate(t *testing.T) {
	require.Error(t, StoreConfig{MemoryBudget: -1}.Validate())
	require.Error(t, StoreConfig{MemoryBudget: 1}.Validate(), "no disk")
	err := StoreConfig{MemoryBudget: 1, Disk: struct{ Disk }{newMemDisk()}}.Validate()
	require.ErrorContains(t, err, "DiskReader")
	require.NoError(t, StoreConfig{MemoryBudget: 1, Disk: newMemDisk()}.Validate())
	require.NoError(t, StoreConfig{Disk: struct{ Disk }{newMemDisk()}}.Validate(), "no budget: any disk")
}

// Over its budget, a store moves clean keys to disk at a flush and holds
// its budget afterwards; keys written since the last flush stay until they
// are on disk. Len and Keys count evicted keys; every key reads back as it
// was.
func TestBudgetEvictsAfterFlush(t *testing.T) {
	d := newMemDisk()
	const budget = 8 << 10
	s := budgetStore(t, d, newClock(), budget)
	want := map[string]string{}
	for i := range 1000 {
		k, v := fmt.Sprintf("key:%04d", i), strings.Repeat(fmt.Sprint(i%10), 100)
		require.NoError(t, s.Overwrite([]byte(k), []byte(v)))
		want[k] = v
	}
	for i := range 50 {
		_, err := s.SetAdd([]byte(fmt.Sprintf("set:%02d", i)), [][]byte{[]byte("a"), []byte(fmt.Sprint(i))})
		require.NoError(t, err)
	}
	before := totals(s)
	require.Greater(t, before.Bytes, int64(10*budget))

	require.NoError(t, s.Flush())
	st := totals(s)
	require.Zero(t, st.Evicted, "every key was in the flush being taken: none is on disk yet")
	require.Equal(t, before.Bytes, st.Bytes)

	require.NoError(t, s.Flush())
	st = totals(s)
	require.LessOrEqual(t, st.Bytes, int64(budget))
	require.Positive(t, st.Bytes, "not everything: the budget is a target, not a purge")
	require.Greater(t, st.Evicted, 900)
	require.EqualValues(t, st.Evicted, st.Evictions)
	require.Equal(t, 1050, st.Keys)
	require.Equal(t, 1050, s.Len())

	for k, v := range want {
		require.Equal(t, v, getString(t, s, k), k)
	}
	for i := range 50 {
		ms, err := s.Members([]byte(fmt.Sprintf("set:%02d", i)))
		require.NoError(t, err)
		require.Len(t, ms, 2)
	}
	st = totals(s)
	require.Zero(t, st.Evicted)
	require.EqualValues(t, st.Evictions, st.ReadBacks)
	require.Equal(t, 1050, s.Len())
	require.Greater(t, st.Bytes, int64(budget), "read back: over the budget until the next flush")
	require.NoError(t, s.Flush())
	require.LessOrEqual(t, totals(s).Bytes, int64(budget))
}

// budgetTwins prepares the same keys in a store without a budget (ref) and
// in one whose every value has left memory (evicted), and returns the
// cells ref holds.
func budgetTwins(t *testing.T) (ref, evicted *Store, d *memDisk, cells map[string]string) {
	t.Helper()
	clk := newClock()
	ref, err := NewStore(StoreConfig{NodeID: 7, Shards: 4, Now: clk.Now})
	require.NoError(t, err)
	d = newMemDisk()
	evicted = budgetStore(t, d, clk, 1)
	for _, s := range []*Store{ref, evicted} {
		require.NoError(t, s.SetLWW([]byte("str"), []byte("hello")))
		require.NoError(t, s.Overwrite([]byte("num"), []byte("10")))
		_, err := s.SetAdd([]byte("set"), [][]byte{[]byte("a"), []byte("b")})
		require.NoError(t, err)
		_, err = s.CounterAdd([]byte("ctr"), 5)
		require.NoError(t, err)
		require.NoError(t, s.Put([]byte("gset"), lattice.NewGSet([]byte("x"))))
		_, err = s.Delete([]byte("epoch"))
		require.NoError(t, err)
		require.NoError(t, s.SetLWW([]byte("epoch"), []byte("after a delete")))
		_, err = s.Delete([]byte("tomb"))
		require.NoError(t, err)
	}
	flushTimes(t, evicted, 2)
	live := []string{"str", "num", "set", "ctr", "gset"}
	for _, k := range live {
		require.False(t, resident(evicted, k), "%s evicted", k)
	}
	require.True(t, resident(evicted, "tomb"), "tombstones stay in memory")
	require.True(t, resident(evicted, "epoch"), "values with a delete epoch stay in memory")
	st := totals(evicted)
	require.Equal(t, len(live), st.Evicted)
	require.Equal(t, 1, st.Tombstones)
	require.Equal(t, ref.Len(), evicted.Len())
	return ref, evicted, d, cellsOf(ref)
}

// Every operation on an evicted key answers, and leaves the key, exactly as
// it does on a store that never evicted it; afterwards the key can leave
// memory again and still reads the same.
func TestBudgetOpsOnEvictedKeys(t *testing.T) {
	later := lattice.MakeTimestamp(time.Date(2026, 11, 22, 13, 0, 0, 0, time.UTC).UnixMilli(), 0)
	peerLWW, err := lattice.Cell{Value: lattice.NewLWW(later, 9, []byte("peer"))}.AppendBinary(nil)
	require.NoError(t, err)
	peerTomb, err := lattice.Cell{Epoch: lattice.Stamp{TS: later, Writer: 9}}.AppendBinary(nil)
	require.NoError(t, err)
	str := func(v []byte, err error) string { return fmt.Sprintf("%q %v", v, err) }
	ops := map[string]func(s *Store, cells map[string]string) string{
		"Get":             func(s *Store, _ map[string]string) string { return str(s.Get([]byte("set"), nil)) },
		"GetString":       func(s *Store, _ map[string]string) string { return str(s.GetString([]byte("ctr"), nil)) },
		"GetString type":  func(s *Store, _ map[string]string) string { return str(s.GetString([]byte("gset"), nil)) },
		"GetString epoch": func(s *Store, _ map[string]string) string { return str(s.GetString([]byte("epoch"), nil)) },
		"Lookup": func(s *Store, _ map[string]string) string {
			v, err := s.Lookup([]byte("gset"))
			return fmt.Sprint(lattice.Encode(v), err)
		},
		"Exists": func(s *Store, _ map[string]string) string { return fmt.Sprint(s.Exists([]byte("str"))) },
		"Type": func(s *Store, _ map[string]string) string {
			typ, ok := s.Type([]byte("set"))
			return fmt.Sprint(typ, ok)
		},
		"Members": func(s *Store, _ map[string]string) string {
			m, err := s.Members([]byte("set"))
			return fmt.Sprintf("%q %v", m, err)
		},
		"IsMember": func(s *Store, _ map[string]string) string {
			ok, err := s.IsMember([]byte("set"), []byte("b"))
			return fmt.Sprint(ok, err)
		},
		"Card": func(s *Store, _ map[string]string) string {
			n, err := s.Card([]byte("set"))
			return fmt.Sprint(n, err)
		},
		"Cell": func(s *Store, _ map[string]string) string {
			c, ok := s.Cell([]byte("epoch"), nil)
			return fmt.Sprintf("%q %v", c, ok)
		},
		"SetLWW":          func(s *Store, _ map[string]string) string { return fmt.Sprint(s.SetLWW([]byte("str"), []byte("new"))) },
		"SetLWW mismatch": func(s *Store, _ map[string]string) string { return fmt.Sprint(s.SetLWW([]byte("ctr"), []byte("x"))) },
		"SetLWW new key":  func(s *Store, _ map[string]string) string { return fmt.Sprint(s.SetLWW([]byte("new"), []byte("x"))) },
		"Overwrite type": func(s *Store, _ map[string]string) string {
			return fmt.Sprint(s.Overwrite([]byte("set"), []byte("now a string")))
		},
		"Delete": func(s *Store, _ map[string]string) string {
			existed, err := s.Delete([]byte("str"))
			return fmt.Sprint(existed, err)
		},
		"Delete tombstone": func(s *Store, _ map[string]string) string {
			existed, err := s.Delete([]byte("tomb"))
			return fmt.Sprint(existed, err)
		},
		"SetAdd": func(s *Store, _ map[string]string) string {
			n, err := s.SetAdd([]byte("set"), [][]byte{[]byte("b"), []byte("c")})
			return fmt.Sprint(n, err)
		},
		"SetAdd mismatch": func(s *Store, _ map[string]string) string {
			n, err := s.SetAdd([]byte("str"), [][]byte{[]byte("b")})
			return fmt.Sprint(n, err)
		},
		"SetRemove": func(s *Store, _ map[string]string) string {
			n, err := s.SetRemove([]byte("set"), [][]byte{[]byte("a"), []byte("z")})
			return fmt.Sprint(n, err)
		},
		"CounterAdd": func(s *Store, _ map[string]string) string {
			n, err := s.CounterAdd([]byte("ctr"), -8)
			return fmt.Sprint(n, err)
		},
		"IncrBy string": func(s *Store, _ map[string]string) string {
			n, err := s.IncrBy([]byte("num"), 1)
			return fmt.Sprint(n, err)
		},
		"IncrBy not integer": func(s *Store, _ map[string]string) string {
			n, err := s.IncrBy([]byte("str"), 1)
			return fmt.Sprint(n, err)
		},
		"Put": func(s *Store, _ map[string]string) string {
			return fmt.Sprint(s.Put([]byte("gset"), lattice.NewGSet([]byte("y"))))
		},
		"PutEncoded": func(s *Store, _ map[string]string) string {
			return fmt.Sprint(s.PutEncoded([]byte("str"), lattice.AppendLWW(nil, later, 9, []byte("encoded"))))
		},
		"MergeCell": func(s *Store, _ map[string]string) string {
			changed, err := s.MergeCell([]byte("epoch"), peerLWW)
			return fmt.Sprint(changed, err)
		},
		"MergeCell type": func(s *Store, _ map[string]string) string {
			changed, err := s.MergeCell([]byte("set"), peerLWW)
			return fmt.Sprint(changed, err)
		},
		"MergeCell delete": func(s *Store, _ map[string]string) string {
			changed, err := s.MergeCell([]byte("ctr"), peerTomb)
			return fmt.Sprint(changed, err)
		},
		"MergeCell no change": func(s *Store, cells map[string]string) string {
			changed, err := s.MergeCell([]byte("set"), []byte(cells["set"]))
			return fmt.Sprint(changed, err)
		},
		"DropIf": func(s *Store, cells map[string]string) string {
			return fmt.Sprint(s.DropIf([]byte("set"), []byte(cells["set"])))
		},
		"DropIf stale": func(s *Store, cells map[string]string) string {
			return fmt.Sprint(s.DropIf([]byte("set"), []byte(cells["gset"])))
		},
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			ref, s, _, cells := budgetTwins(t)
			require.Equal(t, op(ref, cells), op(s, cells))
			require.Equal(t, cellsOf(ref), eachOnce(t, s))
			require.Equal(t, ref.Len(), s.Len())
			// Out again (the op's key is dirty first, then clean), and still
			// the same.
			flushTimes(t, s, 2)
			require.Empty(t, evictableInMemory(s), "every value without an epoch out again")
			require.Positive(t, totals(s).Evicted)
			require.Equal(t, cellsOf(ref), eachOnce(t, s))
			for k := range cellsOf(ref) {
				a, aok := ref.Cell([]byte(k), nil)
				b, bok := s.Cell([]byte(k), nil)
				require.Equal(t, aok, bok, k)
				require.Equal(t, a, b, k)
			}
		})
	}
}

// Tombstones and keys whose latest state is not on disk are never evicted,
// however far over its budget a store is; a key whose flush failed stays
// until a flush writes it.
func TestBudgetKeepsTombstonesAndDirtyKeys(t *testing.T) {
	d := newMemDisk()
	s := budgetStore(t, d, newClock(), 1)
	for i := range 20 {
		_, err := s.Delete([]byte(fmt.Sprintf("tomb%d", i)))
		require.NoError(t, err)
	}
	require.NoError(t, s.SetLWW([]byte("k"), []byte("v1")))
	require.NoError(t, s.Flush())
	require.True(t, resident(s, "k"), "in the flush being taken")
	flushTimes(t, s, 3)
	require.False(t, resident(s, "k"))
	for i := range 20 {
		require.True(t, resident(s, fmt.Sprintf("tomb%d", i)))
	}

	require.NoError(t, s.SetLWW([]byte("k"), []byte("v2"))) // read back, written
	d.failOn = 2
	require.Error(t, s.Flush())
	require.Error(t, s.Flush())
	require.True(t, resident(s, "k"), "its flushes failed: memory holds its only copy")
	c, _ := d.get("k")
	require.Equal(t, "v1", string(c.Value.(*lattice.LWW).Value))
	require.NoError(t, s.Flush())
	require.True(t, resident(s, "k"), "in the flush being taken")
	require.NoError(t, s.Flush())
	require.False(t, resident(s, "k"))
	require.Equal(t, "v2", getString(t, s, "k"))
}

// A store restarted with a budget loads keys until memory holds the budget
// and leaves the rest on disk, counted and read back on access; Each visits
// them all.
func TestBudgetRestart(t *testing.T) {
	fs := vfs.NewMem()
	d := openPebble(t, fs)
	clk := newClock()
	s := budgetStore(t, d, clk, 0)
	want := map[string]string{}
	for i := range 500 {
		k, v := fmt.Sprintf("key:%03d", i), strings.Repeat("v", i%50)
		require.NoError(t, s.SetLWW([]byte(k), []byte(v)))
		want[k] = v
	}
	_, err := s.Delete([]byte("key:000"))
	require.NoError(t, err)
	delete(want, "key:000")
	_, err = s.Delete([]byte("zz tombstone"))
	require.NoError(t, err)
	require.NoError(t, s.Flush())
	all := eachOnce(t, s)
	require.NoError(t, d.db.Close())

	const budget = 4 << 10
	d = openPebble(t, fs)
	r := budgetStore(t, d, clk, budget)
	st := totals(r)
	require.Equal(t, 499, r.Len())
	require.Equal(t, 499, st.Keys)
	require.Greater(t, st.Evicted, 400)
	require.Less(t, st.Bytes, int64(budget+200))
	require.True(t, resident(r, "zz tombstone"), "tombstones are loaded whatever the budget")
	require.Equal(t, all, eachOnce(t, r))
	for k, v := range want {
		require.Equal(t, v, getString(t, r, k), k)
	}
	require.False(t, r.Exists([]byte("key:000")))
	require.Zero(t, totals(r).Evicted)
	require.EqualValues(t, st.Evicted, totals(r).ReadBacks)
	require.Equal(t, all, eachOnce(t, r))
}

// DropIf of an evicted key compares the cell on disk and removes it there
// too; until that delete lands the key is not read back, and a key
// recreated meanwhile starts from nothing on disk as in memory.
func TestBudgetDropIfEvicted(t *testing.T) {
	ref, s, d, cells := budgetTwins(t)
	require.False(t, s.DropIf([]byte("set"), []byte(cells["gset"])))
	require.True(t, s.DropIf([]byte("set"), []byte(cells["set"])))
	require.True(t, ref.DropIf([]byte("set"), []byte(cells["set"])))
	_, ok := d.get("set")
	require.True(t, ok, "the delete is not written yet")
	_, err := s.Members([]byte("set"))
	require.NoError(t, err)
	require.False(t, s.Exists([]byte("set")), "not read back from disk")
	require.Equal(t, cellsOf(ref), eachOnce(t, s), "Each skips it on disk")

	// Recreated before the delete lands: the old members must not come back.
	for _, st := range []*Store{ref, s} {
		_, err := st.SetAdd([]byte("set"), [][]byte{[]byte("c")})
		require.NoError(t, err)
	}
	flushTimes(t, s, 2)
	require.False(t, resident(s, "set"))
	ms, err := s.Members([]byte("set"))
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("c")}, ms)
	require.Equal(t, cellsOf(ref), eachOnce(t, s))
	require.Equal(t, ref.Len(), s.Len())

	// Dropped for good: gone from disk after the next flush.
	c, ok := s.Cell([]byte("str"), nil)
	require.True(t, ok)
	require.True(t, s.DropIf([]byte("str"), c))
	require.NoError(t, s.Flush())
	_, ok = d.get("str")
	require.False(t, ok)
	require.False(t, s.Exists([]byte("str")))
	require.Equal(t, ref.Len()-1, s.Len())
}

// hookDisk calls beforeScan when a Scan starts (for Each: between its
// memory pass and its disk pass), afterRead when a ReadCell has read (for a
// read back: before it relocks the shard), and beforeWrite when a Write
// starts (a flush has taken its keys).
type hookDisk struct {
	*memDisk
	beforeScan  func()
	afterRead   func()
	beforeWrite func()
}

func (d *hookDisk) Write(changes []Change, sync bool) error {
	if hook := d.beforeWrite; hook != nil {
		d.beforeWrite = nil
		hook()
	}
	return d.memDisk.Write(changes, sync)
}

func (d *hookDisk) Scan(fn func(key, cell []byte) error) error {
	if d.beforeScan != nil {
		d.beforeScan()
	}
	return d.memDisk.Scan(fn)
}

func (d *hookDisk) ReadCell(key, dst []byte) ([]byte, bool, error) {
	out, found, err := d.memDisk.ReadCell(key, dst)
	if hook := d.afterRead; hook != nil {
		d.afterRead = nil
		hook()
	}
	return out, found, err
}

// While a flush is on its way to disk, the keys it writes are in memory:
// a read meanwhile sees their latest state, not what the disk still holds.
func TestBudgetFlushInFlight(t *testing.T) {
	d := &hookDisk{memDisk: newMemDisk()}
	s := budgetStore(t, d, newClock(), 1)
	require.NoError(t, s.SetLWW([]byte("str"), []byte("old")))
	_, err := s.SetAdd([]byte("set"), [][]byte{[]byte("old")})
	require.NoError(t, err)
	flushTimes(t, s, 2)
	require.Equal(t, 2, totals(s).Evicted)
	require.NoError(t, s.SetLWW([]byte("str"), []byte("new")))
	_, err = s.SetAdd([]byte("set"), [][]byte{[]byte("new")})
	require.NoError(t, err)

	writing, resume := make(chan struct{}), make(chan struct{})
	d.beforeWrite = func() { close(writing); <-resume }
	flushed := make(chan error)
	go func() { flushed <- s.Flush() }()
	<-writing
	require.Equal(t, "new", getString(t, s, "str"))
	ms, err := s.Members([]byte("set"))
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("new"), []byte("old")}, ms)
	close(resume)
	require.NoError(t, <-flushed)
	flushTimes(t, s, 1)
	require.Equal(t, 2, totals(s).Evicted)
	require.Equal(t, "new", getString(t, s, "str"))
}

// A read back that raced with the key's return to memory, a write of it,
// its flush and its eviction again, or with its removal, must not install
// what it read: the key's state has moved on.
func TestBudgetReadBackRace(t *testing.T) {
	for _, then := range []string{"written and evicted again", "dropped"} {
		t.Run(then, func(t *testing.T) {
			d := &hookDisk{memDisk: newMemDisk()}
			s := budgetStore(t, d, newClock(), 1)
			k := []byte("k")
			require.NoError(t, s.SetLWW(k, []byte("old")))
			flushTimes(t, s, 2)
			require.False(t, resident(s, "k"))

			read, resume := make(chan struct{}), make(chan struct{})
			d.afterRead = func() { close(read); <-resume } // the first read back stops, unlocked, holding "old"
			got := make(chan string)
			go func() {
				v, err := s.GetString(k, nil)
				got <- fmt.Sprintf("%s %v", v, err)
			}()
			<-read
			want := "new <nil>"
			switch then {
			case "written and evicted again":
				require.NoError(t, s.SetLWW(k, []byte("new")))
				flushTimes(t, s, 2)
				require.False(t, resident(s, "k"))
			case "dropped":
				c, ok := s.Cell(k, nil)
				require.True(t, ok)
				require.True(t, s.DropIf(k, c))
				want = fmt.Sprintf(" %v", ErrNotFound)
			}
			close(resume)
			require.Equal(t, want, <-got)
			v, err := s.GetString(k, nil)
			require.Equal(t, want, fmt.Sprintf("%s %v", v, err), "and after it")
			require.Equal(t, 0, totals(s).Evicted)
		})
	}
}

// Each visits every key once, whether it is in memory or on disk, and
// whatever moves between them while it runs: keys read back after their
// shard's memory was visited are reported from disk, keys dropped meanwhile
// not at all. It stops when fn says so, on disk too.
func TestBudgetEachVisitsOnce(t *testing.T) {
	d := &hookDisk{memDisk: newMemDisk()}
	clk := newClock()
	s := budgetStore(t, d, clk, 2<<10)
	ref, err := NewStore(StoreConfig{NodeID: 7, Shards: 3, Now: clk.Now})
	require.NoError(t, err)
	for _, st := range []*Store{s, ref} {
		for i := range 300 {
			k := []byte(fmt.Sprintf("k%03d", i))
			switch i % 3 {
			case 0:
				require.NoError(t, st.SetLWW(k, []byte("value")))
			case 1:
				_, err := st.CounterAdd(k, int64(i))
				require.NoError(t, err)
			case 2:
				_, err := st.Delete(k)
				require.NoError(t, err)
			}
		}
	}
	flushTimes(t, s, 2)
	require.Positive(t, totals(s).Evicted)
	want := cellsOf(ref)
	require.Equal(t, want, eachOnce(t, s))

	// Between the passes, read every key back and drop one.
	dropped := "k001"
	d.beforeScan = func() {
		d.beforeScan = nil
		for k := range want {
			_ = s.Exists([]byte(k))
		}
		require.True(t, s.DropIf([]byte(dropped), []byte(want[dropped])))
	}
	got := eachOnce(t, s)
	require.Zero(t, totals(s).Evicted)
	require.Positive(t, totals(s).ReadBacks)
	delete(want, dropped)
	require.Equal(t, want, got)

	// Early stop, in the memory pass and in the disk pass.
	flushTimes(t, s, 2)
	inMemory := len(want) - totals(s).Evicted
	for _, stop := range []int{1, inMemory + 2} {
		n := 0
		s.Each(func(_, _ []byte) bool { n++; return n < stop })
		require.Equal(t, stop, n)
	}
}

// A delete epoch that Collect clears in memory is cleared on disk too, where
// the merge of later writes cannot clear it: a write after the Collect
// survives a restart and, with a budget, eviction. A value with a delete
// epoch is not evicted until Collect has cleared the epoch.
func TestBudgetCollectedEpoch(t *testing.T) {
	for _, budget := range []int64{0, 1} {
		t.Run(fmt.Sprint("budget=", budget), func(t *testing.T) {
			d := newMemDisk()
			clk := newClock()
			s := budgetStore(t, d, clk, budget)
			k := []byte("k")
			_, err := s.Delete(k)
			require.NoError(t, err)
			require.NoError(t, s.SetLWW(k, []byte("v1")))
			flushTimes(t, s, 2)
			require.True(t, resident(s, "k"), "a value with a delete epoch stays in memory")
			clk.Advance(DefaultTombstoneGrace + time.Second)
			require.Equal(t, 1, s.Collect(clk.Now()))
			enc, ok := s.Cell(k, nil)
			require.True(t, ok)
			c, err := lattice.DecodeCell(enc)
			require.NoError(t, err)
			require.True(t, c.Epoch.IsZero(), "epoch cleared")

			require.NoError(t, s.SetLWW(k, []byte("v2")))
			flushTimes(t, s, 3)
			if budget > 0 {
				require.False(t, resident(s, "k"), "no epoch: evicted")
			}
			require.Equal(t, "v2", getString(t, s, "k"))
			stored, ok := d.get("k")
			require.True(t, ok)
			require.True(t, stored.Epoch.IsZero(), "the disk forgot the epoch too: %+v", stored)
			r := budgetStore(t, d, clk, budget)
			require.Equal(t, "v2", getString(t, r, "k"), "after a restart")
		})
	}
}

// Concurrent operations, flushes (with evictions), collections, DropIfs
// and Eachs on a store far over its budget, over Pebble (run with -race).
// Each worker owns its keys and checks every read against its own model;
// Each must report every key that nobody changes exactly once, with its
// cell, and no key twice. The state survives a restart.
func TestBudgetConcurrent(t *testing.T) {
	fs := vfs.NewMem()
	d := openPebble(t, fs)
	clk := newClock()
	cfg := StoreConfig{NodeID: 7, Shards: 4, Disk: d, Now: clk.Now, MemoryBudget: 2 << 10,
		FlushEvery: time.Millisecond, CollectEvery: time.Millisecond, TombstoneGrace: time.Second, Logger: quiet}
	s, err := NewStore(cfg)
	require.NoError(t, err)
	stable := map[string]string{}
	for i := range 300 {
		k := fmt.Sprintf("stable:%03d", i)
		require.NoError(t, s.SetLWW([]byte(k), bytes.Repeat([]byte{byte('a' + i%26)}, 40)))
	}
	for k, c := range cellsOf(s) {
		stable[k] = c
	}
	flushTimes(t, s, 2)
	require.Positive(t, totals(s).Evicted)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx) }()

	const workers, ops, shared = 3, 2000, 3
	eachNow := make(chan struct{}, 1) // worker 0 asks for an Each now and then
	models := make([]map[string]string, workers)
	adds := make([][shared]int64, workers) // what each worker added to the shared counters
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			model := map[string]string{} // key -> GetString
			models[w] = model
			fail := func(format string, args ...any) {
				t.Errorf("worker %d: "+format, append([]any{w}, args...)...)
			}
			for i := range ops {
				n := rng.IntN(12)
				k := fmt.Sprintf("w%d:%s%d", w, []string{"s", "c"}[n%2], n)
				switch op := rng.IntN(10); {
				case op < 3:
					v := fmt.Sprint("v", i)
					if n%2 == 1 { // a counter key
						_, err := s.CounterAdd([]byte(k), 1)
						if err != nil {
							fail("CounterAdd %s: %v", k, err)
							return
						}
						v = fmt.Sprint(atoi(model[k]) + 1)
					} else if err := s.SetLWW([]byte(k), []byte(v)); err != nil {
						fail("SetLWW %s: %v", k, err)
						return
					}
					model[k] = v
				case op < 4:
					if _, err := s.Delete([]byte(k)); err != nil {
						fail("Delete %s: %v", k, err)
						return
					}
					delete(model, k)
				case op < 5:
					if c, ok := s.Cell([]byte(k), nil); ok && s.DropIf([]byte(k), c) {
						delete(model, k)
					}
				case op < 6 && w == 0:
					clk.Advance(100 * time.Millisecond)
					select {
					case eachNow <- struct{}{}:
					default:
					}
				case op < 8: // counters every worker adds to: a lost update shows
					c := rng.IntN(shared)
					if _, err := s.CounterAdd([]byte(fmt.Sprint("shared:", c)), 1); err != nil {
						fail("CounterAdd shared: %v", err)
						return
					}
					adds[w][c]++
				default:
					v, err := s.GetString([]byte(k), nil)
					want, ok := model[k]
					if (err == nil) != ok || string(v) != want {
						fail("GetString %s = %q, %v; want %q (exists %v)", k, v, err, want, ok)
						return
					}
					sk := fmt.Sprintf("stable:%03d", rng.IntN(300))
					if c, ok := s.Cell([]byte(sk), nil); !ok || string(c) != stable[sk] {
						fail("Cell %s = %x, %v", sk, c, ok)
						return
					}
				}
			}
		}()
	}
	eachDone := make(chan struct{})
	var eachs int
	go func() {
		defer close(eachDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-eachNow:
			}
			got := map[string]bool{}
			var twice []string
			s.Each(func(key, cell []byte) bool {
				if got[string(key)] {
					twice = append(twice, string(key))
				}
				got[string(key)] = true
				if want, ok := stable[string(key)]; ok && want != string(cell) {
					t.Errorf("Each: %s has %x, want %x", key, cell, want)
				}
				return true
			})
			eachs++
			if len(twice) > 0 {
				t.Errorf("Each visited %q twice", twice)
			}
			for k := range stable {
				if !got[k] {
					t.Errorf("Each missed %s", k)
					break
				}
			}
		}
	}()
	wg.Wait()
	cancel()
	require.NoError(t, <-ran)
	<-eachDone
	require.Positive(t, eachs)
	st := totals(s)
	require.Positive(t, st.Evictions)
	require.Positive(t, st.ReadBacks)
	t.Logf("%d Eachs, %d evictions, %d read backs", eachs, st.Evictions, st.ReadBacks)

	final := eachOnce(t, s)
	for c := range shared {
		var sum int64
		for w := range workers {
			sum += adds[w][c]
		}
		require.Equal(t, fmt.Sprint(sum), getString(t, s, fmt.Sprint("shared:", c)), "shared counter %d", c)
	}
	for w, model := range models {
		for k, v := range model {
			require.Equal(t, v, getString(t, s, k), "worker %d", w)
		}
	}
	require.NoError(t, d.db.Close())
	r, err := NewStore(StoreConfig{NodeID: 7, Shards: 2, Disk: openPebble(t, fs), Now: clk.Now, MemoryBudget: 1 << 10, Logger: quiet})
	require.NoError(t, err)
	require.Equal(t, final, eachOnce(t, r))
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

var (
	budgetSeed = flag.Uint64("budget.seed", 0, "TestBudgetModel: replay this seed only")
	budgetRuns = flag.Int("budget.runs", 0, "TestBudgetModel: how many seeds to try (default 16; 4 with -race or -short)")
)

// The memory budget changes nothing a caller can see. Random histories of
// every kind of operation run on a store with a tiny budget over Pebble
// (flushed, sometimes failing to, and restarted now and then) and on a store
// without a budget or a disk; after every step both answer alike: every
// operation's result, Len, Each's contents (visiting each key once) and
// every read of some keys (of every key now and then: reading every key
// after every step would read every key back, and operations would never
// meet an evicted one). A failure prints its seed and the history's last
// steps; replay it with -budget.seed.
func TestBudgetModel(t *testing.T) {
	if *budgetSeed != 0 {
		runBudgetModel(t, *budgetSeed, 400)
		return
	}
	runs := *budgetRuns
	if runs == 0 {
		runs = 16
		if raceEnabled || testing.Short() {
			runs = 4
		}
	}
	var evictions, readBacks uint64
	for range runs {
		st := runBudgetModel(t, rand.Uint64(), 400)
		if t.Failed() {
			return
		}
		evictions += st.Evictions
		readBacks += st.ReadBacks
	}
	// The histories did what they are for.
	require.Positive(t, evictions)
	require.Positive(t, readBacks)
}

type budgetModel struct {
	t       *testing.T
	seed    uint64
	rng     *rand.Rand
	clk     *fakeClock
	fs      vfs.FS
	disk    *pebbleDisk
	cfg     StoreConfig
	a, b    *Store // a: the budget over Pebble; b: no budget, no disk
	peer    *Store // writes cells that a and b merge
	keys    []string
	seen    [][2]string // (key, cell) read earlier, for stale DropIfs
	history []string
	stats   ShardStats // a's, summed over restarts
}

// runBudgetModel runs one history of steps operations from seed and
// returns a's statistics.
func runBudgetModel(t *testing.T, seed uint64, steps int) ShardStats {
	m := &budgetModel{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, seed>>1)), clk: newClock(), fs: vfs.NewMem()}
	m.disk = openPebble(t, m.fs)
	budgets := []int64{1, 256, 2 << 10}
	m.cfg = StoreConfig{NodeID: 7, Shards: []int{1, 3, 8}[m.rng.IntN(3)], Disk: m.disk, Now: m.clk.Now,
		MemoryBudget: budgets[m.rng.IntN(len(budgets))], TombstoneGrace: 5 * time.Second, Logger: quiet}
	var err error
	m.a, err = NewStore(m.cfg)
	require.NoError(t, err)
	m.b, err = NewStore(StoreConfig{NodeID: 7, Shards: 4, Now: m.clk.Now, TombstoneGrace: 5 * time.Second})
	require.NoError(t, err)
	m.peer, err = NewStore(StoreConfig{NodeID: 9, Shards: 1, Now: m.clk.Now})
	require.NoError(t, err)
	for i := range 16 {
		m.keys = append(m.keys, fmt.Sprintf("k%02d", i))
	}
	for i := 0; i < steps && !t.Failed(); i++ {
		m.step()
		m.check()
	}
	m.addStats()
	return m.stats
}

func (m *budgetModel) addStats() {
	st := totals(m.a)
	m.stats.Evictions += st.Evictions
	m.stats.ReadBacks += st.ReadBacks
}

// fatal fails the test with the seed to replay and the last steps.
func (m *budgetModel) fatal(format string, args ...any) {
	m.t.Helper()
	h := m.history[max(0, len(m.history)-30):]
	m.t.Fatalf("seed %d (replay: go test ./kvs -run TestBudgetModel -budget.seed=%d), budget %d, %d shards\nlast steps:\n  %s\n%s",
		m.seed, m.seed, m.cfg.MemoryBudget, m.cfg.Shards, strings.Join(h, "\n  "), fmt.Sprintf(format, args...))
}

// both runs op on a and on b and fails unless they answer alike.
func (m *budgetModel) both(name string, op func(s *Store) string) {
	m.t.Helper()
	m.history = append(m.history, name)
	ra, rb := op(m.a), op(m.b)
	if ra != rb {
		m.fatal("%s: with a budget %s, without %s", name, ra, rb)
	}
}

func (m *budgetModel) key() []byte { return []byte(m.keys[m.rng.IntN(len(m.keys))]) }

func (m *budgetModel) value() []byte {
	n := m.rng.IntN(24)
	if m.rng.IntN(10) == 0 {
		n = 200 + m.rng.IntN(200)
	}
	return bytes.Repeat([]byte{byte('a' + m.rng.IntN(26))}, n)
}

func (m *budgetModel) members() [][]byte {
	out := make([][]byte, 1+m.rng.IntN(3))
	for i := range out {
		out[i] = []byte{byte('a' + m.rng.IntN(6))}
	}
	return out
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func (m *budgetModel) step() {
	k := m.key()
	switch op := m.rng.IntN(100); {
	case op < 12:
		v := m.value()
		m.both(fmt.Sprintf("SetLWW %s %.10q", k, v), func(s *Store) string { return errString(s.SetLWW(k, v)) })
	case op < 20:
		v := m.value()
		if m.rng.IntN(3) == 0 {
			v = []byte(fmt.Sprint(m.rng.IntN(100)))
		}
		m.both(fmt.Sprintf("Overwrite %s %.10q", k, v), func(s *Store) string { return errString(s.Overwrite(k, v)) })
	case op < 28:
		m.both(fmt.Sprintf("Delete %s", k), func(s *Store) string {
			existed, err := s.Delete(k)
			return fmt.Sprint(existed, errString(err))
		})
	case op < 36:
		ms := m.members()
		m.both(fmt.Sprintf("SetAdd %s %q", k, ms), func(s *Store) string {
			n, err := s.SetAdd(k, ms)
			return fmt.Sprint(n, errString(err))
		})
	case op < 41:
		ms := m.members()
		m.both(fmt.Sprintf("SetRemove %s %q", k, ms), func(s *Store) string {
			n, err := s.SetRemove(k, ms)
			return fmt.Sprint(n, errString(err))
		})
	case op < 49:
		delta := int64(m.rng.IntN(21) - 10)
		convert := m.rng.IntN(2) == 0
		m.both(fmt.Sprintf("CounterAdd %s %d (IncrBy %v)", k, delta, convert), func(s *Store) string {
			n, err := s.counterAdd(k, delta, convert)
			return fmt.Sprint(n, errString(err))
		})
	case op < 53:
		var v lattice.Lattice = lattice.NewGSet(m.members()...)
		if m.rng.IntN(2) == 0 {
			v = &lattice.Max{Value: int64(m.rng.IntN(50))}
		}
		m.both(fmt.Sprintf("Put %s %x", k, lattice.Encode(v)), func(s *Store) string { return errString(s.Put(k, v)) })
	case op < 56:
		ts := lattice.MakeTimestamp(m.clk.Now().UnixMilli()+int64(m.rng.IntN(3)-1), 0)
		enc := lattice.AppendLWW(nil, ts, 9, m.value())
		m.both(fmt.Sprintf("PutEncoded %s %x", k, enc), func(s *Store) string { return errString(s.PutEncoded(k, enc)) })
	case op < 66:
		m.peerWrite(k)
		c, ok := m.peer.Cell(k, nil)
		if !ok {
			return
		}
		m.both(fmt.Sprintf("MergeCell %s %x", k, c), func(s *Store) string {
			changed, err := s.MergeCell(k, c)
			return fmt.Sprint(changed, errString(err))
		})
	case op < 71:
		var c []byte
		if len(m.seen) > 0 && m.rng.IntN(3) == 0 {
			kc := m.seen[m.rng.IntN(len(m.seen))]
			k, c = []byte(kc[0]), []byte(kc[1])
		} else if c, _ = m.b.Cell(k, nil); c == nil {
			return
		}
		m.both(fmt.Sprintf("DropIf %s %x", k, c), func(s *Store) string { return fmt.Sprint(s.DropIf(k, c)) })
	case op < 76:
		d := time.Duration(m.rng.IntN(7)) * time.Second
		m.clk.Advance(d)
		m.history = append(m.history, fmt.Sprintf("Collect after %v", d))
		m.a.Collect(m.clk.Now())
		m.b.Collect(m.clk.Now())
	case op < 88:
		m.history = append(m.history, "Flush")
		if err := m.a.Flush(); err != nil {
			m.fatal("flush: %v", err)
		}
	case op < 90:
		m.history = append(m.history, "Flush failing")
		m.disk.failWrites = 1
		if err := m.a.Flush(); err == nil {
			m.fatal("flush did not fail")
		}
	case op < 92:
		m.restart()
	case op < 95:
		stop := 1 + m.rng.IntN(20)
		m.both(fmt.Sprintf("Each stopping at %d", stop), func(s *Store) string {
			n := 0
			s.Each(func(_, _ []byte) bool { n++; return n < stop })
			return fmt.Sprint(n)
		})
	default:
		m.read(k)
	}
}

// peerWrite makes the peer write key, so that its cell has something to
// bring: any type, deletes, later and earlier stamps.
func (m *budgetModel) peerWrite(k []byte) {
	var err error
	switch m.rng.IntN(5) {
	case 0:
		err = m.peer.Overwrite(k, m.value())
	case 1:
		_, err = m.peer.Delete(k)
	case 2:
		_, err = m.peer.SetAdd(k, m.members())
	case 3:
		_, err = m.peer.CounterAdd(k, 1)
	case 4:
		if c, ok := m.b.Cell(k, nil); ok { // the peer learns b's cell, then writes on it
			_, err = m.peer.MergeCell(k, c)
		}
	}
	if err != nil && !errors.Is(err, ErrTypeMismatch) {
		m.fatal("peer: %v", err)
	}
}

// restart flushes a, closes its disk, and builds a new a from it.
func (m *budgetModel) restart() {
	m.history = append(m.history, "Restart")
	if err := m.a.Flush(); err != nil {
		m.fatal("flush: %v", err)
	}
	m.addStats()
	if err := m.disk.db.Close(); err != nil {
		m.fatal("close: %v", err)
	}
	m.disk = openPebble(m.t, m.fs)
	m.cfg.Disk = m.disk
	var err error
	if m.a, err = NewStore(m.cfg); err != nil {
		m.fatal("reopen: %v", err)
	}
	// A new clock starts from the wall clock: move it past every stamp
	// issued so far, as a restart's real clock would be.
	m.clk.Advance(time.Second)
}

// read compares every read of key.
func (m *budgetModel) read(k []byte) {
	m.t.Helper()
	m.both(fmt.Sprintf("read %s", k), func(s *Store) string {
		var b strings.Builder
		v, err := s.Get(k, nil)
		fmt.Fprintf(&b, "Get %x %s; ", v, errString(err))
		v, err = s.GetString(k, nil)
		fmt.Fprintf(&b, "GetString %q %s; ", v, errString(err))
		l, err := s.Lookup(k)
		if l != nil {
			fmt.Fprintf(&b, "Lookup %x ", lattice.Encode(l))
		}
		fmt.Fprintf(&b, "%s; ", errString(err))
		typ, ok := s.Type(k)
		fmt.Fprintf(&b, "Type %v %v; Exists %v; ", typ, ok, s.Exists(k))
		ms, err := s.Members(k)
		fmt.Fprintf(&b, "Members %q %s; ", ms, errString(err))
		n, err := s.Card(k)
		fmt.Fprintf(&b, "Card %d %s; ", n, errString(err))
		in, err := s.IsMember(k, []byte("a"))
		fmt.Fprintf(&b, "IsMember %v %s; ", in, errString(err))
		c, ok := s.Cell(k, nil)
		fmt.Fprintf(&b, "Cell %x %v", c, ok)
		return b.String()
	})
	if c, ok := m.b.Cell(k, nil); ok {
		m.seen = append(m.seen, [2]string{string(k), string(c)})
	}
}

// check compares what a and b hold after a step.
func (m *budgetModel) check() {
	m.t.Helper()
	if la, lb := m.a.Len(), m.b.Len(); la != lb {
		m.fatal("Len: with a budget %d, without %d", la, lb)
	}
	var sum ShardStats
	for _, st := range m.a.Stats() {
		if st.Evicted < 0 || st.Evicted > st.Keys || st.Bytes < 0 {
			m.fatal("shard stats: %+v", st)
		}
		sum.Keys += st.Keys
		sum.Tombstones += st.Tombstones
	}
	if sum.Keys != m.a.Len() {
		m.fatal("shard stats count %d keys, Len %d", sum.Keys, m.a.Len())
	}
	ea, eb := m.eachOf(m.a), m.eachOf(m.b)
	if !maps.Equal(ea, eb) {
		m.fatal("Each: with a budget %s\nwithout %s", describe(ea), describe(eb))
	}
	if m.rng.IntN(8) == 0 {
		for _, k := range m.keys {
			m.read([]byte(k))
		}
		return
	}
	m.read(m.key())
}

func (m *budgetModel) eachOf(s *Store) map[string]string {
	out := map[string]string{}
	var twice []string
	s.Each(func(key, cell []byte) bool {
		if _, dup := out[string(key)]; dup {
			twice = append(twice, string(key))
		}
		out[string(key)] = string(cell)
		return true
	})
	if len(twice) > 0 {
		m.fatal("Each visited %q twice", twice)
	}
	return out
}

func describe(cells map[string]string) string {
	keys := make([]string, 0, len(cells))
	for k := range cells {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s: %x", k, cells[k])
	}
	return b.String()
}

// BenchmarkStoreGetEvicted reads keys whose only copy is in the Pebble tier
// (on the operating system's file system, warm in its page cache): every Get
// reads its key back. Between rounds of 10k Gets, out of the timing, flushes
// evict every key again.
func BenchmarkStoreGetEvicted(b *testing.B) {
	db, err := disk.Open(b.TempDir(), disk.Options{Logger: quiet})
	require.NoError(b, err)
	defer db.Close()
	s := budgetStore(b, &pebbleDisk{db: db}, newClock(), 1)
	keys := make([][]byte, 100_000)
	v := bytes.Repeat([]byte("v"), 100)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%012d", i))
		require.NoError(b, s.Overwrite(keys[i], v))
	}
	evictAll := func() {
		for totals(s).Evicted < len(keys) { // a flush looks at a bounded number of keys per shard
			require.NoError(b, s.Flush())
		}
	}
	evictAll()
	order := rand.New(rand.NewPCG(1, 2)).Perm(len(keys))
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if buf, err = s.GetString(keys[order[i%len(keys)]], buf[:0]); err != nil {
			b.Fatal(err)
		}
		if i++; i%10_000 == 0 {
			b.StopTimer()
			evictAll()
			b.StartTimer()
		}
	}
	b.ReportMetric(float64(totals(s).ReadBacks)/float64(i), "readbacks/op")
}
