package lattice

import (
	"bytes"
	"cmp"
	"maps"
	"math"
	"slices"
)

// ORSet is an observed-remove set of byte strings with add-wins semantics,
// in the ORSWOT style (no tombstones). Every Add tags the element with a new
// dot (actor, counter); the set's causal context records every dot it has
// seen. Remove drops an element's dots but keeps them in the context, so a
// replica that still holds those dots loses them on merge, while a dot it
// has not seen (a concurrent Add) survives: a concurrent add wins over a
// remove, and removes converge.
//
// The context is a version vector plus, for dots that arrive out of order,
// a "cloud" of individual dots; it is compacted after every change, so
// equal contexts have equal representations.
//
// An actor's dots must be unique: an actor (node id) must only Add to one
// replica of a set at a time, one that holds all of its previous Adds (its
// own node's copy). The zero value is the empty set.
type ORSet struct {
	entries map[string][]dot // element -> dots, ascending, never empty
	ctx     causalContext
	bytes   int // sum over entries of orsetEntrySize, kept current
}

// orsetEntrySize is the approximate memory of an element with n dots.
func orsetEntrySize(e string, n int) int { return len(e) + 48 + 16*n }

// dot identifies one Add: the actor's counter-th event.
type dot struct{ actor, counter uint64 }

func compareDots(a, b dot) int {
	if c := cmp.Compare(a.actor, b.actor); c != 0 {
		return c
	}
	return cmp.Compare(a.counter, b.counter)
}

// causalContext is a set of dots: every (a, c) with c <= vv[a], plus cloud.
// Compacted: each cloud dot (a, c) has c > vv[a]+1.
type causalContext struct {
	vv    VClock
	cloud map[dot]struct{}
}

func (c *causalContext) covers(d dot) bool {
	if d.counter <= c.vv.Get(d.actor) {
		return true
	}
	_, ok := c.cloud[d]
	return ok
}

// next returns a dot of actor not in the context; ok is false if actor's
// counters are exhausted (only a forged value gets there).
func (c *causalContext) next(actor uint64) (d dot, ok bool) {
	n := c.vv.Get(actor)
	for d := range c.cloud {
		if d.actor == actor {
			n = max(n, d.counter)
		}
	}
	return dot{actor, n + 1}, n < math.MaxUint64
}

// add inserts d, which the context must not cover.
func (c *causalContext) add(d dot) {
	if d.counter == c.vv.Get(d.actor)+1 {
		c.vv.raise(d.actor, d.counter)
		c.compact()
		return
	}
	if c.cloud == nil {
		c.cloud = make(map[dot]struct{})
	}
	c.cloud[d] = struct{}{}
}

// merge adds o's dots and reports whether any was new.
func (c *causalContext) merge(o *causalContext) bool {
	changed := false
	for d := range o.cloud {
		if !c.covers(d) {
			if c.cloud == nil {
				c.cloud = make(map[dot]struct{}, len(o.cloud))
			}
			c.cloud[d] = struct{}{}
			changed = true
		}
	}
	if c.vv.merge(&o.vv) {
		changed = true
	}
	if changed {
		c.compact()
	}
	return changed
}

// compact moves cloud dots that the version vector covers or that extend it
// contiguously into the version vector.
func (c *causalContext) compact() {
	for len(c.cloud) > 0 {
		moved := false
		for d := range c.cloud {
			n := c.vv.Get(d.actor)
			switch {
			case d.counter <= n:
				delete(c.cloud, d)
			case d.counter == n+1:
				c.vv.raise(d.actor, d.counter)
				delete(c.cloud, d)
				moved = true
			}
		}
		if !moved {
			break
		}
	}
	if len(c.cloud) == 0 {
		c.cloud = nil
	}
}

func (c *causalContext) clone() causalContext {
	return causalContext{vv: *c.vv.clone(), cloud: maps.Clone(c.cloud)}
}

func (c *causalContext) equal(o *causalContext) bool {
	return c.vv.equal(&o.vv) && maps.Equal(c.cloud, o.cloud)
}

func (c *causalContext) sortedCloud() []dot {
	ds := slices.Collect(maps.Keys(c.cloud))
	slices.SortFunc(ds, compareDots)
	return ds
}

// NewORSet returns an empty set (the same as &ORSet{}).
func NewORSet() *ORSet { return &ORSet{} }

// Type returns TypeORSet.
func (s *ORSet) Type() Type { return TypeORSet }

