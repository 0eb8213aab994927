package disk

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/trellisdb/trellis/lattice"
)

const (
	benchBatch   = 64
	benchCellLen = 120
	benchKeys    = 100_000
)

// benchCell returns an LWW cell encoding of exactly benchCellLen bytes.
func benchCell(tb tb, ts int) []byte {
	overhead := len(lattice.AppendLWW(nil, 1, 1, nil))
	c := lattice.AppendLWW(nil, lattice.Timestamp(ts), 1, bytes.Repeat([]byte("v"), benchCellLen-overhead))
	if len(c) != benchCellLen {
		tb.Fatalf("cell of %d bytes, want %d", len(c), benchCellLen)
	}
	return c
}

// appendBenchKey appends the key "key%010d" of i without fmt's allocation.
func appendBenchKey(dst []byte, i int) []byte {
	dst = append(dst, "key0000000000"...)
	for j := len(dst) - 1; i > 0; j-- {
		dst[j] = byte('0' + i%10)
		i /= 10
	}
	return dst
}

func benchKey(i int) []byte { return appendBenchKey(nil, i) }

// openBench opens a DB on the operating system's file system (fsyncs are
// real), counting WAL fsyncs.
func openBench(b *testing.B) (*DB, *syncCountFS) {
	fs := &syncCountFS{FS: vfs.Default}
	d, err := Open(b.TempDir(), Options{FS: fs, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = d.Close() })
	return d, fs
}

// BenchmarkWrite: one op is a Write of a batch of 64 changes of 120-byte
// cells to random keys among a million.
func BenchmarkWrite(b *testing.B) {
	for _, sync := range []bool{false, true} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			d, fs := openBench(b)
			rng := rand.New(rand.NewPCG(1, 2))
			cell := benchCell(b, 1)
			batch := make([]Change, benchBatch)
			for i := range batch {
				batch[i] = Change{Key: make([]byte, 0, 16), Cell: cell}
			}
			before := fs.walSyncs.Load()
			b.SetBytes(benchBatch * benchCellLen)
			b.ReportAllocs()
			for b.Loop() {
				for i := range batch {
					batch[i].Key = appendBenchKey(batch[i].Key[:0], rng.IntN(1_000_000))
				}
				if err := d.Write(batch, sync); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(benchBatch*b.N)/b.Elapsed().Seconds(), "changes/s")
			b.ReportMetric(float64(fs.walSyncs.Load()-before)/float64(b.N), "fsyncs/op")
		})
	}
}

// BenchmarkWriteParallelSync: synced 64-change Writes from 8 goroutines per
// CPU at once; fsyncs/op below 1 is group commit at work.
func BenchmarkWriteParallelSync(b *testing.B) {
	d, fs := openBench(b)
	cell := benchCell(b, 1)
	before := fs.walSyncs.Load()
	b.SetBytes(benchBatch * benchCellLen)
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
		batch := make([]Change, benchBatch)
		for i := range batch {
			batch[i] = Change{Key: make([]byte, 0, 16), Cell: cell}
		}
		for pb.Next() {
			for i := range batch {
				batch[i].Key = appendBenchKey(batch[i].Key[:0], rng.IntN(1_000_000))
			}
			if err := d.Write(batch, true); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(benchBatch*b.N)/b.Elapsed().Seconds(), "changes/s")
	b.ReportMetric(float64(fs.walSyncs.Load()-before)/float64(b.N), "fsyncs/op")
}

// loadBench writes benchKeys keys with 120-byte cells and compacts them.
func loadBench(b *testing.B, d *DB) {
	cell := benchCell(b, 1)
	batch := make([]Change, 0, 1000)
	for i := range benchKeys {
		batch = append(batch, Change{Key: benchKey(i), Cell: cell})
		if len(batch) == cap(batch) {
			mustWrite(b, d, false, batch...)
			batch = batch[:0]
		}
	}
	compactAll(b, d)
}

// BenchmarkGet: Get of random keys among 100k compacted ones (all in the
// block cache), present and absent.
func BenchmarkGet(b *testing.B) {
	d, _ := openBench(b)
	loadBench(b, d)
	for _, present := range []bool{true, false} {
		b.Run(fmt.Sprintf("present=%v", present), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, 4))
			var dst []byte
			key := make([]byte, 0, 16)
			b.ReportAllocs()
			for b.Loop() {
				i := rng.IntN(benchKeys)
				if !present {
					i += benchKeys
				}
				key = appendBenchKey(key[:0], i)
				var err error
				dst, err = d.Get(key, dst[:0])
				if present == (err != nil) {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkScan: one op scans 100k compacted keys.
func BenchmarkScan(b *testing.B) {
	d, _ := openBench(b)
	loadBench(b, d)
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if err := d.Scan(func(_, _ []byte) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		if n != benchKeys {
			b.Fatalf("scanned %d keys", n)
		}
	}
	b.ReportMetric(float64(benchKeys*b.N)/b.Elapsed().Seconds(), "keys/s")
}

func TestAppendBenchKey(t *testing.T) {
	for _, i := range []int{0, 7, 1234567, 9_999_999_999} {
		if got, want := string(benchKey(i)), fmt.Sprintf("key%010d", i); got != want {
			t.Errorf("benchKey(%d) = %q, want %q", i, got, want)
		}
	}
}
