package disk

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/goleak"
	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/lattice"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var quiet = slog.New(slog.DiscardHandler)

// tb is what the helpers need of *testing.T, *testing.B and *rapid.T.
type tb interface {
	Helper()
	Fatalf(format string, args ...any)
}

func mustOpen(t tb, fs vfs.FS, dir string) *DB {
	t.Helper()
	d, err := Open(dir, Options{FS: fs, Logger: quiet, CacheSize: 8 << 20})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return d
}

func mustWrite(t tb, d *DB, sync bool, changes ...Change) {
	t.Helper()
	if err := d.Write(changes, sync); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func enc(t tb, c lattice.Cell) []byte {
	t.Helper()
	b, err := c.AppendBinary(nil)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	return b
}

// compactAll flushes the memtable and compacts every key into the bottom
// level, so that Pebble merges every operand stack it holds.
func compactAll(t tb, d *DB) {
	t.Helper()
	if err := d.pdb.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if err := d.pdb.Compact(context.Background(), []byte{}, []byte{0xff, 0xff}, false); err != nil {
		t.Fatalf("compact: %v", err)
	}
}

// pebbleKey is the Pebble key of user key k.
func pebbleKey(k string) []byte { return append([]byte{cellPrefix}, k...) }

// getCell returns key's stored cell and whether it exists.
func getCell(t tb, d *DB, key string) (lattice.Cell, bool) {
	t.Helper()
	b, err := d.Get([]byte(key), nil)
	if errors.Is(err, ErrNotFound) {
		return lattice.Cell{}, false
	}
	if err != nil {
		t.Fatalf("get %q: %v", key, err)
	}
	c, err := lattice.DecodeCell(b)
	if err != nil {
		t.Fatalf("get %q: stored value does not decode: %v", key, err)
	}
	return c, true
}

// cellGen draws cells of the kinds a store writes: LWW registers with
// colliding timestamps, counters and OR-sets taken from three replicas that
// evolve as the test runs (so later values extend earlier ones, as a
// store's do), with or without a delete epoch, and tombstones.
type cellGen struct {
	counters [3]*lattice.Counter
	orsets   [3]*lattice.ORSet
}

func newCellGen() *cellGen {
	g := &cellGen{}
	for i := range g.counters {
		g.counters[i], g.orsets[i] = lattice.NewCounter(), lattice.NewORSet()
	}
	return g
}

var (
	genStamp = rapid.SampledFrom([]lattice.Stamp{{}, {}, {TS: 1, Writer: 1}, {TS: 1, Writer: 2}, {TS: 2, Writer: 1}})
	genTS    = rapid.SampledFrom([]lattice.Timestamp{1, 2, lattice.MakeTimestamp(1, 0)})
	genElem  = rapid.SampledFrom([]string{"", "x", "y", "z"})
)

func genLWW(t *rapid.T) *lattice.LWW {
	return lattice.NewLWW(genTS.Draw(t, "ts"), rapid.Uint64Range(1, 2).Draw(t, "writer"),
		[]byte(rapid.SampledFrom([]string{"", "a", "b"}).Draw(t, "lww")))
}

func (g *cellGen) value(t *rapid.T) lattice.Lattice {
	r := rapid.IntRange(0, 2).Draw(t, "replica")
	switch rapid.IntRange(0, 3).Draw(t, "type") {
	case 0:
		return genLWW(t)
	case 1:
		c := g.counters[r]
		if _, err := c.Add(uint64(r+1), rapid.Int64Range(-2, 3).Draw(t, "delta")); err != nil {
			t.Fatalf("counter: %v", err)
		}
		return c.Clone()
	case 2:
		s := g.orsets[r]
		switch rapid.IntRange(0, 2).Draw(t, "orset op") {
		case 0:
			s.Add(uint64(r+1), []byte(genElem.Draw(t, "add")))
		case 1:
			s.Remove([]byte(genElem.Draw(t, "remove")))
		case 2:
			if _, err := s.Merge(g.orsets[rapid.IntRange(0, 2).Draw(t, "from")]); err != nil {
				t.Fatalf("orset: %v", err)
			}
		}
		return s.Clone()
	}
	return nil
}

// cell draws a cell: often a plain LWW register (the merge operator's fast
// path), otherwise a value in the zero epoch or a later one, or a tombstone
// (a later epoch without a value).
func (g *cellGen) cell(t *rapid.T) lattice.Cell {
	if rapid.IntRange(0, 2).Draw(t, "plain lww") == 0 {
		return lattice.Cell{Value: genLWW(t)}
	}
	c := lattice.Cell{Epoch: genStamp.Draw(t, "epoch"), Value: g.value(t)}
	if c.Value == nil && c.Epoch.IsZero() {
		c.Epoch = lattice.Stamp{TS: 2, Writer: 2}
	}
	return c
}
