package disk

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

// syncCountFS counts the fsyncs of WAL files and can hold them.
type syncCountFS struct {
	vfs.FS
	walSyncs   atomic.Int64
	beforeSync atomic.Pointer[func()] // called before each WAL fsync
}

func (fs *syncCountFS) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &syncCountFile{File: f, fs: fs}, nil
}

func (fs *syncCountFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	return fs.wrap(name, f, err)
}

func (fs *syncCountFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	return fs.wrap(newname, f, err)
}

func (fs *syncCountFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, c, opts...)
	return fs.wrap(name, f, err)
}

type syncCountFile struct {
	vfs.File
	fs *syncCountFS
}

func (f *syncCountFile) count() {
	if hook := f.fs.beforeSync.Load(); hook != nil {
		(*hook)()
	}
	f.fs.walSyncs.Add(1)
}

func (f *syncCountFile) Sync() error     { f.count(); return f.File.Sync() }
func (f *syncCountFile) SyncData() error { f.count(); return f.File.SyncData() }

// Synced Writes that arrive while an fsync is in progress share the next
// one (Pebble's WAL group commit): the first Write's fsync is held until
// every other writer's batch is queued in the WAL, and then all of them
// are made durable by one more fsync (two at most, if the last writer had
// not yet queued its sync request when the held fsync returned).
func TestConcurrentSyncedWritesShareFsyncs(t *testing.T) {
	fs := &syncCountFS{FS: vfs.NewMem()}
	d := mustOpen(t, fs, "db")
	defer d.Close()
	cell := enc(t, lattice.Cell{Value: lattice.NewLWW(1, 1, []byte("v"))})
	change := func(i int) Change { return Change{Key: fmt.Appendf(nil, "k%03d", i), Cell: cell} }
	mustWrite(t, d, true, change(0)) // the WAL exists and is synced

	// The WAL record size of one writer's batch.
	b := d.pdb.NewBatch()
	c := change(1)
	require.NoError(t, b.Merge(pebbleKey(string(c.Key)), c.Cell, nil))
	recordLen := uint64(len(b.Repr()))
	require.NoError(t, b.Close())

	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook := func() { once.Do(func() { close(held); <-release }) }
	fs.beforeSync.Store(&hook)
	before := fs.walSyncs.Load()

	const writers = 32
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	write := func(i int) {
		defer wg.Done()
		errs <- d.Write([]Change{change(i)}, true)
	}
	wg.Add(1)
	go write(1)
	<-held // writer 1's fsync is in progress
	queued := d.pdb.Metrics().WAL.BytesIn
	for i := 2; i <= writers; i++ {
		wg.Add(1)
		go write(i)
	}
	// Wait until the other writers' records are in the WAL (their sync
	// requests are queued with them); they cannot be synced yet.
	want := queued + (writers-1)*recordLen
	deadline := time.Now().Add(10 * time.Second)
	for d.pdb.Metrics().WAL.BytesIn < want {
		if time.Now().After(deadline) {
			t.Fatalf("writers did not queue: %d of %d WAL bytes", d.pdb.Metrics().WAL.BytesIn-queued, want-queued)
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	syncs := fs.walSyncs.Load() - before
	t.Logf("%d synced writes, %d WAL fsyncs", writers, syncs)
	require.LessOrEqual(t, syncs, int64(3))
	for i := 1; i <= writers; i++ {
		_, ok := getCell(t, d, fmt.Sprintf("k%03d", i))
		require.True(t, ok)
	}
}

// Many goroutines writing and reading at once: every synced Write is
// readable when it returns (and Scan sees a consistent set). Run with -race.
func TestConcurrentWritesAndReads(t *testing.T) {
	fs := &syncCountFS{FS: vfs.NewMem()}
	d := mustOpen(t, fs, "db")
	defer d.Close()
	const goroutines, writes = 16, 25
	before := fs.walSyncs.Load()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ctr lattice.Counter
			key := fmt.Appendf(nil, "g%02d", g)
			for i := range writes {
				if _, err := ctr.Add(uint64(g+1), 1); err != nil {
					t.Error(err)
					return
				}
				if err := d.Write([]Change{{Key: key, Cell: enc(t, lattice.Cell{Value: &ctr})}}, true); err != nil {
					t.Error(err)
					return
				}
				got, err := d.Get(key, nil)
				if err != nil {
					t.Error(err)
					return
				}
				c, err := lattice.DecodeCell(got)
				if err != nil || c.Value.(*lattice.Counter).Value() != int64(i+1) {
					t.Errorf("goroutine %d write %d: read %+v, %v", g, i, c, err)
					return
				}
				if i%5 == 0 {
					if err := d.Scan(func(_, cell []byte) error {
						_, err := lattice.DecodeCell(cell)
						return err
					}); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d synced writes, %d WAL fsyncs", goroutines*writes, fs.walSyncs.Load()-before)
}