// Add adds elems on behalf of actor, each with a new dot, and returns how
// many were not present before. Adding an element that is present renews
// it, so it survives a concurrent Remove elsewhere. (If actor's counter has
// reached 2^64-1, which only a forged value can do, Add adds nothing.)
func (s *ORSet) Add(actor uint64, elems ...[]byte) (added int) {
	for _, e := range elems {
		d, ok := s.ctx.next(actor)
		if !ok {
			continue
		}
		s.ctx.add(d)
		if s.entries == nil {
			s.entries = make(map[string][]dot, len(elems))
		}
		switch ds, ok := s.entries[string(e)]; {
		case !ok:
			added++
			s.entries[string(e)] = []dot{d}
			s.bytes += orsetEntrySize(string(e), 1)
		case len(ds) == 1:
			ds[0] = d // ds is owned by s; no map write, so no key allocation
		default:
			ds[0] = d
			s.entries[string(e)] = ds[:1:1]
			s.bytes -= 16 * (len(ds) - 1)
		}
	}
	return added
}

// Remove removes elems and returns how many were present. The removal
// applies to the adds this replica has seen; a concurrent Add of the same
// element elsewhere survives the merge.
func (s *ORSet) Remove(elems ...[]byte) (removed int) {
	for _, e := range elems {
		if ds, ok := s.entries[string(e)]; ok {
			delete(s.entries, string(e))
			s.bytes -= orsetEntrySize(string(e), len(ds))
			removed++
		}
	}
	return removed
}

// Contains reports whether e is in the set.
func (s *ORSet) Contains(e []byte) bool {
	_, ok := s.entries[string(e)]
	return ok
}

// Len returns the number of elements.
func (s *ORSet) Len() int { return len(s.entries) }

// Elements returns copies of the elements in ascending byte order.
func (s *ORSet) Elements() [][]byte { return copyStrings(sortedKeys(s.entries)) }

// Merge joins other into s: an element's dot survives if both sides hold
// it, or if one side holds it and the other's context has not seen it; the
// contexts are united.
func (s *ORSet) Merge(other Lattice) (bool, error) {
	o, ok := other.(*ORSet)
	if !ok || o == nil {
		return false, mismatch(TypeORSet, other)
	}
	if o == s {
		return false, nil
	}
	changed := false
	// Both loops read the old contexts; the context merge comes last.
	for e, ods := range o.entries {
		ds := s.entries[e]
		out, diff := joinDots(ds, ods, &s.ctx, &o.ctx)
		if !diff {
			continue
		}
		changed = true
		if len(ds) > 0 {
			s.bytes -= orsetEntrySize(e, len(ds))
		}
		if len(out) == 0 {
			delete(s.entries, e)
			continue
		}
		if s.entries == nil {
			s.entries = make(map[string][]dot, len(o.entries))
		}
		s.entries[e] = out // e is an immutable string: sharing is safe
		s.bytes += orsetEntrySize(e, len(out))
	}
	for e, ds := range s.entries {
		if _, ok := o.entries[e]; ok {
			continue
		}
		out, diff := joinDots(ds, nil, &s.ctx, &o.ctx)
		if !diff {
			continue
		}
		changed = true
		s.bytes -= orsetEntrySize(e, len(ds))
		if len(out) == 0 {
			delete(s.entries, e)
		} else {
			s.entries[e] = out
			s.bytes += orsetEntrySize(e, len(out))
		}
	}
	if s.ctx.merge(&o.ctx) {
		changed = true
	}
	return changed, nil
}

// joinDots returns the join of one element's dots: mine (covered by myCtx)
// and theirs (covered by theirCtx). If the result equals mine, it returns
// (mine, false) without allocating; otherwise a new slice.
func joinDots(mine, theirs []dot, myCtx, theirCtx *causalContext) ([]dot, bool) {
	var out []dot
	diverged := false
	i, j := 0, 0
	for i < len(mine) || j < len(theirs) {
		c := -1
		switch {
		case i == len(mine):
			c = 1
		case j < len(theirs):
			c = compareDots(mine[i], theirs[j])
		}
		var d dot
		fromMine, keep := true, true
		switch {
		case c < 0: // only mine: survives unless they saw it (and dropped it)
			d, keep = mine[i], !theirCtx.covers(mine[i])
			i++
		case c > 0: // only theirs: survives unless I saw it
			d, fromMine, keep = theirs[j], false, !myCtx.covers(theirs[j])
			j++
		default: // both
			d = mine[i]
			i++
			j++
		}
		if !diverged {
			if fromMine == keep {
				continue // kept one of mine or dropped one of theirs: still mine
			}
			diverged = true
			kept := i // mine[:kept] were all kept
			if fromMine {
				kept--
			}
			out = append(make([]dot, 0, len(mine)+len(theirs)), mine[:kept]...)
		}
		if keep {
			out = append(out, d)
		}
	}
	if !diverged {
		return mine, false
	}
	return out, true
}

