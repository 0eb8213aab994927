package disk

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/lattice"
)

// The store against a model in memory: random batches of random cells
// (and deletes) on a few keys, synced or not, with flushes, compactions and
// reopens between them so that Pebble merges operands in memtables, during
// flushes, in compactions of partial stacks and at read time. After every
// step, Get and ReadCell of every key and Scan return exactly the join of the cells
// written to the key since its last delete.
func TestMatchesModel(t *testing.T) {
	keys := []string{"", "a", "b", "c"}
	rapid.Check(t, func(t *rapid.T) {
		fs := vfs.NewMem()
		d := mustOpen(t, fs, "db")
		defer func() { _ = d.Close() }()
		g := newCellGen()
		model := map[string]lattice.Cell{}

		t.Repeat(map[string]func(*rapid.T){
			"write": func(t *rapid.T) {
				n := rapid.IntRange(1, 5).Draw(t, "changes")
				changes := make([]Change, n)
				for i := range changes {
					k := rapid.SampledFrom(keys).Draw(t, "key")
					changes[i].Key = []byte(k)
					if rapid.IntRange(0, 9).Draw(t, "delete") == 0 {
						delete(model, k)
						continue
					}
					c := g.cell(t)
					changes[i].Cell = enc(t, c)
					m := model[k]
					m.Merge(c)
					model[k] = m
				}
				mustWrite(t, d, rapid.Bool().Draw(t, "sync"), changes...)
			},
			"flush": func(t *rapid.T) {
				if err := d.pdb.Flush(); err != nil {
					t.Fatalf("flush: %v", err)
				}
			},
			"compact": func(t *rapid.T) { compactAll(t, d) },
			"reopen": func(t *rapid.T) {
				if err := d.Close(); err != nil {
					t.Fatalf("close: %v", err)
				}
				d = mustOpen(t, fs, "db")
			},
			"": func(t *rapid.T) {
				for _, k := range keys {
					got, ok := getCell(t, d, k)
					want, inModel := model[k]
					if ok != inModel || (ok && !got.Equal(want)) {
						t.Fatalf("key %q: got %+v (exists %v), want %+v (exists %v)", k, got, ok, want, inModel)
					}
					rc, found, err := d.ReadCell([]byte(k), nil)
					if err != nil || found != inModel || (found && !bytes.Equal(rc, enc(t, want))) {
						t.Fatalf("ReadCell %q: %x, %v, %v; want %+v (exists %v)", k, rc, found, err, want, inModel)
					}
				}
				var scanned []string
				err := d.Scan(func(key, cell []byte) error {
					want, ok := model[string(key)]
					if !ok {
						return fmt.Errorf("scan: key %q not in model", key)
					}
					if w := enc(t, want); !bytes.Equal(cell, w) {
						return fmt.Errorf("scan: key %q: %x, want %x", key, cell, w)
					}
					scanned = append(scanned, string(key))
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if len(scanned) != len(model) || !slices.IsSorted(scanned) {
					t.Fatalf("scan saw %q, model holds %d keys", scanned, len(model))
				}
			},
		})
	})
}

func TestGetAppendsAndReportsNotFound(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	defer d.Close()
	c := enc(t, lattice.Cell{Value: lattice.NewLWW(5, 1, []byte("v"))})
	mustWrite(t, d, false, Change{Key: []byte("k"), Cell: c})

	got, err := d.Get([]byte("k"), []byte("prefix"))
	require.NoError(t, err)
	require.Equal(t, append([]byte("prefix"), c...), got)

	got, err = d.Get([]byte("missing"), []byte("prefix"))
	require.ErrorIs(t, err, ErrNotFound)
	require.Equal(t, []byte("prefix"), got)
}

// ReadCell appends what Get does; a key that holds nothing, never or since
// its delete, is not found and not an error; a corrupt key and a closed DB
// are errors. What it returned stays intact after the value it was read from
// has been overwritten, flushed and compacted away (Pebble's value is only
// lent until its closer is closed).
func TestReadCell(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	c1 := enc(t, lattice.Cell{Value: lattice.NewLWW(5, 1, []byte("v1"))})
	c2 := enc(t, lattice.Cell{Value: lattice.NewLWW(6, 1, []byte("v2"))})
	k := []byte("k")
	mustWrite(t, d, false, Change{Key: k, Cell: c1})

	got, found, err := d.ReadCell(k, []byte("prefix"))
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, append([]byte("prefix"), c1...), got)

	compactAll(t, d) // now read from an sstable through the block cache
	fromTable, found, err := d.ReadCell(k, nil)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, c1, fromTable)
	for i := range 200 { // churn the cache and the tables under the returned slices
		mustWrite(t, d, false, Change{Key: []byte(fmt.Sprintf("x%03d", i)), Cell: c2}, Change{Key: k, Cell: c2})
	}
	compactAll(t, d)
	require.Equal(t, append([]byte("prefix"), c1...), got)
	require.Equal(t, c1, fromTable)
	got, found, err = d.ReadCell(k, nil)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, c2, got, "the later write won")

	for _, key := range []string{"never", "k"} {
		if key == "k" {
			mustWrite(t, d, false, Change{Key: k})
		}
		got, found, err = d.ReadCell([]byte(key), []byte("dst"))
		require.NoError(t, err, key)
		require.False(t, found, key)
		require.Equal(t, []byte("dst"), got, key)
	}

	require.NoError(t, d.pdb.Merge(pebbleKey("bad"), []byte("\x00garbage"), pebble.NoSync))
	got, found, err = d.ReadCell([]byte("bad"), []byte("dst"))
	require.ErrorIs(t, err, ErrCorrupt)
	require.False(t, found)
	require.Equal(t, []byte("dst"), got)

	require.NoError(t, d.Close())
	_, found, err = d.ReadCell(k, nil)
	require.ErrorIs(t, err, ErrClosed)
	require.False(t, found)
}

