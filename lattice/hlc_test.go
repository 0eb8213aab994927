package lattice_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

// fakeWall is a wall clock that tests set by hand.
type fakeWall struct{ ms atomic.Int64 }

func (w *fakeWall) now() int64 { return w.ms.Load() }

func TestTimestampLayout(t *testing.T) {
	ts := lattice.MakeTimestamp(1700000000123, 7)
	require.Equal(t, int64(1700000000123), ts.Physical())
	require.Equal(t, uint16(7), ts.Logical())
	require.Equal(t, lattice.Timestamp(1700000000123<<16|7), ts)
	require.Equal(t, "2023-11-14T22:13:20.123Z+7", ts.String())
	require.Equal(t, int64(0), lattice.MakeTimestamp(-5, 1).Physical())
	require.Equal(t, int64(lattice.MaxPhysical), lattice.MakeTimestamp(1<<62, 0).Physical())
	require.Less(t, lattice.MakeTimestamp(1, 0xffff), lattice.MakeTimestamp(2, 0))
}

func TestClockMonotonic(t *testing.T) {
	var w fakeWall
	w.ms.Store(1000)
	c := lattice.NewClock(w.now)
	t1 := c.Now()
	require.Equal(t, lattice.MakeTimestamp(1000, 0), t1)
	t2 := c.Now()
	require.Equal(t, lattice.MakeTimestamp(1000, 1), t2, "same millisecond: logical counter")

	w.ms.Store(400) // wall clock jumps back
	t3 := c.Now()
	require.Equal(t, lattice.MakeTimestamp(1000, 2), t3, "physical never goes back")

	w.ms.Store(2000)
	require.Equal(t, lattice.MakeTimestamp(2000, 0), c.Now(), "wall clock ahead: logical resets")
	require.Equal(t, lattice.MakeTimestamp(2000, 0), c.Last())
}

func TestClockLogicalOverflow(t *testing.T) {
	var w fakeWall
	w.ms.Store(10)
	c := lattice.NewClock(w.now)
	got := c.Observe(lattice.MakeTimestamp(10, 0xfffe))
	require.Equal(t, lattice.MakeTimestamp(10, 0xffff), got)
	require.Equal(t, lattice.MakeTimestamp(11, 0), c.Now(), "logical overflow bumps physical by 1 ms")
	require.Equal(t, lattice.MakeTimestamp(11, 1), c.Now())
}

func TestClockObserve(t *testing.T) {
	var w fakeWall
	w.ms.Store(100)
	c := lattice.NewClock(w.now)
	local := c.Now()

	remote := lattice.MakeTimestamp(5000, 3) // a node whose clock runs ahead
	got := c.Observe(remote)
	require.Greater(t, got, remote)
	require.Greater(t, got, local)
	require.Equal(t, lattice.MakeTimestamp(5000, 4), got)
	require.Greater(t, c.Now(), got, "later readings stay above what was observed")

	// An old remote timestamp still advances the clock.
	before := c.Last()
	got = c.Observe(lattice.MakeTimestamp(1, 0))
	require.Greater(t, got, before)

	// Once wall time passes everything, it takes over.
	w.ms.Store(9000)
	require.Equal(t, lattice.MakeTimestamp(9000, 0), c.Observe(lattice.MakeTimestamp(8999, 9)))
}

func TestClockConcurrent(t *testing.T) {
	var w fakeWall
	w.ms.Store(1)
	c := lattice.NewClock(w.now)
	const goroutines, each = 4, 2000
	out := make([][]lattice.Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				if i%100 == 0 {
					w.ms.Add(1)
				}
				if i%3 == 0 {
					out[g] = append(out[g], c.Observe(lattice.MakeTimestamp(2, uint16(i))))
				} else {
					out[g] = append(out[g], c.Now())
				}
			}
		})
	}
	wg.Wait()
	seen := map[lattice.Timestamp]bool{}
	for _, ts := range out {
		for i, x := range ts {
			require.False(t, seen[x], "duplicate timestamp %v", x)
			seen[x] = true
			if i > 0 {
				require.Greater(t, x, ts[i-1], "not increasing within a goroutine")
			}
		}
	}
}

func TestClockNowDoesNotAllocate(t *testing.T) {
	c := lattice.NewClock(func() int64 { return 42 })
	require.Zero(t, testing.AllocsPerRun(1000, func() { c.Now() }))
}

func TestStamp(t *testing.T) {
	require.True(t, lattice.Stamp{}.IsZero())
	require.False(t, lattice.Stamp{Writer: 1}.IsZero())
	require.Equal(t, -1, lattice.Stamp{TS: 1, Writer: 9}.Compare(lattice.Stamp{TS: 2}))
	require.Equal(t, 1, lattice.Stamp{TS: 2, Writer: 2}.Compare(lattice.Stamp{TS: 2, Writer: 1}))
	require.Zero(t, lattice.Stamp{TS: 2, Writer: 2}.Compare(lattice.Stamp{TS: 2, Writer: 2}))
}

func TestClockSaturates(t *testing.T) {
	c := lattice.NewClock(func() int64 { return 1 })
	top := lattice.Timestamp(1<<64 - 1)
	require.Equal(t, top, c.Observe(top-1))
	require.Equal(t, top, c.Observe(top), "a forged maximal timestamp does not wrap the clock")
	require.Equal(t, top, c.Now())
}
