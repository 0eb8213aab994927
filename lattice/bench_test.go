package lattice_test

import (
	"strconv"
	"testing"

	"github.com/trellisdb/trellis/lattice"
)

func BenchmarkLWWMerge(b *testing.B) {
	val := make([]byte, 64)
	b.Run("older", func(b *testing.B) { // the common gossip case: nothing to do
		l, o := lattice.NewLWW(2, 1, val), lattice.NewLWW(1, 1, val)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = l.Merge(o)
		}
	})
	b.Run("newer", func(b *testing.B) { // the incoming value wins and is copied
		l, o := lattice.NewLWW(1, 1, val), lattice.NewLWW(2, 1, val)
		b.ReportAllocs()
		for b.Loop() {
			l.TS = 1
			_, _ = l.Merge(o)
		}
	})
}

func BenchmarkParseLWW(b *testing.B) {
	enc := lattice.AppendLWW(nil, lattice.MakeTimestamp(1700000000000, 1), 3, make([]byte, 64))
	b.ReportAllocs()
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if _, _, _, err := lattice.ParseLWW(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendLWW(b *testing.B) {
	val := make([]byte, 64)
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	b.SetBytes(int64(len(lattice.AppendLWW(nil, 1, 1, val))))
	for b.Loop() {
		buf = lattice.AppendLWW(buf[:0], 12345, 3, val)
	}
}

func BenchmarkDecodeLWW(b *testing.B) {
	enc := lattice.AppendLWW(nil, lattice.MakeTimestamp(1700000000000, 1), 3, make([]byte, 64))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := lattice.Decode(enc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCounterAdd(b *testing.B) {
	c := &lattice.Counter{}
	for a := range uint64(8) { // eight nodes have counted
		_, _ = c.Add(a, 1)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := c.Add(3, int64(i&1)*2-1); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkORSetAdd(b *testing.B) {
	elems := make([][]byte, 1024)
	for i := range elems {
		elems[i] = []byte("member-" + strconv.Itoa(i))
	}
	s := &lattice.ORSet{}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Add(uint64(i&3), elems[i&1023])
	}
}

func BenchmarkORSetMerge(b *testing.B) {
	x, y := &lattice.ORSet{}, &lattice.ORSet{}
	for i := range 1000 {
		x.Add(1, []byte("member-"+strconv.Itoa(i)))
	}
	_, _ = y.Merge(x)
	y.Add(2, []byte("new"))
	b.ReportAllocs()
	for b.Loop() {
		z := x.Clone()
		_, _ = z.Merge(y)
	}
}

func BenchmarkClockNow(b *testing.B) {
	c := lattice.NewClock(func() int64 { return 1700000000000 })
	b.ReportAllocs()
	for b.Loop() {
		c.Now()
	}
}
