package consistency

import (
	"fmt"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

// Causal consistency (Cloudburst's distributed session causal consistency,
// over the versions one call reads): keys written under it hold
// lattice.MultiCausal values, each version carrying its vector clock and the
// clocks of the versions its writer had read (its dependencies). A causal
// call keeps a snapshot, as a repeatable-read one does (each key read once,
// the same version for every function), and keeps it a causal cut:
//
//   - a key read after a version that depends on it must be at least the
//     version depended on: a cached copy that is older is read again from
//     the KVS, and if the KVS does not have it yet either, the call
//     conflicts (the coordinator runs it again);
//   - a version read after the call read one of its dependencies at an
//     older version conflicts too (the call cannot go back).
//
// A write under it is a MultiCausal version whose clock follows the one the
// call read (or the cached one) and whose dependencies are every version
// the call has read. Keys that hold other lattices read as versions without
// clock or dependencies.

// causalMeta returns a version's clock and dependencies (empty for a
// value that is not a MultiCausal, or no value).
func causalMeta(enc []byte) (*lattice.VClock, map[string]lattice.VClock, error) {
	if len(enc) == 0 || lattice.Type(enc[0]) != lattice.TypeMultiCausal {
		return &lattice.VClock{}, nil, nil
	}
	l, err := lattice.Decode(enc)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: causal value: %w", wire.ErrInternal, err)
	}
	m := l.(*lattice.MultiCausal)
	return m.Clock(), m.Deps(), nil
}

// required returns the clock the snapshot's versions require of key: the
// join of their dependencies on it. Locked by the caller.
func (s *Snapshot) requiredLocked(key string) (*lattice.VClock, error) {
	need := &lattice.VClock{}
	for k, enc := range s.m {
		if k == key {
			continue
		}
		_, deps, err := causalMeta(enc)
		if err != nil {
			return nil, err
		}
		if c, ok := deps[key]; ok {
			_, _ = need.Merge(&c)
		}
	}
	return need, nil
}

// ReadCausal returns key's version for a causal call: the snapshot's, or
// the one cached returns if it is at least what the versions read so far
// require of key, else the one fresh returns (the KVS); the snapshot then
// holds it. ErrConflict when neither is recent enough, or when the version
// depends on a newer version of a key the call has already read. A key
// absent everywhere is remembered as absent, as Read does.
func (s *Snapshot) ReadCausal(key string, cached, fresh func() ([]byte, error)) ([]byte, error) {
	if v, ok := s.held(key); ok {
		return found(key, v)
	}
	s.mu.Lock()
	need, err := s.requiredLocked(key)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	recent := func(enc []byte) (bool, error) {
		clk, _, err := causalMeta(enc)
		if err != nil {
			return false, err
		}
		return clk.Dominates(need), nil
	}
	get := func(f func() ([]byte, error)) ([]byte, bool, error) {
		enc, err := f()
		if wire.CodeOf(err) == wire.CodeNotFound {
			return nil, need.Len() == 0, nil
		}
		if err != nil {
			return nil, false, err
		}
		ok, err := recent(enc)
		return enc, ok, err
	}
	v, ok, err := get(cached)
	if err == nil && !ok {
		v, ok, err = get(fresh)
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: key %q: the version a value read earlier depends on is not visible yet", ErrConflict, key)
	}
	// The version's own dependencies against what the call read.
	_, deps, err := causalMeta(v)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, c := range deps {
		have, read := s.m[d]
		if !read {
			continue
		}
		hc, _, err := causalMeta(have)
		if err != nil {
			return nil, err
		}
		if !hc.Dominates(&c) {
			return nil, fmt.Errorf("%w: key %q depends on a newer version of %q than this call read", ErrConflict, key, d)
		}
	}
	return s.pinLocked(key, v)
}

// CausalWrite returns the encoding of a causal write of value to key by
// actor: a MultiCausal version whose clock follows base (the key's version
// as the call or the cache has it; nil for none) and whose dependencies are
// the clocks of every other version the call has read.
func (s *Snapshot) CausalWrite(key string, base []byte, actor uint64, value []byte) ([]byte, error) {
	clk, _, err := causalMeta(base)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	deps := make(map[string]lattice.VClock)
	for k, enc := range s.m {
		if k == key {
			if c, _, err := causalMeta(enc); err == nil {
				_, _ = clk.Merge(c)
			}
			continue
		}
		c, _, err := causalMeta(enc)
		if err != nil {
			s.mu.Unlock()
			return nil, err
		}
		if c.Len() > 0 {
			deps[k] = *c
		}
	}
	s.mu.Unlock()
	clk.Increment(actor)
	return lattice.Encode(lattice.NewMultiCausal(clk, deps, value)), nil
}

// Payload returns what a function reads of a MultiCausal value: the payload
// of its last version in canonical order (concurrent writes leave siblings;
// every reader picks the same one).
func Payload(m *lattice.MultiCausal) []byte {
	vs := m.Values()
	if len(vs) == 0 {
		return nil
	}
	return vs[len(vs)-1]
}