// Clone returns a deep copy.
func (s *ORSet) Clone() Lattice {
	c := &ORSet{ctx: s.ctx.clone(), bytes: s.bytes}
	if len(s.entries) > 0 {
		n := 0
		for _, ds := range s.entries {
			n += len(ds)
		}
		all := make([]dot, 0, n) // one allocation; each entry's cap ends at its length
		c.entries = make(map[string][]dot, len(s.entries))
		for e, ds := range s.entries {
			all = append(all, ds...)
			c.entries[e] = all[len(all)-len(ds) : len(all) : len(all)]
		}
	}
	return c
}

// Equal reports whether other is an ORSet with the same elements, dots and
// causal context.
func (s *ORSet) Equal(other Lattice) bool {
	o, ok := other.(*ORSet)
	if !ok || o == nil || len(s.entries) != len(o.entries) || !s.ctx.equal(&o.ctx) {
		return false
	}
	for e, ds := range s.entries {
		ods, ok := o.entries[e]
		if !ok || !slices.Equal(ds, ods) {
			return false
		}
	}
	return true
}

// Size returns the approximate bytes held, in time proportional to the
// number of actors (not elements).
func (s *ORSet) Size() int { return 64 + s.ctx.vv.Size() + 40*len(s.ctx.cloud) + s.bytes }

// AppendBinary appends the encoding: the array [version vector, cloud,
// elements]. The version vector is a VClock payload; the cloud an array of
// dots, ascending; elements a map from element (bin) to its dots (an array,
// ascending), ascending elements. A dot is the array [actor, counter].
func (s *ORSet) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeORSet)
	e.array(3)
	s.ctx.vv.appendPayload(&e)
	cloud := s.ctx.sortedCloud()
	e.array(len(cloud))
	for _, d := range cloud {
		e.dot(d)
	}
	keys := sortedKeys(s.entries)
	e.mapHeader(len(keys))
	for _, k := range keys {
		e.str(k)
		ds := s.entries[k]
		e.array(len(ds))
		for _, d := range ds {
			e.dot(d)
		}
	}
	return e.result()
}

func decodeDot(d *dec) dot {
	d.arrayOf(2)
	x := dot{d.uint(), d.uint()}
	if x.counter == 0 {
		d.failf("dot counter 0")
	}
	return x
}

func decodeORSet(d *dec) *ORSet {
	if !d.arrayOf(3) {
		return nil
	}
	s := &ORSet{ctx: causalContext{vv: decodeVClock(d)}}
	n := d.array()
	var prev dot
	for i := range n {
		x := decodeDot(d)
		d.ascending(i, compareDots(prev, x), "orset cloud")
		if x.counter <= s.ctx.vv.Get(x.actor)+1 {
			d.failf("orset cloud dot (%d, %d) not compacted", x.actor, x.counter)
		}
		if d.err != nil {
			return nil
		}
		if s.ctx.cloud == nil {
			s.ctx.cloud = make(map[dot]struct{}, n)
		}
		s.ctx.cloud[x] = struct{}{}
		prev = x
	}
	n = d.mapLen()
	if n > 0 {
		s.entries = make(map[string][]dot, n)
	}
	var prevElem []byte
	for i := range n {
		elem := d.bin()
		d.ascending(i, bytes.Compare(prevElem, elem), "orset elements")
		m := d.array()
		if d.err == nil && m == 0 {
			d.failf("orset element without dots")
		}
		ds := make([]dot, 0, m)
		for k := range m {
			x := decodeDot(d)
			if k > 0 {
				d.ascending(k, compareDots(ds[k-1], x), "orset dots")
			}
			if d.err == nil && !s.ctx.covers(x) {
				d.failf("orset dot (%d, %d) outside the causal context", x.actor, x.counter)
			}
			if d.err != nil {
				return nil
			}
			ds = append(ds, x)
		}
		if d.err != nil {
			return nil
		}
		s.entries[string(elem)] = ds
		s.bytes += orsetEntrySize(string(elem), len(ds))
		prevElem = elem
	}
	return s
}
