package kvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

// memDisk is a Disk in memory: it merges written cells with the lattice
// join, as the Pebble tier's merge operator does.
type memDisk struct {
	mu     sync.Mutex
	cells  map[string]lattice.Cell
	syncs  int
	failOn int // fail the next failOn writes
}

func newMemDisk() *memDisk { return &memDisk{cells: map[string]lattice.Cell{}} }

func (d *memDisk) Write(changes []Change, sync bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failOn > 0 {
		d.failOn--
		return errors.New("disk full")
	}
	for _, ch := range changes {
		if ch.Cell == nil {
			delete(d.cells, string(ch.Key))
			continue
		}
		c, err := lattice.DecodeCell(ch.Cell)
		if err != nil {
			return err
		}
		old := d.cells[string(ch.Key)]
		old.Merge(c)
		d.cells[string(ch.Key)] = old
	}
	if sync {
		d.syncs++
	}
	return nil
}

func (d *memDisk) Scan(fn func(key, cell []byte) error) error {
	d.mu.Lock()
	keys := make([]string, 0, len(d.cells))
	for k := range d.cells {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	encs := make([][]byte, len(keys))
	for i, k := range keys {
		encs[i], _ = d.cells[k].AppendBinary(nil)
	}
	d.mu.Unlock()
	for i, k := range keys {
		if err := fn([]byte(k), encs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (d *memDisk) ReadCell(key, dst []byte) ([]byte, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.cells[string(key)]
	if !ok {
		return dst, false, nil
	}
	out, err := c.AppendBinary(dst)
	return out, err == nil, err
}

func (d *memDisk) get(key string) (lattice.Cell, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c, ok := d.cells[key]
	return c, ok
}

var quiet = slog.New(slog.DiscardHandler)

func newDiskStore(t *testing.T, d Disk, clk *fakeClock) *Store {
	t.Helper()
	s, err := NewStore(StoreConfig{NodeID: 7, Shards: 4, Disk: d, Now: clk.Now, Logger: quiet})
	require.NoError(t, err)
	return s
}

// Everything written reaches the disk on a flush, and a store built from
// that disk answers exactly as the original did.
func TestFlushAndReload(t *testing.T) {
	d := newMemDisk()
	clk := &fakeClock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	s := newDiskStore(t, d, clk)
	require.Zero(t, s.WriteSeq())
	for i := range 100 {
		require.NoError(t, s.Overwrite([]byte(fmt.Sprintf("k%d", i)), []byte(fmt.Sprintf("v%d", i))))
	}
	require.NoError(t, s.Overwrite([]byte("k0"), []byte("new"))) // twice: written once
	_, err := s.CounterAdd([]byte("ctr"), 42)
	require.NoError(t, err)
	_, err = s.SetAdd([]byte("set"), [][]byte{[]byte("a"), []byte("b")})
	require.NoError(t, err)
	_, err = s.SetRemove([]byte("set"), [][]byte{[]byte("a")})
	require.NoError(t, err)
	_, err = s.Delete([]byte("k5"))
	require.NoError(t, err)
	require.NoError(t, s.Overwrite([]byte("n"), []byte("10")))
	_, err = s.IncrBy([]byte("n"), 5) // string -> counter under a new epoch
	require.NoError(t, err)
	require.EqualValues(t, 107, s.WriteSeq(), "one number per write")

	require.EqualValues(t, 107, s.UnflushedWrites())
	require.NoError(t, s.Flush())
	require.True(t, s.Durable(s.WriteSeq()))
	require.Zero(t, s.UnflushedWrites())
	c, ok := d.get("k5")
	require.True(t, ok)
	require.True(t, c.Deleted(), "the tombstone is on disk")

	r := newDiskStore(t, d, clk)
	require.Equal(t, s.Len(), r.Len())
	for _, k := range []string{"k0", "k1", "k99", "ctr", "n"} {
		require.Equal(t, getString(t, s, k), getString(t, r, k), k)
	}
	ms, err := r.Members([]byte("set"))
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("b")}, ms)
	require.False(t, r.Exists([]byte("k5")))
	// The reloaded counter keeps counting from where it was.
	v, err := r.IncrBy([]byte("ctr"), 1)
	require.NoError(t, err)
	require.EqualValues(t, 43, v)
}

// A failed disk write loses nothing: the keys are written by the next flush.
func TestFlushRetriesAfterDiskError(t *testing.T) {
	d := newMemDisk()
	clk := &fakeClock{now: time.Now()}
	s := newDiskStore(t, d, clk)
	require.NoError(t, s.Overwrite([]byte("a"), []byte("1")))
	d.failOn = 1
	require.Error(t, s.Flush())
	require.False(t, s.Durable(s.WriteSeq()))
	_, ok := d.get("a")
	require.False(t, ok)
	require.NoError(t, s.Overwrite([]byte("b"), []byte("2")))
	require.NoError(t, s.Flush())
	for _, k := range []string{"a", "b"} {
		_, ok := d.get(k)
		require.True(t, ok, k)
	}
}

// A collected tombstone is deleted from the disk too.
func TestCollectedTombstoneLeavesDisk(t *testing.T) {
	d := newMemDisk()
	clk := &fakeClock{now: time.Now()}
	s := newDiskStore(t, d, clk)
	_, err := s.Delete([]byte("gone"))
	require.NoError(t, err)
	require.NoError(t, s.Flush())
	_, ok := d.get("gone")
	require.True(t, ok)
	clk.Advance(DefaultTombstoneGrace + time.Second)
	require.Equal(t, 1, s.Collect(clk.Now()))
	require.NoError(t, s.Flush())
	_, ok = d.get("gone")
	require.False(t, ok)
}

// OnDurable runs its callback once a synced flush covers the write, and Run
// flushes at once when someone waits (it does not wait for its ticker).
func TestDurableWaitersAndRun(t *testing.T) {
	d := newMemDisk()
	clk := &fakeClock{now: time.Now()}
	s, err := NewStore(StoreConfig{Shards: 2, Disk: d, Now: clk.Now, FlushEvery: time.Hour, Logger: quiet})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	require.NoError(t, s.Overwrite([]byte("k"), []byte("v")))
	seq := s.WriteSeq()
	synced := make(chan struct{})
	s.OnDurable(seq, func() { close(synced) })
	select {
	case <-synced:
	case <-time.After(10 * time.Second):
		t.Fatal("durable callback not called")
	}
	_, ok := d.get("k")
	require.True(t, ok)
	require.True(t, s.Durable(seq))

	// Already durable: called at once.
	called := false
	s.OnDurable(seq, func() { called = true })
	require.True(t, called)

	// Run's exit flushes what is left.
	require.NoError(t, s.Overwrite([]byte("last"), []byte("write")))
	cancel()
	require.NoError(t, <-done)
	_, ok = d.get("last")
	require.True(t, ok)
}

// Without a disk, durability questions answer at once and nothing is
// tracked.
func TestNoDisk(t *testing.T) {
	s, _ := newTestStore(t)
	require.False(t, s.HasDisk())
	require.NoError(t, s.Overwrite([]byte("k"), []byte("v")))
	require.Zero(t, s.WriteSeq())
	require.True(t, s.Durable(100))
	called := false
	s.OnDurable(1, func() { called = true })
	require.True(t, called)
	require.NoError(t, s.Flush())
}

// DropIf removes a key's copy, on disk too, only while its cell is the one
// the caller saw, and leaves no tombstone behind.
func TestDropIf(t *testing.T) {
	d := newMemDisk()
	clk := &fakeClock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	s := newDiskStore(t, d, clk)
	require.NoError(t, s.Overwrite([]byte("reg"), []byte("v")))
	_, err := s.SetAdd([]byte("set"), [][]byte{[]byte("a")})
	require.NoError(t, err)
	_, err = s.Delete([]byte("gone"))
	require.NoError(t, err)
	require.NoError(t, s.Flush())

	for _, k := range []string{"reg", "set", "gone"} {
		cell, ok := s.Cell([]byte(k), nil)
		require.True(t, ok, k)
		require.False(t, s.DropIf([]byte(k), append(cell[:len(cell):len(cell)], 0)), "%s: a different cell must not drop", k)
		require.True(t, s.DropIf([]byte(k), cell), k)
		_, ok = s.Cell([]byte(k), nil)
		require.False(t, ok, "%s: no copy and no tombstone left", k)
		require.False(t, s.DropIf([]byte(k), cell), "%s: dropped twice", k)
	}
	require.Zero(t, s.Len())
	for _, st := range s.Stats() {
		require.Zero(t, st.Bytes, "shard bytes back to zero")
	}
	require.NoError(t, s.Flush())
	for _, k := range []string{"reg", "set", "gone"} {
		_, ok := d.get(k)
		require.False(t, ok, "%s is still on disk", k)
	}

	// A write after the caller read the cell keeps the key.
	require.NoError(t, s.Overwrite([]byte("reg"), []byte("v1")))
	old, _ := s.Cell([]byte("reg"), nil)
	require.NoError(t, s.Overwrite([]byte("reg"), []byte("v2")))
	require.False(t, s.DropIf([]byte("reg"), old))
	v, err := s.GetString([]byte("reg"), nil)
	require.NoError(t, err)
	require.Equal(t, "v2", string(v))
}
