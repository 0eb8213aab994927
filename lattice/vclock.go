package lattice

import (
	"cmp"
	"fmt"
	"math"
	"slices"
)

// VClock is a vector clock: a counter per actor (node id), 0 for actors it
// does not list. Merge is the pointwise maximum. The zero value is the empty
// clock, and a nil *VClock reads as the empty clock.
//
// A VClock is a small struct holding a slice: copying it (for example in a
// Version) shares the entries, so use Clone to get an independent clock.
type VClock struct {
	e []vcEntry // ascending actors, counters > 0
}

type vcEntry struct{ actor, counter uint64 }

// Ordering is the result of comparing two vector clocks.
type Ordering int8

// Orderings of two vector clocks a and b, as returned by a.Compare(b).
const (
	Equal      Ordering = iota // same counters
	Before                     // a < b: b has seen everything a has, and more
	After                      // a > b: a has seen everything b has, and more
	Concurrent                 // neither has seen everything the other has
)

// String returns "equal", "before", "after" or "concurrent".
func (o Ordering) String() string {
	switch o {
	case Equal:
		return "equal"
	case Before:
		return "before"
	case After:
		return "after"
	case Concurrent:
		return "concurrent"
	}
	return fmt.Sprintf("Ordering(%d)", int8(o))
}

// NewVClock returns a clock with the given counters (zero counters are
// dropped).
func NewVClock(counters map[uint64]uint64) *VClock {
	v := &VClock{e: make([]vcEntry, 0, len(counters))}
	for a, c := range counters {
		if c > 0 {
			v.e = append(v.e, vcEntry{a, c})
		}
	}
	slices.SortFunc(v.e, func(x, y vcEntry) int { return cmp.Compare(x.actor, y.actor) })
	return v
}

// Type returns TypeVClock.
func (v *VClock) Type() Type { return TypeVClock }

func (v *VClock) entries() []vcEntry {
	if v == nil {
		return nil
	}
	return v.e
}

func (v *VClock) find(actor uint64) (int, bool) {
	return slices.BinarySearchFunc(v.entries(), actor, func(x vcEntry, a uint64) int { return cmp.Compare(x.actor, a) })
}

// Get returns actor's counter (0 if absent).
func (v *VClock) Get(actor uint64) uint64 {
	if i, ok := v.find(actor); ok {
		return v.e[i].counter
	}
	return 0
}

// Increment adds one to actor's counter and returns the new counter. A
// counter at math.MaxUint64 (reachable only through a forged value) stays
// there.
func (v *VClock) Increment(actor uint64) uint64 {
	i, ok := v.find(actor)
	if !ok {
		v.e = slices.Insert(v.e, i, vcEntry{actor, 1})
		return 1
	}
	if v.e[i].counter < math.MaxUint64 {
		v.e[i].counter++
	}
	return v.e[i].counter
}

// raise sets actor's counter to max(current, c).
func (v *VClock) raise(actor, c uint64) {
	if c == 0 {
		return
	}
	i, ok := v.find(actor)
	switch {
	case !ok:
		v.e = slices.Insert(v.e, i, vcEntry{actor, c})
	case v.e[i].counter < c:
		v.e[i].counter = c
	}
}

// Len returns the number of actors with a non-zero counter.
func (v *VClock) Len() int { return len(v.entries()) }

// Actors returns the actors with a non-zero counter, ascending.
func (v *VClock) Actors() []uint64 {
	out := make([]uint64, len(v.entries()))
	for i, x := range v.entries() {
		out[i] = x.actor
	}
	return out
}

// Counters returns the clock as a map (a copy).
func (v *VClock) Counters() map[uint64]uint64 {
	out := make(map[uint64]uint64, len(v.entries()))
	for _, x := range v.entries() {
		out[x.actor] = x.counter
	}
	return out
}

// Compare reports how v and o are ordered causally. A nil clock is empty.
func (v *VClock) Compare(o *VClock) Ordering {
	a, b := v.entries(), o.entries()
	less, greater := false, false // v has a smaller / greater counter somewhere
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].actor < b[j].actor):
			greater = true
			i++
		case i == len(a) || b[j].actor < a[i].actor:
			less = true
			j++
		default:
			if a[i].counter < b[j].counter {
				less = true
			} else if a[i].counter > b[j].counter {
				greater = true
			}
			i++
			j++
		}
		if less && greater {
			return Concurrent
		}
	}
	switch {
	case less:
		return Before
	case greater:
		return After
	}
	return Equal
}

