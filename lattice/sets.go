package lattice

import (
	"bytes"
	"maps"
	"slices"
)

// GSet is a grow-only set of byte strings; Merge is union. The zero value is
// the empty set.
type GSet struct {
	elems map[string]struct{}
	bytes int // sum over elements of len(e) + gsetEntryCost, kept current
}

// Approximate memory costs used by Size: a set's fixed part, and each
// element's bookkeeping beyond its bytes.
const (
	gsetCost            = 48
	gsetEntryCost       = 32
	orderedSetCost      = 24
	orderedSetEntryCost = 24
)

// NewGSet returns a set holding copies of elems.
func NewGSet(elems ...[]byte) *GSet {
	s := &GSet{}
	s.Add(elems...)
	return s
}

// Type returns TypeGSet.
func (s *GSet) Type() Type { return TypeGSet }

// Add inserts copies of elems and returns how many were not present before.
func (s *GSet) Add(elems ...[]byte) (added int) {
	for _, e := range elems {
		if _, ok := s.elems[string(e)]; ok {
			continue
		}
		if s.elems == nil {
			s.elems = make(map[string]struct{}, len(elems))
		}
		s.elems[string(e)] = struct{}{}
		s.bytes += len(e) + gsetEntryCost
		added++
	}
	return added
}

// Contains reports whether e is in the set.
func (s *GSet) Contains(e []byte) bool {
	_, ok := s.elems[string(e)]
	return ok
}

// Len returns the number of elements.
func (s *GSet) Len() int { return len(s.elems) }

// Elements returns copies of the elements in ascending byte order.
func (s *GSet) Elements() [][]byte { return copyStrings(sortedKeys(s.elems)) }

// Merge adds other's elements.
func (s *GSet) Merge(other Lattice) (bool, error) {
	o, ok := other.(*GSet)
	if !ok || o == nil {
		return false, mismatch(TypeGSet, other)
	}
	added := 0
	for e := range o.elems {
		if _, ok := s.elems[e]; !ok {
			if s.elems == nil {
				s.elems = make(map[string]struct{}, len(o.elems))
			}
			s.elems[e] = struct{}{} // strings are immutable: sharing e is safe
			s.bytes += len(e) + gsetEntryCost
			added++
		}
	}
	return added > 0, nil
}

// Clone returns a deep copy.
func (s *GSet) Clone() Lattice { return &GSet{elems: maps.Clone(s.elems), bytes: s.bytes} }

// Equal reports whether other is a GSet with the same elements.
func (s *GSet) Equal(other Lattice) bool {
	o, ok := other.(*GSet)
	if !ok || o == nil || len(s.elems) != len(o.elems) {
		return false
	}
	for e := range s.elems {
		if _, ok := o.elems[e]; !ok {
			return false
		}
	}
	return true
}

// Size returns the approximate bytes held, in constant time.
func (s *GSet) Size() int { return gsetCost + s.bytes }

// AppendBinary appends the encoding: an array of the elements as bin, in
// ascending byte order.
func (s *GSet) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeGSet)
	keys := sortedKeys(s.elems)
	e.array(len(keys))
	for _, k := range keys {
		e.str(k)
	}
	return e.result()
}

func decodeGSet(d *dec) *GSet {
	n := d.array()
	s := &GSet{}
	if n > 0 {
		s.elems = make(map[string]struct{}, n)
	}
	var prev []byte
	for i := range n {
		e := d.bin()
		d.ascending(i, bytes.Compare(prev, e), "gset elements")
		if d.err != nil {
			return nil
		}
		s.elems[string(e)] = struct{}{}
		s.bytes += len(e) + gsetEntryCost
		prev = e
	}
	return s
}

// OrderedSet is a grow-only set of byte strings kept in ascending byte
// order, for range reads; Merge is union. The zero value is the empty set.
type OrderedSet struct {
	elems [][]byte // strictly ascending; owned, never modified in place
	bytes int      // sum over elements of len(e) + orderedSetEntryCost, kept current
}

// NewOrderedSet returns a set holding copies of elems.
func NewOrderedSet(elems ...[]byte) *OrderedSet {
	s := &OrderedSet{}
	s.Add(elems...)
	return s
}

// Type returns TypeOrderedSet.
func (s *OrderedSet) Type() Type { return TypeOrderedSet }

// Add inserts copies of elems and returns how many were not present before.
// Each insertion costs O(log n) comparisons and an O(n) shift.
func (s *OrderedSet) Add(elems ...[]byte) (added int) {
	for _, e := range elems {
		i, found := slices.BinarySearchFunc(s.elems, e, bytes.Compare)
		if !found {
			s.elems = slices.Insert(s.elems, i, bytes.Clone(e))
			s.bytes += len(e) + orderedSetEntryCost
			added++
		}
	}
	return added
}

