package lattice_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

func TestAppendParseLWW(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 65535, 65536} {
		val := bytes.Repeat([]byte{'v'}, n)
		ts := lattice.MakeTimestamp(1700000000000, 9)
		enc := lattice.AppendLWW([]byte("prefix"), ts, 77, val)[len("prefix"):]
		require.Equal(t, enc, lattice.Encode(lattice.NewLWW(ts, 77, val)))
		require.Equal(t, uint64(ts), binary.BigEndian.Uint64(enc[lattice.LWWTimestampOffset:]))
		require.Equal(t, uint64(77), binary.BigEndian.Uint64(enc[lattice.LWWWriterOffset:]))

		gts, w, gv, err := lattice.ParseLWW(enc)
		require.NoError(t, err)
		require.Equal(t, ts, gts)
		require.Equal(t, uint64(77), w)
		require.True(t, bytes.Equal(val, gv))
		if n > 0 {
			require.Same(t, &enc[len(enc)-n], &gv[0], "ParseLWW does not copy")
		}
	}
}

func TestParseLWWErrors(t *testing.T) {
	good := lattice.AppendLWW(nil, 1, 2, []byte("abc"))
	with := func(i int, c byte) []byte { x := bytes.Clone(good); x[i] = c; return x }
	for _, tc := range []struct {
		name string
		enc  []byte
		want error
	}{
		{"empty", nil, lattice.ErrMalformed},
		{"gset", lattice.Encode(lattice.NewGSet()), lattice.ErrTypeMismatch},
		{"unknown tag", with(0, 0x7f), lattice.ErrUnknownType},
		{"version", with(1, 2), lattice.ErrUnsupportedVersion},
		{"truncated", good[:len(good)-1], lattice.ErrMalformed},
		{"trailing", append(bytes.Clone(good), 0), lattice.ErrMalformed},
		{"array", with(2, 0x94), lattice.ErrMalformed},
		{"ts not fixed", with(3, 0xd3), lattice.ErrMalformed},
		{"str value", with(lattice.LWWValueOffset, 0xa3), lattice.ErrMalformed},
		{"long header", append(append(bytes.Clone(good[:lattice.LWWValueOffset]), 0xc5, 0, 3), "abc"...), lattice.ErrMalformed},
		{"short", good[:lattice.LWWValueOffset+1], lattice.ErrMalformed},
	} {
		_, _, _, err := lattice.ParseLWW(tc.enc)
		require.True(t, errors.Is(err, tc.want), "%s: %v", tc.name, err)
		if _, derr := lattice.Decode(tc.enc); tc.name != "gset" {
			require.Error(t, derr, tc.name)
		}
	}
}

func TestLWWFastPathDoesNotAllocate(t *testing.T) {
	val := []byte("some value of moderate length")
	buf := make([]byte, 0, 128)
	var enc []byte
	allocs := testing.AllocsPerRun(1000, func() {
		enc = lattice.AppendLWW(buf[:0], 12345, 6, val)
	})
	require.Zero(t, allocs, "AppendLWW")
	allocs = testing.AllocsPerRun(1000, func() {
		if _, _, _, err := lattice.ParseLWW(enc); err != nil {
			t.Fatal(err)
		}
	})
	require.Zero(t, allocs, "ParseLWW")
	l := lattice.NewLWW(1, 1, val)
	loser := lattice.NewLWW(0, 1, val)
	allocs = testing.AllocsPerRun(1000, func() { _, _ = l.Merge(loser) })
	require.Zero(t, allocs, "LWW.Merge of an older value")
}

func TestLWWSizes(t *testing.T) {
	for _, n := range []int{0, 255, 256, 65535, 65536} {
		enc := lattice.AppendLWW(nil, 1, 2, make([]byte, n))
		require.Equal(t, len(enc), lattice.LWWSize(n))
		padded := append(bytes.Clone(enc), 0xee, 0xee, 0xee)
		require.Equal(t, len(enc), lattice.LWWEncodedLen(padded))
		require.Zero(t, lattice.LWWEncodedLen(enc[:len(enc)-1]))
	}
	require.Zero(t, lattice.LWWEncodedLen(nil))
	require.Zero(t, lattice.LWWEncodedLen(lattice.Encode(lattice.NewGSet(b("a"), b("b"), b("c"), b("d"), b("e"), b("f")))))
}
