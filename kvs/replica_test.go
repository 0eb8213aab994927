package kvs

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/lattice"
)

// cellsOf returns every key's cell encoding in s.
func cellsOf(s *Store) map[string]string {
	out := map[string]string{}
	s.Each(func(key, cell []byte) bool {
		out[string(key)] = string(cell)
		return true
	})
	return out
}

// exchange merges every cell of from into to.
func exchange(t interface{ Fatalf(string, ...any) }, from, to *Store) {
	var keys, cells [][]byte
	from.Each(func(key, cell []byte) bool {
		keys = append(keys, bytes.Clone(key))
		cells = append(cells, bytes.Clone(cell))
		return true
	})
	for i := range keys {
		if _, err := to.MergeCell(keys[i], cells[i]); err != nil {
			t.Fatalf("merge %q: %v", keys[i], err)
		}
	}
}

// Two replicas that took different writes, of any types, and then exchange
// their cells (in either order) hold identical cells afterwards; merging
// again changes nothing.
func TestReplicasConverge(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		clk := &fakeClock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
		mk := func(id uint64) *Store {
			s, err := NewStore(StoreConfig{NodeID: id, Shards: 2, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		a, b := mk(1), mk(2)
		keys := []string{"k0", "k1", "k2", "k3"}
		for i := range rapid.IntRange(0, 40).Draw(t, "ops") {
			s := a
			if rapid.Bool().Draw(t, "onB") {
				s = b
			}
			k := []byte(rapid.SampledFrom(keys).Draw(t, "key"))
			if rapid.Bool().Draw(t, "tick") {
				clk.Advance(time.Millisecond)
			}
			switch rapid.IntRange(0, 6).Draw(t, "op") {
			case 0:
				_ = s.Overwrite(k, []byte(fmt.Sprintf("v%d", i)))
			case 1:
				_ = s.SetLWW(k, []byte(fmt.Sprintf("w%d", i)))
			case 2:
				_, _ = s.CounterAdd(k, int64(rapid.IntRange(-5, 5).Draw(t, "delta")))
			case 3:
				_, _ = s.SetAdd(k, [][]byte{[]byte(rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "m"))})
			case 4:
				_, _ = s.SetRemove(k, [][]byte{[]byte(rapid.SampledFrom([]string{"x", "y", "z"}).Draw(t, "m"))})
			case 5:
				_, _ = s.Delete(k)
			case 6:
				_, _ = s.IncrBy(k, 1)
			}
		}
		if rapid.Bool().Draw(t, "aFirst") {
			exchange(t, a, b)
			exchange(t, b, a)
		} else {
			exchange(t, b, a)
			exchange(t, a, b)
		}
		ca, cb := cellsOf(a), cellsOf(b)
		if len(ca) != len(cb) {
			t.Fatalf("replicas hold %d and %d keys", len(ca), len(cb))
		}
		for k, v := range ca {
			if cb[k] != v {
				ca1, _ := lattice.DecodeCell([]byte(v))
				cb1, _ := lattice.DecodeCell([]byte(cb[k]))
				t.Fatalf("key %q differs:\n a: %+v\n b: %+v", k, ca1, cb1)
			}
		}
		// Idempotent: another exchange changes nothing.
		var changed bool
		for k, v := range cb {
			c, err := a.MergeCell([]byte(k), []byte(v))
			if err != nil {
				t.Fatal(err)
			}
			changed = changed || c
		}
		if changed {
			t.Fatalf("merging equal cells reported a change")
		}
		if a.Len() != b.Len() {
			t.Fatalf("Len %d vs %d", a.Len(), b.Len())
		}
	})
}

// A replica merge takes what a client write would refuse: mixed types
// resolve by the ordinal sum, the same on every replica.
func TestMergeCellMixedTypes(t *testing.T) {
	s, _ := newTestStore(t)
	require.NoError(t, s.SetLWW([]byte("k"), []byte("str")))
	set := lattice.NewORSet()
	set.Add(9, []byte("m"))
	enc := lattice.Encode(set)
	changed, err := s.MergeCell([]byte("k"), enc)
	require.NoError(t, err)
	require.True(t, changed, "the set (type 3) wins over the register (type 1)")
	typ, ok := s.Type([]byte("k"))
	require.True(t, ok)
	require.Equal(t, lattice.TypeORSet, typ)

	_, err = s.MergeCell([]byte("k"), []byte{0x01, 0x01, 0x93})
	require.ErrorIs(t, err, errBadValue)
}

// The clock observes merged timestamps: a write after a merge of a cell from
// the future still wins.
func TestMergeCellObservesClock(t *testing.T) {
	s, clk := newTestStore(t)
	future := lattice.MakeTimestamp(clk.Now().Add(time.Hour).UnixMilli(), 5)
	enc := lattice.AppendLWW(nil, future, 99, []byte("from the future"))
	_, err := s.MergeCell([]byte("k"), enc)
	require.NoError(t, err)
	require.NoError(t, s.SetLWW([]byte("k"), []byte("mine")))
	require.Equal(t, "mine", getString(t, s, "k"))
}
