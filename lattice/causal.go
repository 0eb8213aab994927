package lattice

import (
	"bytes"
	"slices"
	"strings"
)

// Version is one sibling of a SingleCausal value: a payload and the vector
// clock of the write that produced it.
type Version struct {
	Clock VClock
	Value []byte
}

func (v *Version) clock() *VClock { return &v.Clock }

func (v *Version) clone() Version {
	return Version{Clock: *v.Clock.clone(), Value: bytes.Clone(v.Value)}
}

// orderVersions is the canonical order: clock (VClock.order), then value.
func orderVersions(a, b *Version) int {
	if c := a.Clock.order(&b.Clock); c != 0 {
		return c
	}
	return bytes.Compare(a.Value, b.Value)
}

// SingleCausal is a causally consistent value of one key: a set of versions,
// each a clock and a payload, kept as an antichain. Merge takes the union of
// both sets and drops every version whose clock another version's clock
// strictly dominates; versions with equal clocks and different payloads are
// both kept (siblings), identical versions once. Taking the maximal elements
// of the union makes Merge associative, unlike "take the dominating clock
// whole, else union". The zero value has no versions (the bottom).
type SingleCausal struct {
	versions []Version // canonical order, antichain, owned
}

// NewSingleCausal returns a value with one version (copies of clock and
// value).
func NewSingleCausal(clock *VClock, value []byte) *SingleCausal {
	return &SingleCausal{versions: []Version{{Clock: *clock.clone(), Value: bytes.Clone(value)}}}
}

// Type returns TypeSingleCausal.
func (s *SingleCausal) Type() Type { return TypeSingleCausal }

// Len returns the number of versions (siblings).
func (s *SingleCausal) Len() int { return len(s.versions) }

// Versions returns copies of the versions in canonical order (by clock, then
// value).
func (s *SingleCausal) Versions() []Version {
	out := make([]Version, len(s.versions))
	for i := range s.versions {
		out[i] = s.versions[i].clone()
	}
	return out
}

// Values returns copies of the siblings' payloads, in canonical order.
func (s *SingleCausal) Values() [][]byte {
	vs := make([][]byte, len(s.versions))
	for i := range s.versions {
		vs[i] = s.versions[i].Value
	}
	return copyAll(vs)
}

// Clock returns the join of all versions' clocks: what a write that
// supersedes every sibling must descend from.
func (s *SingleCausal) Clock() *VClock {
	c := &VClock{}
	for i := range s.versions {
		c.merge(&s.versions[i].Clock)
	}
	return c
}

// Put replaces every version with a copy of value, at Clock() incremented
// for actor, and returns (a copy of) that clock. The new version strictly
// dominates all siblings, so replicas that merge it drop them too.
func (s *SingleCausal) Put(actor uint64, value []byte) *VClock {
	c := s.Clock()
	c.Increment(actor)
	s.versions = []Version{{Clock: *c.clone(), Value: bytes.Clone(value)}}
	return c
}

// Merge keeps the maximal versions of the union of s and other.
func (s *SingleCausal) Merge(other Lattice) (bool, error) {
	o, ok := other.(*SingleCausal)
	if !ok || o == nil {
		return false, mismatch(TypeSingleCausal, other)
	}
	out, changed := joinVersions(s.versions, o.versions, (*Version).clock, orderVersions, (*Version).clone)
	s.versions = out
	return changed, nil
}

// Clone returns a deep copy.
func (s *SingleCausal) Clone() Lattice { return &SingleCausal{versions: s.Versions()} }

// Equal reports whether other is a SingleCausal with the same versions.
func (s *SingleCausal) Equal(other Lattice) bool {
	o, ok := other.(*SingleCausal)
	return ok && o != nil && slices.EqualFunc(s.versions, o.versions, func(a, b Version) bool { return orderVersions(&a, &b) == 0 })
}

// Size returns the approximate bytes held.
func (s *SingleCausal) Size() int {
	n := 24
	for i := range s.versions {
		n += 24 + s.versions[i].Clock.Size() + len(s.versions[i].Value)
	}
	return n
}

// AppendBinary appends the encoding: an array of versions in canonical
// order, each the array [clock (VClock payload), value (bin)].
func (s *SingleCausal) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeSingleCausal)
	e.array(len(s.versions))
	for i := range s.versions {
		e.array(2)
		s.versions[i].Clock.appendPayload(&e)
		e.bin(s.versions[i].Value)
	}
	return e.result()
}

func decodeSingleCausal(d *dec) *SingleCausal {
	n := d.array()
	s := &SingleCausal{versions: make([]Version, 0, n)}
	for i := range n {
		d.arrayOf(2)
		v := Version{Clock: decodeVClock(d), Value: d.bin()}
		if i > 0 {
			d.ascending(i, orderVersions(&s.versions[i-1], &v), "singlecausal versions")
		}
		if d.err != nil {
			return nil
		}
		s.versions = append(s.versions, v)
	}
	checkAntichain(d, s.versions, (*Version).clock)
	return s
}

