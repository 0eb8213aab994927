package lattice

import (
	"bytes"
	"fmt"
)

// Map maps keys to lattices; Merge merges values key by key with
// MergeValues, so a key whose replicas hold different types resolves by the
// ordinal sum (the larger Type wins). Keys are never removed. The zero
// value is the empty map.
type Map struct {
	entries map[string]Lattice // never nil values
	bytes   int                // sum over entries of mapEntrySize, kept current
}

// mapCost is a Map's fixed size for Size; mapEntrySize is an entry's.
const mapCost = 48

func mapEntrySize(k string, v Lattice) int { return len(k) + 32 + v.Size() }

// Type returns TypeMap.
func (m *Map) Type() Type { return TypeMap }

// Get returns the value at key, or nil. The value is owned by the map: do
// not modify it (Clone it, or use Update).
func (m *Map) Get(key string) Lattice { return m.entries[key] }

// Update merges v into the value at key with MergeValues and reports whether
// the map changed. v is not modified or retained; a nil v changes nothing.
func (m *Map) Update(key string, v Lattice) (changed bool) {
	if v == nil {
		return false
	}
	if m.entries == nil {
		m.entries = make(map[string]Lattice)
	}
	old := m.entries[key]
	if old != nil {
		m.bytes -= mapEntrySize(key, old)
	}
	merged, changed := mergeValues(old, v)
	m.entries[key] = merged
	m.bytes += mapEntrySize(key, merged)
	return changed
}

// Keys returns the keys in ascending byte order.
func (m *Map) Keys() []string { return sortedKeys(m.entries) }

// Len returns the number of keys.
func (m *Map) Len() int { return len(m.entries) }

// Merge merges other's values into m key by key.
func (m *Map) Merge(other Lattice) (bool, error) {
	o, ok := other.(*Map)
	if !ok || o == nil {
		return false, mismatch(TypeMap, other)
	}
	if o == m {
		return false, nil
	}
	changed := false
	for k, v := range o.entries {
		if m.Update(k, v) {
			changed = true
		}
	}
	return changed, nil
}

// Clone returns a deep copy.
func (m *Map) Clone() Lattice {
	c := &Map{bytes: m.bytes}
	if len(m.entries) > 0 {
		c.entries = make(map[string]Lattice, len(m.entries))
		for k, v := range m.entries {
			c.entries[k] = v.Clone()
		}
	}
	return c
}

// Equal reports whether other is a Map with the same keys and Equal values.
func (m *Map) Equal(other Lattice) bool {
	o, ok := other.(*Map)
	if !ok || o == nil || len(m.entries) != len(o.entries) {
		return false
	}
	for k, v := range m.entries {
		if ov, ok := o.entries[k]; !ok || !v.Equal(ov) {
			return false
		}
	}
	return true
}

// Size returns the approximate bytes held, in constant time (given that
// every value's Size is).
func (m *Map) Size() int { return mapCost + m.bytes }

// AppendBinary appends the encoding: a map from key (bin) to the value's
// complete encoding (bin), ascending keys. Values nest at most MaxDepth deep.
func (m *Map) AppendBinary(b []byte) ([]byte, error) { return m.appendBinary(b, 1) }

func (m *Map) appendBinary(b []byte, depth int) ([]byte, error) {
	e := newEnc(b, TypeMap)
	keys := m.Keys()
	e.mapHeader(len(keys))
	for _, k := range keys {
		e.str(k)
		e.nested(m.entries[k], depth+1)
	}
	return e.result()
}

func decodeMap(d *dec, depth int) *Map {
	n := d.mapLen()
	m := &Map{}
	if n > 0 {
		m.entries = make(map[string]Lattice, n)
	}
	var prev []byte
	for i := range n {
		k := d.bin()
		d.ascending(i, bytes.Compare(prev, k), "map keys")
		raw := d.bin()
		if d.err != nil {
			return nil
		}
		v, err := decode(raw, depth+1)
		if err != nil {
			d.err = fmt.Errorf("key %.64q: %w", k, err)
			return nil
		}
		m.entries[string(k)] = v
		m.bytes += mapEntrySize(string(k), v)
		prev = k
	}
	return m
}
