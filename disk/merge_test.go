package disk

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/lattice"
)

// testMerger is shared by the tests, so that they also exercise the
// recycling of mergers.
var testMerger = newMerger(quiet)

// mergeOperands runs the merge operator the way Pebble does: Merge with one
// operand, then every other one by MergeNewer or MergeOlder (one direction
// per merge), then Finish, copy, and close the result.
func mergeOperands(t tb, ops [][]byte, newer, includesBase bool) []byte {
	t.Helper()
	var buf []byte
	pass := func(op []byte) []byte {
		for i := range buf {
			buf[i] = 0xee
		}
		buf = append(buf[:0], op...)
		return buf
	}
	vm, err := testMerger.Merge([]byte("k"), pass(ops[0]))
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	for _, op := range ops[1:] {
		if newer {
			err = vm.MergeNewer(pass(op))
		} else {
			err = vm.MergeOlder(pass(op))
		}
		if err != nil {
			t.Fatalf("merge operand: %v", err)
		}
	}
	pass(nil)
	out, closer, err := vm.Finish(includesBase)
	if err != nil {
		t.Fatalf("finish: %v", err)
	}
	out = bytes.Clone(out)
	if closer != nil {
		if err := closer.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
	}
	return out
}

// The merge operator's result does not depend on how Pebble groups and
// orders the operands: merging random adjacent runs of a shuffled list,
// repeatedly, partial results included, gives the encoding of the join of
// all the cells.
func TestMergerAnyGrouping(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		g := newCellGen()
		n := rapid.IntRange(1, 8).Draw(t, "n")
		lwwOnly := rapid.Bool().Draw(t, "lww only")
		var want lattice.Cell
		ops := make([][]byte, n)
		for i := range ops {
			c := lattice.Cell{Value: genLWW(t)}
			if !lwwOnly {
				c = g.cell(t)
			}
			want.Merge(c)
			ops[i] = enc(t, c)
		}
		// Operands arrive in any order (the join commutes) ...
		perm := rapid.Permutation(ops).Draw(t, "order")
		// ... and in any grouping: replace a run of adjacent operands with
		// their partial merge until one value is left.
		for len(perm) > 1 {
			i := rapid.IntRange(0, len(perm)-1).Draw(t, "from")
			j := rapid.IntRange(i+1, len(perm)).Draw(t, "to")
			merged := mergeOperands(t, perm[i:j], rapid.Bool().Draw(t, "newer"), rapid.Bool().Draw(t, "base"))
			perm = append(perm[:i], append([][]byte{merged}, perm[j:]...)...)
		}
		got := mergeOperands(t, perm, true, true) // a lone operand is returned as is
		if w := enc(t, want); !bytes.Equal(got, w) {
			c, err := lattice.DecodeCell(got)
			t.Fatalf("merged %x (%+v, %v), want %x (%+v)", got, c, err, w, want)
		}
	})
}

func TestMergerLoneOperandReturnedAsIs(t *testing.T) {
	op := enc(t, lattice.Cell{Value: lattice.NewLWW(1, 2, []byte("v"))})
	got := mergeOperands(t, [][]byte{op}, true, true)
	require.Equal(t, op, got)
	got = mergeOperands(t, [][]byte{op, op, op}, false, false)
	require.Equal(t, op, got, "the join is idempotent")
}

// An operand that is not a cell encoding poisons the merge, wherever it
// is, and the poison survives later merges; the merger itself never fails
// (a failure would fail every flush and compaction of the key).
func TestMergerPoison(t *testing.T) {
	good := enc(t, lattice.Cell{Value: lattice.NewLWW(1, 2, []byte("v"))})
	newer := enc(t, lattice.Cell{Epoch: lattice.Stamp{TS: 9, Writer: 1}})
	badVersion := bytes.Clone(good)
	badVersion[1] = lattice.FormatVersion + 1
	for name, bad := range map[string][]byte{
		"garbage":             []byte("garbage"),
		"empty":               {},
		"nil":                 nil,
		"unsupported version": badVersion,
		"truncated":           good[:len(good)-1],
	} {
		t.Run(name, func(t *testing.T) {
			for _, ops := range [][][]byte{
				{bad},
				{bad, good},
				{good, bad},
				{good, bad, newer},
				{bad, bad},
			} {
				out := mergeOperands(t, ops, true, true)
				require.True(t, isPoison(out), "%x", out)
				_, err := lattice.DecodeCell(out)
				require.Error(t, err, "a poisoned value never decodes")
				// A later merge of the poisoned value keeps it poisoned,
				// with its message.
				again := mergeOperands(t, [][]byte{good, out, newer}, false, false)
				require.Equal(t, out, again)
				require.True(t, errors.Is(poisonErr([]byte("k"), out), ErrCorrupt))
			}
		})
	}
}

// BenchmarkMerger: merging 1 to 3 operands of 120-byte LWW registers (the
// fast path) and of counters with a delete epoch (decoded and re-encoded),
// as Pebble does at reads, flushes and compactions.
func BenchmarkMerger(b *testing.B) {
	lww := func(ts lattice.Timestamp) []byte {
		return enc(b, lattice.Cell{Value: lattice.NewLWW(ts, 1, bytes.Repeat([]byte("v"), 97))})
	}
	counter := func(actor uint64) []byte {
		c := lattice.NewCounter()
		if _, err := c.Add(actor, 5); err != nil {
			b.Fatal(err)
		}
		return enc(b, lattice.Cell{Epoch: lattice.Stamp{TS: 1, Writer: 1}, Value: c})
	}
	for name, ops := range map[string][][]byte{
		"lww":     {lww(3), lww(2), lww(1)},
		"counter": {counter(1), counter(2), counter(3)},
	} {
		for n := 1; n <= len(ops); n++ {
			b.Run(fmt.Sprintf("%s/operands=%d", name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					vm, _ := testMerger.Merge([]byte("k"), ops[0])
					for _, op := range ops[1:n] {
						_ = vm.MergeOlder(op)
					}
					_, closer, _ := vm.Finish(true)
					_ = closer.Close()
				}
			})
		}
	}
}

// Registers with equal timestamps and writers are ordered by value, in
// whatever order they arrive.
func TestMergerLWWTies(t *testing.T) {
	a := enc(t, lattice.Cell{Value: lattice.NewLWW(1, 1, []byte("a"))})
	b := enc(t, lattice.Cell{Value: lattice.NewLWW(1, 1, []byte("b"))})
	for _, newer := range []bool{false, true} {
		require.Equal(t, b, mergeOperands(t, [][]byte{a, b}, newer, true))
		require.Equal(t, b, mergeOperands(t, [][]byte{b, a}, newer, true))
		require.Equal(t, b, mergeOperands(t, [][]byte{a, b, a}, newer, false))
	}
}