// MultiVersion is one sibling of a MultiCausal value: a payload, the vector
// clock of the write that produced it, and the versions of other keys that
// write depended on (key -> clock).
type MultiVersion struct {
	Clock VClock
	Deps  map[string]VClock
	Value []byte
}

// multiVersion is MultiVersion with its dependencies sorted by key and
// without empty clocks, so versions compare and encode canonically.
type multiVersion struct {
	clk   VClock
	deps  []keyClock
	value []byte
}

type keyClock struct {
	key   string
	clock VClock
}

func (v *multiVersion) clock() *VClock { return &v.clk }

func (v *multiVersion) clone() multiVersion {
	c := multiVersion{clk: *v.clk.clone(), value: bytes.Clone(v.value)}
	if len(v.deps) > 0 {
		c.deps = make([]keyClock, len(v.deps))
		for i, kc := range v.deps {
			c.deps[i] = keyClock{kc.key, *kc.clock.clone()}
		}
	}
	return c
}

func (v *multiVersion) export() MultiVersion {
	c := v.clone()
	out := MultiVersion{Clock: c.clk, Deps: make(map[string]VClock, len(c.deps)), Value: c.value}
	for _, kc := range c.deps {
		out.Deps[kc.key] = kc.clock
	}
	return out
}

func newMultiVersion(clock *VClock, deps map[string]VClock, value []byte) multiVersion {
	v := multiVersion{clk: *clock.clone(), value: bytes.Clone(value)}
	for _, k := range sortedKeys(deps) {
		if c := deps[k]; c.Len() > 0 {
			v.deps = append(v.deps, keyClock{k, *c.clone()})
		}
	}
	return v
}

// orderMultiVersions is the canonical order: clock, then dependencies (the
// sorted (key, clock) lists compared lexicographically, key bytes first,
// a proper prefix first), then value.
func orderMultiVersions(a, b *multiVersion) int {
	if c := a.clk.order(&b.clk); c != 0 {
		return c
	}
	c := slices.CompareFunc(a.deps, b.deps, func(x, y keyClock) int {
		if c := strings.Compare(x.key, y.key); c != 0 {
			return c
		}
		return x.clock.order(&y.clock)
	})
	if c != 0 {
		return c
	}
	return bytes.Compare(a.value, b.value)
}

// MultiCausal is a causally consistent value that records its dependencies
// on other keys: a set of versions, each a clock, a dependency map and a
// payload, kept as an antichain by clock exactly like SingleCausal (union,
// then drop versions whose clock is strictly dominated). Identical versions
// (same clock, dependencies and payload) are kept once; versions with equal
// clocks that differ otherwise are siblings. The zero value has no versions.
type MultiCausal struct {
	versions []multiVersion // canonical order, antichain, owned
}

// NewMultiCausal returns a value with one version (copies of the inputs;
// dependencies with an empty clock are dropped).
func NewMultiCausal(clock *VClock, deps map[string]VClock, value []byte) *MultiCausal {
	return &MultiCausal{versions: []multiVersion{newMultiVersion(clock, deps, value)}}
}

// Type returns TypeMultiCausal.
func (m *MultiCausal) Type() Type { return TypeMultiCausal }

// Len returns the number of versions (siblings).
func (m *MultiCausal) Len() int { return len(m.versions) }

// Versions returns copies of the versions in canonical order. Deps is never
// nil.
func (m *MultiCausal) Versions() []MultiVersion {
	out := make([]MultiVersion, len(m.versions))
	for i := range m.versions {
		out[i] = m.versions[i].export()
	}
	return out
}

// Values returns copies of the siblings' payloads, in canonical order.
func (m *MultiCausal) Values() [][]byte {
	vs := make([][]byte, len(m.versions))
	for i := range m.versions {
		vs[i] = m.versions[i].value
	}
	return copyAll(vs)
}

// Clock returns the join of all versions' clocks.
func (m *MultiCausal) Clock() *VClock {
	c := &VClock{}
	for i := range m.versions {
		c.merge(&m.versions[i].clk)
	}
	return c
}

// Deps returns, per key, the join of all versions' dependency clocks: the
// versions a reader of this value must be able to see for a causal cut.
func (m *MultiCausal) Deps() map[string]VClock {
	out := make(map[string]VClock)
	for i := range m.versions {
		for _, kc := range m.versions[i].deps {
			c, ok := out[kc.key]
			if !ok {
				out[kc.key] = *kc.clock.clone()
				continue
			}
			c.merge(&kc.clock)
			out[kc.key] = c
		}
	}
	return out
}

// Put replaces every version with one holding copies of deps and value, at
// Clock() incremented for actor, and returns (a copy of) that clock.
func (m *MultiCausal) Put(actor uint64, deps map[string]VClock, value []byte) *VClock {
	c := m.Clock()
	c.Increment(actor)
	m.versions = []multiVersion{newMultiVersion(c, deps, value)}
	return c
}

// Merge keeps the maximal versions (by clock) of the union of m and other.
func (m *MultiCausal) Merge(other Lattice) (bool, error) {
	o, ok := other.(*MultiCausal)
	if !ok || o == nil {
		return false, mismatch(TypeMultiCausal, other)
	}
	out, changed := joinVersions(m.versions, o.versions, (*multiVersion).clock, orderMultiVersions, (*multiVersion).clone)
	m.versions = out
	return changed, nil
}