// Contains reports whether e is in the set.
func (s *OrderedSet) Contains(e []byte) bool {
	_, found := slices.BinarySearchFunc(s.elems, e, bytes.Compare)
	return found
}

// Len returns the number of elements.
func (s *OrderedSet) Len() int { return len(s.elems) }

// Elements returns copies of the elements in ascending byte order.
func (s *OrderedSet) Elements() [][]byte { return copyAll(s.elems) }

// Range returns copies of the elements e with from <= e < to, in ascending
// order, at most limit of them (all if limit <= 0). A nil from means no lower
// bound and a nil to no upper bound; a non-nil empty to selects nothing.
func (s *OrderedSet) Range(from, to []byte, limit int) [][]byte {
	lo, _ := slices.BinarySearchFunc(s.elems, from, bytes.Compare)
	hi := len(s.elems)
	if to != nil {
		hi, _ = slices.BinarySearchFunc(s.elems, to, bytes.Compare)
	}
	if hi < lo {
		hi = lo
	}
	if limit > 0 && hi-lo > limit {
		hi = lo + limit
	}
	return copyAll(s.elems[lo:hi])
}

// Merge adds other's elements (copies) in one linear pass.
func (s *OrderedSet) Merge(other Lattice) (bool, error) {
	o, ok := other.(*OrderedSet)
	if !ok || o == nil {
		return false, mismatch(TypeOrderedSet, other)
	}
	if o == s {
		return false, nil
	}
	var out [][]byte // allocated at the first element s lacks
	i, j := 0, 0
	for i < len(s.elems) || j < len(o.elems) {
		c := -1
		switch {
		case i == len(s.elems):
			c = 1
		case j < len(o.elems):
			c = bytes.Compare(s.elems[i], o.elems[j])
		}
		switch {
		case c < 0:
			if out != nil {
				out = append(out, s.elems[i])
			}
			i++
		case c == 0:
			if out != nil {
				out = append(out, s.elems[i])
			}
			i++
			j++
		default:
			if out == nil {
				out = make([][]byte, i, len(s.elems)+len(o.elems)-j)
				copy(out, s.elems[:i])
			}
			out = append(out, bytes.Clone(o.elems[j]))
			s.bytes += len(o.elems[j]) + orderedSetEntryCost
			j++
		}
	}
	if out == nil {
		return false, nil
	}
	s.elems = out
	return true, nil
}

// Clone returns a deep copy.
func (s *OrderedSet) Clone() Lattice { return &OrderedSet{elems: copyAll(s.elems), bytes: s.bytes} }

// Equal reports whether other is an OrderedSet with the same elements.
func (s *OrderedSet) Equal(other Lattice) bool {
	o, ok := other.(*OrderedSet)
	return ok && o != nil && slices.EqualFunc(s.elems, o.elems, bytes.Equal)
}

// Size returns the approximate bytes held, in constant time.
func (s *OrderedSet) Size() int { return orderedSetCost + s.bytes }

// AppendBinary appends the encoding: an array of the elements as bin, in
// ascending byte order (the same payload as GSet's).
func (s *OrderedSet) AppendBinary(b []byte) ([]byte, error) {
	e := newEnc(b, TypeOrderedSet)
	e.array(len(s.elems))
	for _, x := range s.elems {
		e.bin(x)
	}
	return e.result()
}

func decodeOrderedSet(d *dec) *OrderedSet {
	n := d.array()
	s := &OrderedSet{}
	if n > 0 {
		s.elems = make([][]byte, 0, n)
	}
	for i := range n {
		e := d.bin()
		if i > 0 {
			d.ascending(i, bytes.Compare(s.elems[i-1], e), "orderedset elements")
		}
		if d.err != nil {
			return nil
		}
		s.elems = append(s.elems, e)
		s.bytes += len(e) + orderedSetEntryCost
	}
	return s
}

// sortedKeys returns m's keys in ascending order.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// copyStrings returns the strings as byte slices sharing one allocation.
func copyStrings(ss []string) [][]byte {
	if len(ss) == 0 {
		return nil
	}
	n := 0
	for _, s := range ss {
		n += len(s)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(ss))
	for i, s := range ss {
		buf = append(buf, s...)
		out[i] = buf[len(buf)-len(s) : len(buf) : len(buf)]
	}
	return out
}

// copyAll returns copies of bs sharing one allocation.
func copyAll(bs [][]byte) [][]byte {
	if len(bs) == 0 {
		return nil
	}
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	buf := make([]byte, 0, n)
	out := make([][]byte, len(bs))
	for i, b := range bs {
		buf = append(buf, b...)
		out[i] = buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	return out
}
