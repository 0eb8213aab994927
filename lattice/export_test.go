package lattice

// DecodeAlias decodes b without copying it first: the result's byte strings
// point into b. Tests use it to check that Merge copies what it keeps.
func DecodeAlias(b []byte) (Lattice, error) { return decode(b, 1) }

// ORSetFromDots builds an ORSet with the given causal context and entries,
// which may be any valid state (every entry dot in the context), including
// contexts with out-of-order dots that full-state merges never produce.
func ORSetFromDots(ctx [][2]uint64, entries map[string][][2]uint64) *ORSet {
	s := &ORSet{}
	for _, d := range ctx {
		x := dot{d[0], d[1]}
		if x.counter > 0 && !s.ctx.covers(x) {
			s.ctx.add(x)
		}
	}
	for e, ds := range entries {
		var kept []dot
		for _, d := range ds {
			x := dot{d[0], d[1]}
			if x.counter > 0 && s.ctx.covers(x) && !containsDot(kept, x) {
				kept = append(kept, x)
			}
		}
		if len(kept) == 0 {
			continue
		}
		sortDots(kept)
		if s.entries == nil {
			s.entries = make(map[string][]dot)
		}
		s.entries[e] = kept
		s.bytes += orsetEntrySize(e, len(kept))
	}
	return s
}

func containsDot(ds []dot, x dot) bool {
	for _, d := range ds {
		if d == x {
			return true
		}
	}
	return false
}

func sortDots(ds []dot) {
	for i := 1; i < len(ds); i++ {
		for j := i; j > 0 && compareDots(ds[j-1], ds[j]) > 0; j-- {
			ds[j-1], ds[j] = ds[j], ds[j-1]
		}
	}
}

// ORSetContext returns s's compacted context: its version vector and the
// number of out-of-order dots.
func ORSetContext(s *ORSet) (vv map[uint64]uint64, cloud int) {
	return s.ctx.vv.Counters(), len(s.ctx.cloud)
}

// SizeSlow recomputes l's Size from scratch, for checking that the kept
// totals stay current.
func SizeSlow(l Lattice) int {
	switch v := l.(type) {
	case *GSet:
		n := gsetCost
		for e := range v.elems {
			n += len(e) + gsetEntryCost
		}
		return n
	case *OrderedSet:
		n := orderedSetCost
		for _, e := range v.elems {
			n += len(e) + orderedSetEntryCost
		}
		return n
	case *ORSet:
		n := 64 + v.ctx.vv.Size() + 40*len(v.ctx.cloud)
		for e, ds := range v.entries {
			n += orsetEntrySize(e, len(ds))
		}
		return n
	case *Map:
		n := mapCost
		for k, x := range v.entries {
			n += len(k) + 32 + SizeSlow(x)
		}
		return n
	}
	return l.Size()
}