// Clone returns a deep copy.
func (m *MultiCausal) Clone() Lattice {
	c := &MultiCausal{versions: make([]multiVersion, len(m.versions))}
	for i := range m.versions {
		c.versions[i] = m.versions[i].clone()
	}
	return c
}

// Equal reports whether other is a MultiCausal with the same versions.
func (m *MultiCausal) Equal(other Lattice) bool {
	o, ok := other.(*MultiCausal)
	return ok && o != nil && slices.EqualFunc(m.versions, o.versions, func(a, b multiVersion) bool { return orderMultiVersions(&a, &b) == 0 })
}

// Size returns the approximate bytes held.
func (m *MultiCausal) Size() int {
	n := 24
	for i := range m.versions {
		v := &m.versions[i]
		n += 48 + v.clk.Size() + len(v.value)
		for _, kc := range v.deps {
			n += 40 + len(kc.key) + kc.clock.Size()
		}
	}
	return n
}

// AppendBinary appends the encoding: an array of versions in canonical
// order, each the array [clock, deps, value (bin)], where deps is a map from
// key (bin) to a non-empty clock, ascending keys. Clocks are VClock payloads.
func (m *MultiCausal) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeMultiCausal)
	e.array(len(m.versions))
	for i := range m.versions {
		v := &m.versions[i]
		e.array(3)
		v.clk.appendPayload(&e)
		e.mapHeader(len(v.deps))
		for _, kc := range v.deps {
			e.str(kc.key)
			kc.clock.appendPayload(&e)
		}
		e.bin(v.value)
	}
	return e.result()
}

func decodeMultiCausal(d *dec) *MultiCausal {
	n := d.array()
	m := &MultiCausal{versions: make([]multiVersion, 0, n)}
	for i := range n {
		d.arrayOf(3)
		v := multiVersion{clk: decodeVClock(d)}
		k := d.mapLen()
		for j := range k {
			key := d.bin()
			if j > 0 {
				d.ascending(j, strings.Compare(v.deps[j-1].key, string(key)), "multicausal dependency keys")
			}
			c := decodeVClock(d)
			if d.err == nil && c.Len() == 0 {
				d.failf("multicausal dependency with an empty clock")
			}
			if d.err != nil {
				return nil
			}
			v.deps = append(v.deps, keyClock{string(key), c})
		}
		v.value = d.bin()
		if i > 0 {
			d.ascending(i, orderMultiVersions(&m.versions[i-1], &v), "multicausal versions")
		}
		if d.err != nil {
			return nil
		}
		m.versions = append(m.versions, v)
	}
	checkAntichain(d, m.versions, (*multiVersion).clock)
	return m
}

// joinVersions returns the maximal elements of the union of two antichains
// in canonical order: versions dominated strictly (by clock) by a version of
// the other side are dropped, identical versions kept once. Kept versions of
// theirs are cloned. If the result equals mine it returns (mine, false).
// It costs O(len(mine) * len(theirs)) clock comparisons.
func joinVersions[V any](mine, theirs []V, clock func(*V) *VClock, order func(*V, *V) int, clone func(*V) V) ([]V, bool) {
	if len(theirs) == 0 || (len(mine) > 0 && &mine[0] == &theirs[0]) {
		return mine, false
	}
	dropMine := make([]bool, len(mine))
	dropTheirs := make([]bool, len(theirs))
	for i := range mine {
		for j := range theirs {
			switch clock(&mine[i]).Compare(clock(&theirs[j])) {
			case Before:
				dropMine[i] = true
			case After:
				dropTheirs[j] = true
			}
		}
	}
	var out []V
	changed := false
	i, j := 0, 0
	for i < len(mine) || j < len(theirs) {
		c := -1
		switch {
		case i == len(mine):
			c = 1
		case j < len(theirs):
			c = order(&mine[i], &theirs[j])
		}
		switch {
		case c < 0:
			if dropMine[i] {
				changed = true
			} else {
				out = append(out, mine[i])
			}
			i++
		case c > 0:
			if !dropTheirs[j] {
				out = append(out, clone(&theirs[j]))
				changed = true
			}
			j++
		default: // identical: neither is dominated (their clocks are equal)
			out = append(out, mine[i])
			i++
			j++
		}
	}
	if !changed {
		return mine, false
	}
	return out, true
}

// checkAntichain fails d unless no version's clock strictly dominates
// another's. vs is in canonical order, so equal clocks are adjacent and only
// one clock of each run is compared.
func checkAntichain[V any](d *dec, vs []V, clock func(*V) *VClock) {
	if d.err != nil {
		return
	}
	var distinct []*VClock
	for i := range vs {
		c := clock(&vs[i])
		if len(distinct) > 0 && distinct[len(distinct)-1].equal(c) {
			continue
		}
		distinct = append(distinct, c)
	}
	for i, a := range distinct {
		for _, b := range distinct[i+1:] {
			if o := a.Compare(b); o == Before || o == After {
				d.failf("causal version dominated by another")
				return
			}
		}
	}
}
