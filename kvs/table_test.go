package kvs

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/ring"
)

// tableModel drives a table and a Go map with the same operations and checks
// they agree. tagFn maps a key to its tag; tests pass degenerate functions to
// force long probe runs and collisions.
type tableModel struct {
	t     *table
	m     map[string]string
	tagFn func(key []byte) uint32
}

func (tm *tableModel) put(t *rapid.T, key, value string) {
	tag := tm.tagFn([]byte(key))
	if i := tm.t.find(tag, []byte(key)); i >= 0 {
		rec, v := newRecord([]byte(key), len(value))
		copy(v, value)
		tm.t.setRec(i, rec)
	} else {
		rec, v := newRecord([]byte(key), len(value))
		copy(v, value)
		tm.t.insert(tag, rec)
	}
	tm.m[key] = value
}

func (tm *tableModel) del(key string) {
	if i := tm.t.find(tm.tagFn([]byte(key)), []byte(key)); i >= 0 {
		tm.t.remove(i)
	}
	delete(tm.m, key)
}

func (tm *tableModel) check(t *rapid.T) {
	if tm.t.Len() != len(tm.m) {
		t.Fatalf("table has %d entries, model %d", tm.t.Len(), len(tm.m))
	}
	for k, v := range tm.m {
		i := tm.t.find(tm.tagFn([]byte(k)), []byte(k))
		if i < 0 {
			t.Fatalf("key %q lost", k)
		}
		if got := recValue(tm.t.rec(i)); !bytes.HasPrefix(got, []byte(v)) {
			t.Fatalf("key %q: value %q, want %q", k, got, v)
		}
	}
	seen := 0
	tm.t.each(func(key, _ []byte) bool {
		if _, ok := tm.m[string(key)]; !ok {
			t.Fatalf("table holds %q, model does not", key)
		}
		seen++
		return true
	})
	if seen != len(tm.m) {
		t.Fatalf("each saw %d entries, want %d", seen, len(tm.m))
	}
}

func checkTableAgainstModel(t *testing.T, name string, tagFn func([]byte) uint32) {
	t.Run(name, func(t *testing.T) {
		rapid.Check(t, func(t *rapid.T) {
			tm := &tableModel{t: &table{}, m: map[string]string{}, tagFn: tagFn}
			keys := rapid.SliceOfNDistinct(rapid.StringN(0, 12, 12), 1, 300, rapid.ID[string]).Draw(t, "keys")
			for range rapid.IntRange(1, 2000).Draw(t, "ops") {
				k := rapid.SampledFrom(keys).Draw(t, "key")
				if rapid.IntRange(0, 2).Draw(t, "op") == 0 {
					tm.del(k)
				} else {
					tm.put(t, k, rapid.StringN(0, 40, 40).Draw(t, "value"))
				}
			}
			tm.check(t)
			for _, k := range keys { // delete everything: exercises shrinking
				tm.del(k)
			}
			tm.check(t)
		})
	})
}

func TestTableAgainstMap(t *testing.T) {
	checkTableAgainstModel(t, "real hash", func(k []byte) uint32 { return tagOf(ring.KeyHash(k)) })
	// Few distinct tags: long probe runs, equal tags for different keys,
	// wrap-around at the end of the table.
	checkTableAgainstModel(t, "colliding tags", func(k []byte) uint32 {
		return tagOf(uint64(len(k)%3)) | 0xF0000000
	})
	checkTableAgainstModel(t, "one tag", func([]byte) uint32 { return 0xFFFFFFFF })
}

func TestTableGrowsAndShrinks(t *testing.T) {
	tb := &table{}
	tag := func(k []byte) uint32 { return tagOf(ring.KeyHash(k)) }
	const n = 10_000
	for i := range n {
		k := []byte(fmt.Sprintf("key:%d", i))
		rec, _ := newRecord(k, 8)
		tb.insert(tag(k), rec)
	}
	require.Equal(t, n, tb.Len())
	require.LessOrEqual(t, tb.n*4, len(tb.s.Load().tags)*3, "load at most 3/4")
	grown := len(tb.s.Load().tags)
	for i := range n - 10 {
		k := []byte(fmt.Sprintf("key:%d", i))
		tb.remove(tb.find(tag(k), k))
	}
	require.Equal(t, 10, tb.Len())
	require.Less(t, len(tb.s.Load().tags), grown/64, "shrunk with the keys")
	for i := n - 10; i < n; i++ {
		k := []byte(fmt.Sprintf("key:%d", i))
		require.GreaterOrEqual(t, tb.find(tag(k), k), 0)
	}
}

func TestRecordLayout(t *testing.T) {
	for _, klen := range []int{0, 1, 127, 128, 20000} {
		key := bytes.Repeat([]byte{'k'}, klen)
		rec, v := newRecord(key, 100)
		k2, v2 := recSplit(rec)
		require.Equal(t, key, k2)
		require.GreaterOrEqual(t, len(v), 100)
		require.Equal(t, len(v), len(v2))
		require.Equal(t, recSize(rec), cap(recBytes(rec)))
		require.Equal(t, recHeader+uvarintLen(uint64(klen))+klen+len(v), recSize(rec))
	}
}
