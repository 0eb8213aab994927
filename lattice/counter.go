package lattice

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Counter is a PN-counter: each actor (node id) keeps a count of its
// increments and of its decrements, Merge takes the per-actor maximum of
// each, and the value is the sum of increments minus the sum of decrements.
// An actor must only Add at one replica at a time (its own node). The zero
// value is 0.
type Counter struct {
	e []counterEntry // ascending actors; pos or neg non-zero
}

type counterEntry struct {
	actor    uint64
	pos, neg uint64
}

// NewCounter returns a counter at 0 (the same as &Counter{}).
func NewCounter() *Counter { return &Counter{} }

// Type returns TypeCounter.
func (c *Counter) Type() Type { return TypeCounter }

// Add adds delta (which may be negative) on behalf of actor and returns the
// new value. If the value would leave int64, or actor's increment or
// decrement count would leave uint64, it returns ErrOverflow and leaves the
// counter unchanged.
func (c *Counter) Add(actor uint64, delta int64) (int64, error) {
	if delta == 0 {
		return c.Value(), nil
	}
	pos, neg := c.sums()
	i, found := slices.BinarySearchFunc(c.e, actor, func(x counterEntry, a uint64) int { return cmp.Compare(x.actor, a) })
	var x counterEntry
	if found {
		x = c.e[i]
	} else {
		x.actor = actor
	}
	var carry uint64
	if delta > 0 {
		x.pos, carry = bits.Add64(x.pos, uint64(delta), 0)
		pos = pos.add(uint64(delta))
	} else {
		mag := uint64(-(delta + 1)) + 1 // |delta| without overflowing MinInt64
		x.neg, carry = bits.Add64(x.neg, mag, 0)
		neg = neg.add(mag)
	}
	v, ok := value128(pos, neg)
	if carry != 0 || !ok {
		return c.Value(), fmt.Errorf("%w: adding %d for actor %d", ErrOverflow, delta, actor)
	}
	if found {
		c.e[i] = x
	} else {
		c.e = slices.Insert(c.e, i, x)
	}
	return v, nil
}

// Value returns the counter's value. Replicas that each stayed within int64
// can merge to a sum outside it; Value then saturates at math.MinInt64 or
// math.MaxInt64 (and Add reports ErrOverflow until it is back in range).
func (c *Counter) Value() int64 {
	v, _ := value128(c.sums())
	return v
}

// u128 is an unsigned 128-bit sum.
type u128 struct{ hi, lo uint64 }

func (a u128) add(x uint64) u128 {
	lo, carry := bits.Add64(a.lo, x, 0)
	return u128{a.hi + carry, lo}
}

func (a u128) sub(b u128) u128 { // a >= b
	lo, borrow := bits.Sub64(a.lo, b.lo, 0)
	return u128{a.hi - b.hi - borrow, lo}
}

func (a u128) less(b u128) bool { return a.hi < b.hi || (a.hi == b.hi && a.lo < b.lo) }

func (c *Counter) sums() (pos, neg u128) {
	for _, x := range c.e {
		pos, neg = pos.add(x.pos), neg.add(x.neg)
	}
	return pos, neg
}

// value128 returns pos-neg, saturated to int64, and whether it fit.
func value128(pos, neg u128) (int64, bool) {
	if !pos.less(neg) {
		d := pos.sub(neg)
		if d.hi != 0 || d.lo > math.MaxInt64 {
			return math.MaxInt64, false
		}
		return int64(d.lo), true
	}
	d := neg.sub(pos)
	if d.hi != 0 || d.lo > 1<<63 {
		return math.MinInt64, false
	}
	return int64(-d.lo), true // -(1<<63) wraps to MinInt64, as wanted
}

// Merge takes, per actor, the larger increment and decrement counts.
func (c *Counter) Merge(other Lattice) (bool, error) {
	o, ok := other.(*Counter)
	if !ok || o == nil {
		return false, mismatch(TypeCounter, other)
	}
	if o == c || len(o.e) == 0 {
		return false, nil
	}
	a, b := c.e, o.e
	// Fast path: no new actors, so counts can be raised in place.
	changed := false
	i := 0
	for _, y := range b {
		for i < len(a) && a[i].actor < y.actor {
			i++
		}
		if i == len(a) || a[i].actor != y.actor {
			return c.mergeSlow(b), nil
		}
		if y.pos > a[i].pos {
			a[i].pos, changed = y.pos, true
		}
		if y.neg > a[i].neg {
			a[i].neg, changed = y.neg, true
		}
	}
	return changed, nil
}

// mergeSlow merges b, which has an actor c lacks, into a new slice.
func (c *Counter) mergeSlow(b []counterEntry) bool {
	c.e = joinByActor(c.e, b, func(e counterEntry) uint64 { return e.actor },
		func(x, y counterEntry) counterEntry {
			return counterEntry{x.actor, max(x.pos, y.pos), max(x.neg, y.neg)}
		})
	return true
}

// joinByActor returns the union of a and b, both sorted by actor with
// distinct actors, into a new slice sorted by actor; entries of an actor in
// both are combined with join.
func joinByActor[E any](a, b []E, actor func(E) uint64, join func(x, y E) E) []E {
	out := make([]E, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && actor(a[i]) < actor(b[j])):
			out = append(out, a[i])
			i++
		case i == len(a) || actor(b[j]) < actor(a[i]):
			out = append(out, b[j])
			j++
		default:
			out = append(out, join(a[i], b[j]))
			i++
			j++
		}
	}
	return out
}

// Clone returns a deep copy.
func (c *Counter) Clone() Lattice { return &Counter{e: slices.Clone(c.e)} }

// Equal reports whether other is a Counter with the same per-actor counts
// (not merely the same value).
func (c *Counter) Equal(other Lattice) bool {
	o, ok := other.(*Counter)
	return ok && o != nil && slices.Equal(c.e, o.e)
}

// Size returns the approximate bytes held.
func (c *Counter) Size() int { return 24 + 24*len(c.e) }

// AppendBinary appends the encoding: a map from actor (uint) to the array
// [increments (uint), decrements (uint)], ascending actors, never [0, 0].
func (c *Counter) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeCounter)
	e.mapHeader(len(c.e))
	for _, x := range c.e {
		e.uint(x.actor)
		e.array(2)
		e.uint(x.pos)
		e.uint(x.neg)
	}
	return e.result()
}

func decodeCounter(d *dec) *Counter {
	n := d.mapLen()
	c := &Counter{}
	if n > 0 {
		c.e = make([]counterEntry, 0, n)
	}
	for i := range n {
		x := counterEntry{actor: d.uint()}
		d.arrayOf(2)
		x.pos, x.neg = d.uint(), d.uint()
		if i > 0 {
			d.ascending(i, cmp.Compare(c.e[i-1].actor, x.actor), "counter actors")
		}
		if x.pos == 0 && x.neg == 0 {
			d.failf("counter entry [0, 0]")
		}
		if d.err != nil {
			return nil
		}
		c.e = append(c.e, x)
	}
	return c
}