// ReadCell runs concurrently with Write, Scan and other ReadCells (run with
// -race) and sees every Write that returned before it began: writers raise
// each key's Max and publish what they wrote; a reader never reads less than
// what was published before its read.
func TestReadCellConcurrent(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	defer d.Close()
	const keys, rounds = 8, 300
	var published [keys]atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				k := (i*2 + w) % keys
				v := int64(i + 1)
				c := enc(t, lattice.Cell{Value: &lattice.Max{Value: v}})
				if err := d.Write([]Change{{Key: []byte(fmt.Sprint(k)), Cell: c}}, false); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				for {
					p := published[k].Load()
					if p >= v || published[k].CompareAndSwap(p, v) {
						break
					}
				}
				if i%100 == 0 {
					if err := d.pdb.Flush(); err != nil {
						t.Errorf("flush: %v", err)
						return
					}
				}
			}
		}()
	}
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf []byte
			for i := range rounds {
				k := (i + r) % keys
				floor := published[k].Load()
				var found bool
				var err error
				buf, found, err = d.ReadCell([]byte(fmt.Sprint(k)), buf[:0])
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if !found {
					if floor > 0 {
						t.Errorf("key %d: not found after a write of %d returned", k, floor)
						return
					}
					continue
				}
				c, err := lattice.DecodeCell(buf)
				if err != nil {
					t.Errorf("decode: %v", err)
					return
				}
				if got := c.Value.(*lattice.Max).Value; got < floor {
					t.Errorf("key %d: read %d after a write of %d returned", k, got, floor)
					return
				}
				if r == 0 && i%50 == 0 {
					if err := d.Scan(func(_, _ []byte) error { return nil }); err != nil {
						t.Errorf("scan: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

func TestScanStopsAtCallbackError(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	defer d.Close()
	c := enc(t, lattice.Cell{Value: &lattice.Max{Value: 1}})
	for _, k := range []string{"c", "a", "b"} {
		mustWrite(t, d, false, Change{Key: []byte(k), Cell: c})
	}
	stop := errors.New("stop")
	var seen []string
	err := d.Scan(func(key, _ []byte) error {
		seen = append(seen, string(key))
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	require.ErrorIs(t, err, stop)
	require.Equal(t, []string{"a", "b"}, seen)
}

// A Change with a nil Cell deletes the key outright; merges after it start
// from nothing, even merges of cells older than what was deleted, whether
// the delete is in the same batch, still in the memtable or compacted.
func TestDeleteStartsFresh(t *testing.T) {
	old := lattice.Cell{Epoch: lattice.Stamp{TS: 9, Writer: 1}, Value: lattice.NewGSet([]byte("old"))}
	young := lattice.Cell{Value: lattice.NewGSet([]byte("new"))} // older epoch than old
	k := []byte("k")
	for _, compact := range []bool{false, true} {
		t.Run(fmt.Sprintf("compact=%v", compact), func(t *testing.T) {
			d := mustOpen(t, vfs.NewMem(), "db")
			defer d.Close()
			mustWrite(t, d, true, Change{Key: k, Cell: enc(t, old)})
			if compact {
				compactAll(t, d)
			}
			mustWrite(t, d, true, Change{Key: k})
			_, err := d.Get(k, nil)
			require.ErrorIs(t, err, ErrNotFound)
			require.NoError(t, d.Scan(func(key, _ []byte) error { return fmt.Errorf("scan saw %q", key) }))

			mustWrite(t, d, true, Change{Key: k, Cell: enc(t, young)})
			if compact {
				compactAll(t, d)
			}
			got, ok := getCell(t, d, "k")
			require.True(t, ok)
			require.True(t, got.Equal(young), "got %+v", got)

			// In one batch: merge, delete, merge leaves the last merge.
			mustWrite(t, d, false,
				Change{Key: k, Cell: enc(t, old)}, Change{Key: k}, Change{Key: k, Cell: enc(t, young)})
			got, ok = getCell(t, d, "k")
			require.True(t, ok)
			require.True(t, got.Equal(young), "got %+v", got)
		})
	}
}

// A stored operand that is not a cell makes reads of its key fail with
// ErrCorrupt, before and after flushes and compactions (which must not fail
// or panic), and whatever is merged into it later, until the key is
// deleted. Other keys are unaffected.
func TestCorruptValue(t *testing.T) {
	good := lattice.Cell{Value: lattice.NewLWW(1, 1, []byte("v"))}
	badVersion := enc(t, good)
	badVersion[1] = lattice.FormatVersion + 1
	for name, bad := range map[string][]byte{"garbage": []byte("\x00garbage"), "unsupported version": badVersion} {
		t.Run(name, func(t *testing.T) {
			d := mustOpen(t, vfs.NewMem(), "db")
			defer d.Close()
			mustWrite(t, d, false,
				Change{Key: []byte("a"), Cell: enc(t, good)},
				Change{Key: []byte("b"), Cell: enc(t, good)})
			// Written behind the DB's back, as corruption would be.
			require.NoError(t, d.pdb.Merge(pebbleKey("b"), bad, pebble.NoSync))
			require.NoError(t, d.pdb.Merge(pebbleKey("c"), bad, pebble.NoSync)) // a lone bad operand

			checkCorrupt := func(stage string) {
				t.Helper()
				for _, k := range []string{"b", "c"} {
					got, err := d.Get([]byte(k), []byte("dst"))
					require.ErrorIs(t, err, ErrCorrupt, "%s: key %s", stage, k)
					require.Contains(t, err.Error(), fmt.Sprintf("%q", k))
					require.Equal(t, []byte("dst"), got)
				}
				err := d.Scan(func(key, _ []byte) error {
					require.Equal(t, "a", string(key), "%s: scan passed a corrupt key", stage)
					return nil
				})
				require.ErrorIs(t, err, ErrCorrupt, stage)
				require.Contains(t, err.Error(), `"b"`, "the error names the first corrupt key")
				_, ok := getCell(t, d, "a")
				require.True(t, ok, stage)
			}
			checkCorrupt("memtable")
			compactAll(t, d)
			checkCorrupt("compacted")
			mustWrite(t, d, false, Change{Key: []byte("b"), Cell: enc(t, good)})
			checkCorrupt("merged into")
			compactAll(t, d)
			checkCorrupt("merged into, compacted")
			require.Zero(t, d.pdb.Metrics().Compact.FailedCount, "no compaction failed")

			mustWrite(t, d, false, Change{Key: []byte("b")}, Change{Key: []byte("b"), Cell: enc(t, good)})
			got, ok := getCell(t, d, "b")
			require.True(t, ok)
			require.True(t, got.Equal(good), "a delete clears the corruption")
		})
	}
}

// The merge operator's name is stored with the data: a store written with
// another merger is refused, and Pebble refuses ours with another merger.
func TestOtherMergerRefused(t *testing.T) {
	fs := vfs.NewMem()
	pdb, err := pebble.Open("plain", &pebble.Options{FS: fs, Logger: pebbleLogger{quiet}})
	require.NoError(t, err)
	require.NoError(t, pdb.Set([]byte("k"), []byte("v"), pebble.Sync))
	require.NoError(t, pdb.Close())

	_, err = Open("plain", Options{FS: fs, Logger: quiet})
	require.Error(t, err)
	require.Contains(t, err.Error(), `merger name from file "pebble.concatenate" != merger name from options "trellis.cell.v1"`)

	d := mustOpen(t, fs, "ours")
	require.NoError(t, d.Close())
	_, err = pebble.Open("ours", &pebble.Options{FS: fs, Logger: pebbleLogger{quiet},
		Merger: &pebble.Merger{Name: "trellis.cell.v2", Merge: pebble.DefaultMerger.Merge}})
	require.Error(t, err)
	require.Contains(t, err.Error(), "trellis.cell.v1")
}

func TestFormatVersionIsNewest(t *testing.T) {
	require.Equal(t, pebble.FormatNewest, formatVersion,
		"a new Pebble supports a newer format: decide whether to move to it (old binaries then cannot open the store)")
	d := mustOpen(t, vfs.NewMem(), "db")
	defer d.Close()
	require.Equal(t, formatVersion, d.pdb.FormatMajorVersion())
}

// Bloom filters are on for every level, L0 included (Pebble's default has
// none on L0): Gets of absent keys are answered by filters.
func TestBloomFilters(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	defer d.Close()
	c := enc(t, lattice.Cell{Value: &lattice.Max{Value: 1}})
	var changes []Change
	for i := range 1000 {
		changes = append(changes, Change{Key: fmt.Appendf(nil, "k%04d", 2*i), Cell: c})
	}
	mustWrite(t, d, false, changes...)
	require.NoError(t, d.pdb.Flush()) // one L0 table
	for i := range 100 {
		_, err := d.Get(fmt.Appendf(nil, "k%04d", 2*i+1), nil)
		require.ErrorIs(t, err, ErrNotFound)
	}
	require.Positive(t, d.pdb.Metrics().Filter.Hits)
}

func TestOptionsValidate(t *testing.T) {
	require.NoError(t, Options{}.Validate())
	_, err := Open("db", Options{FS: vfs.NewMem(), CacheSize: -1})
	require.Error(t, err)
}

func TestClosed(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	require.NoError(t, d.Close())
	require.ErrorIs(t, d.Close(), ErrClosed)
	require.ErrorIs(t, d.Write([]Change{{Key: []byte("k")}}, true), ErrClosed)
	_, err := d.Get([]byte("k"), nil)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, d.Scan(func(_, _ []byte) error { return nil }), ErrClosed)
	require.Equal(t, Stats{}, d.Stats())
}

// Close waits for a Scan in progress; a call from the Scan's callback made
// once Close has begun gets ErrClosed rather than deadlocking.
func TestCloseDuringScan(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	mustWrite(t, d, false, Change{Key: []byte("k"), Cell: enc(t, lattice.Cell{Value: &lattice.Max{Value: 1}})})
	scanning := make(chan struct{})
	closed := make(chan error)
	go func() {
		<-scanning
		closed <- d.Close()
	}()
	err := d.Scan(func(key, _ []byte) error {
		close(scanning)
		for {
			if _, err := d.Get(key, nil); err != nil {
				return err
			}
			runtime.Gosched() // until Close has begun
		}
	})
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, <-closed)
}

func TestStats(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	defer d.Close()
	c := enc(t, lattice.Cell{Value: &lattice.Max{Value: 1}})
	mustWrite(t, d, true, Change{Key: []byte("k"), Cell: c})
	s := d.Stats()
	require.Positive(t, s.MemTableBytes)
	require.Positive(t, s.WALBytesWritten)
	compactAll(t, d)
	s = d.Stats()
	require.EqualValues(t, 1, s.Tables)
	require.Positive(t, s.DiskBytes)
	require.Positive(t, s.Flushes)
}

// Open creates missing directories; what a synced Write stored is there
// after Close and Open, on the operating system's file system.
func TestReopenOnDisk(t *testing.T) {
	dir := t.TempDir() + "/a/b"
	d, err := Open(dir, Options{Logger: quiet})
	require.NoError(t, err)
	want := lattice.Cell{Epoch: lattice.Stamp{TS: 3, Writer: 1}, Value: lattice.NewGSet([]byte("x"))}
	mustWrite(t, d, true, Change{Key: []byte("k"), Cell: enc(t, want)})
	require.NoError(t, d.Close())

	d, err = Open(dir, Options{Logger: quiet})
	require.NoError(t, err)
	defer d.Close()
	got, ok := getCell(t, d, "k")
	require.True(t, ok)
	require.True(t, got.Equal(want))
}

// A crash keeps every synced Write (and, after a sync barrier, every Write
// before it), whatever part of the unsynced data reaches the disk; what
// does reach it is intact.
func TestCrashKeepsSyncedWrites(t *testing.T) {
	cell := func(i int) lattice.Cell {
		return lattice.Cell{Value: lattice.NewLWW(lattice.Timestamp(i), 1, []byte("v"))}
	}
	for seed := range int64(20) {
		fs := vfs.NewCrashableMem()
		d := mustOpen(t, fs, "db")
		synced := map[string]lattice.Cell{}
		unsynced := map[string]lattice.Cell{}
		rng := rand.New(rand.NewPCG(uint64(seed), 0))
		for i := range 40 {
			k := fmt.Sprintf("k%02d", i)
			sync := rng.IntN(3) == 0
			mustWrite(t, d, sync, Change{Key: []byte(k), Cell: enc(t, cell(i))})
			if sync {
				synced[k] = cell(i)
			} else {
				unsynced[k] = cell(i)
			}
			if i == 20 { // a barrier makes everything so far durable
				mustWrite(t, d, true)
				for k, c := range unsynced {
					synced[k] = c
				}
				clear(unsynced)
			}
		}
		cfg := vfs.CrashCloneCfg{}
		if seed > 0 {
			cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: int(seed * 5), RNG: rand.New(rand.NewPCG(uint64(seed), 1))}
		}
		crashed := fs.CrashClone(cfg)
		require.NoError(t, d.Close())

		d = mustOpen(t, crashed, "db")
		for k, want := range synced {
			got, ok := getCell(t, d, k)
			require.True(t, ok, "seed %d: synced key %s lost", seed, k)
			require.True(t, got.Equal(want), "seed %d: key %s", seed, k)
		}
		kept := 0
		for k, want := range unsynced {
			if got, ok := getCell(t, d, k); ok {
				kept++
				require.True(t, got.Equal(want), "seed %d: key %s", seed, k)
			}
		}
		t.Logf("seed %d (%d%% of unsynced data reached disk): %d synced kept, %d of %d unsynced kept",
			seed, cfg.UnsyncedDataPercent, len(synced), kept, len(unsynced))
		require.NoError(t, d.Close())
	}
}

// A poisoned value never decodes as a cell.
func TestPoisonNeverDecodes(t *testing.T) {
	_, err := lattice.DecodeCell([]byte{poisonTag, lattice.FormatVersion, 0xc0})
	require.ErrorIs(t, err, lattice.ErrUnknownType)
}

// The empty key is a key like any other. (Pebble v2.1.7 panics flushing a
// table whose only key is empty; the key prefix keeps Pebble keys
// non-empty.)
func TestEmptyKey(t *testing.T) {
	d := mustOpen(t, vfs.NewMem(), "db")
	defer d.Close()
	want := lattice.Cell{Value: &lattice.Max{Value: 7}}
	mustWrite(t, d, true, Change{Key: []byte{}, Cell: enc(t, want)})
	compactAll(t, d)
	got, ok := getCell(t, d, "")
	require.True(t, ok)
	require.True(t, got.Equal(want))
}