// Dominates reports whether v has seen everything o has: every counter of v
// is at least o's (v.Compare(o) is After or Equal).
func (v *VClock) Dominates(o *VClock) bool {
	c := v.Compare(o)
	return c == After || c == Equal
}

// StrictlyDominates reports whether v.Compare(o) is After.
func (v *VClock) StrictlyDominates(o *VClock) bool { return v.Compare(o) == After }

// Merge raises each counter to other's where other's is larger.
func (v *VClock) Merge(other Lattice) (bool, error) {
	o, ok := other.(*VClock)
	if !ok || o == nil {
		return false, mismatch(TypeVClock, other)
	}
	return v.merge(o), nil
}

// merge is Merge for a known clock; o may be nil.
func (v *VClock) merge(o *VClock) bool {
	b := o.entries()
	if v == o || len(b) == 0 {
		return false
	}
	a := v.e
	// Fast path: no new actors, so counters can be raised in place.
	changed := false
	i := 0
	for _, y := range b {
		for i < len(a) && a[i].actor < y.actor {
			i++
		}
		if i == len(a) || a[i].actor != y.actor {
			return v.mergeSlow(b)
		}
		if a[i].counter < y.counter {
			a[i].counter = y.counter
			changed = true
		}
	}
	return changed
}

func (v *VClock) mergeSlow(b []vcEntry) bool {
	v.e = joinByActor(v.e, b, func(e vcEntry) uint64 { return e.actor },
		func(x, y vcEntry) vcEntry { return vcEntry{x.actor, max(x.counter, y.counter)} })
	return true
}

// Clone returns a deep copy.
func (v *VClock) Clone() Lattice { return v.clone() }

func (v *VClock) clone() *VClock {
	if v.Len() == 0 {
		return &VClock{}
	}
	return &VClock{e: slices.Clone(v.e)}
}

// Equal reports whether other is a VClock with the same counters.
func (v *VClock) Equal(other Lattice) bool {
	o, ok := other.(*VClock)
	return ok && o != nil && v.equal(o)
}

func (v *VClock) equal(o *VClock) bool { return slices.Equal(v.entries(), o.entries()) }

// order is a total order on clocks used to sort versions canonically: the
// entry lists are compared lexicographically by (actor, counter), a proper
// prefix first.
func (v *VClock) order(o *VClock) int {
	return slices.CompareFunc(v.entries(), o.entries(), func(x, y vcEntry) int {
		if c := cmp.Compare(x.actor, y.actor); c != 0 {
			return c
		}
		return cmp.Compare(x.counter, y.counter)
	})
}

// Size returns the approximate bytes held.
func (v *VClock) Size() int { return 24 + 16*v.Len() }

// AppendBinary appends the encoding: a map from actor to counter (both
// uint), ascending actors, no zero counters.
func (v *VClock) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeVClock)
	v.appendPayload(&e)
	return e.result()
}

func (v *VClock) appendPayload(e *enc) {
	e.mapHeader(v.Len())
	for _, x := range v.entries() {
		e.uint(x.actor)
		e.uint(x.counter)
	}
}

func decodeVClockLattice(d *dec) *VClock {
	v := decodeVClock(d)
	return &v
}

// decodeVClock reads a clock payload, requiring ascending actors and
// non-zero counters.
func decodeVClock(d *dec) VClock {
	n := d.mapLen()
	var v VClock
	if n > 0 {
		v.e = make([]vcEntry, 0, n)
	}
	for i := range n {
		x := vcEntry{d.uint(), d.uint()}
		if i > 0 {
			d.ascending(i, cmp.Compare(v.e[i-1].actor, x.actor), "vclock actors")
		}
		if x.counter == 0 {
			d.failf("vclock counter 0")
		}
		if d.err != nil {
			return VClock{}
		}
		v.e = append(v.e, x)
	}
	return v
}
