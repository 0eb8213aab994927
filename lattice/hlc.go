package lattice

import (
	"cmp"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// Timestamp is a hybrid logical clock reading: the upper 48 bits hold
// physical time in milliseconds since the Unix epoch, the lower 16 bits a
// logical counter. Timestamps compare as plain integers, so physical time
// orders first and the counter breaks ties.
type Timestamp uint64

const (
	logicalBits = 16
	// MaxPhysical is the largest physical time a Timestamp holds (2^48-1 ms,
	// in the year 10889).
	MaxPhysical = 1<<(64-logicalBits) - 1
)

// MakeTimestamp returns the timestamp (physicalMillis, logical).
// physicalMillis is clamped to [0, MaxPhysical].
func MakeTimestamp(physicalMillis int64, logical uint16) Timestamp {
	return Timestamp(uint64(clampPhysical(physicalMillis))<<logicalBits | uint64(logical))
}

func clampPhysical(ms int64) int64 { return min(max(ms, 0), MaxPhysical) }

// Physical returns the physical part, in milliseconds since the Unix epoch.
func (t Timestamp) Physical() int64 { return int64(t >> logicalBits) }

// Logical returns the logical counter.
func (t Timestamp) Logical() uint16 { return uint16(t) }

// String formats t as "2006-01-02T15:04:05.000Z+logical".
func (t Timestamp) String() string {
	return fmt.Sprintf("%s+%d", time.UnixMilli(t.Physical()).UTC().Format("2006-01-02T15:04:05.000Z"), t.Logical())
}

// Clock is a hybrid logical clock. Its readings are strictly increasing,
// never fall behind the wall clock it is given, and advance past every
// timestamp it observes, so causally related events get increasing
// timestamps even when wall clocks disagree. It is safe for concurrent use
// and Now does not allocate.
type Clock struct {
	now  func() int64
	last atomic.Uint64
}

// NewClock returns a clock that reads wall time from now, in milliseconds
// since the Unix epoch (for example func() int64 { return
// time.Now().UnixMilli() }). now must be safe for concurrent calls.
func NewClock(now func() int64) *Clock { return &Clock{now: now} }

// Now returns a timestamp greater than every timestamp the clock returned
// before. Its physical part is max(wall time, last physical part); when the
// logical counter would overflow, the physical part advances by 1 ms.
func (c *Clock) Now() Timestamp {
	for {
		last := c.last.Load()
		next := tick(Timestamp(last), c.now())
		if c.last.CompareAndSwap(last, uint64(next)) {
			return next
		}
	}
}

// Observe applies the HLC receive rule for a timestamp carried by a message:
// it returns a timestamp greater than both remote and every timestamp the
// clock returned before, and later readings stay above it. Observe trusts
// remote: callers that take timestamps from untrusted peers should refuse
// ones too far ahead of their wall clock before observing them.
func (c *Clock) Observe(remote Timestamp) Timestamp {
	for {
		last := c.last.Load()
		next := tick(max(Timestamp(last), remote), c.now())
		if c.last.CompareAndSwap(last, uint64(next)) {
			return next
		}
	}
}

// Last returns the latest timestamp the clock has returned (0 if none).
func (c *Clock) Last() Timestamp { return Timestamp(c.last.Load()) }

// tick returns the smallest timestamp above floor that is not behind wall.
// floor+1 carries a logical overflow into the physical part. The largest
// Timestamp (reachable only by observing a forged one) saturates.
func tick(floor Timestamp, wall int64) Timestamp {
	if w := MakeTimestamp(wall, 0); w > floor {
		return w
	}
	if floor == math.MaxUint64 {
		return floor
	}
	return floor + 1
}

// Stamp identifies an event: a timestamp and the writer (node id) that took
// it. Stamps are totally ordered, by TS then Writer; writers that take
// timestamps from their own Clock never produce equal stamps.
type Stamp struct {
	TS     Timestamp
	Writer uint64
}

// Compare returns -1, 0 or +1 as s orders before, equal to or after o.
func (s Stamp) Compare(o Stamp) int {
	if c := cmp.Compare(s.TS, o.TS); c != 0 {
		return c
	}
	return cmp.Compare(s.Writer, o.Writer)
}

// IsZero reports whether s is the zero stamp, which orders before all others.
func (s Stamp) IsZero() bool { return s == Stamp{} }
