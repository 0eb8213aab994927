package lattice_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/pack"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err)
	return b
}

// The wire format, byte for byte, as docs/lattices.md describes it.
func TestGoldenEncodings(t *testing.T) {
	orset := &lattice.ORSet{}
	orset.Add(1, b("a"))
	counter := &lattice.Counter{}
	_, _ = counter.Add(1, 5)
	_, _ = counter.Add(2, -3)
	m := &lattice.Map{}
	m.Update("k", &lattice.Max{Value: 5})

	for _, tc := range []struct {
		v    lattice.Lattice
		want string
	}{
		{lattice.NewLWW(0x0102, 3, b("hi")), "01 01 93 cf0000000000000102 cf0000000000000003 c4026869"},
		{lattice.NewGSet(b("b"), b("a")), "02 01 92 c40161 c40162"},
		{orset, "03 01 93 810101 90 81 c40161 91 920101"},
		{lattice.NewOrderedSet(b("b"), b("a")), "04 01 92 c40161 c40162"},
		{m, "05 01 81 c4016b c403 060105"},
		{&lattice.Max{Value: -1}, "06 01 ff"},
		{&lattice.Max{Value: 300}, "06 01 cd012c"},
		{lattice.NewMinPriority(2, b("x")), "07 01 92 02 c40178"},
		{&lattice.BoolOr{Value: true}, "08 01 c3"},
		{counter, "09 01 82 01 920500 02 920003"},
		{vc(1, 2), "0a 01 81 0102"},
		{single(vc(1, 1), "v"), "0b 01 91 92 810101 c40176"},
		{lattice.NewMultiCausal(vc(1, 1), map[string]lattice.VClock{"k": *vc(2, 1)}, b("v")), "0c 01 91 93 810101 81 c4016b 810201 c40176"},
	} {
		want := unhex(t, tc.want)
		require.Equal(t, want, lattice.Encode(tc.v), "%s", tc.v.Type())
		got, err := lattice.Decode(want)
		require.NoError(t, err)
		require.True(t, got.Equal(tc.v))
	}

	tomb := lattice.Cell{Epoch: lattice.Stamp{TS: 1, Writer: 2}}
	enc, err := tomb.AppendBinary(nil)
	require.NoError(t, err)
	require.Equal(t, unhex(t, "40 01 93 cf0000000000000001 cf0000000000000002 c0"), enc)
	live := lattice.Cell{Epoch: lattice.Stamp{TS: 1, Writer: 2}, Value: &lattice.BoolOr{Value: true}}
	enc, err = live.AppendBinary(nil)
	require.NoError(t, err)
	require.Equal(t, unhex(t, "40 01 93 cf0000000000000001 cf0000000000000002 c403 0801c3"), enc)
	enc, err = lattice.Cell{Value: &lattice.BoolOr{Value: true}}.AppendBinary(nil)
	require.NoError(t, err)
	require.Equal(t, unhex(t, "08 01 c3"), enc)
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		enc  string
		want error
	}{
		{"empty", "", lattice.ErrMalformed},
		{"tag only", "08", lattice.ErrMalformed},
		{"tag 0", "00 01 c3", lattice.ErrUnknownType},
		{"tag 13", "0d 01 c3", lattice.ErrUnknownType},
		{"cell tag", "40 01 93 cf0000000000000001 cf0000000000000002 c0", lattice.ErrUnknownType},
		{"version 0", "08 00 c3", lattice.ErrUnsupportedVersion},
		{"version 2", "08 02 c3", lattice.ErrUnsupportedVersion},
		{"trailing byte", "08 01 c3 00", lattice.ErrMalformed},
		{"no payload", "08 01", lattice.ErrMalformed},
		{"wrong msgpack type", "08 01 01", lattice.ErrMalformed},
		{"non-canonical int", "06 01 d0 01", lattice.ErrMalformed},
		{"non-canonical uint", "06 01 cc 05", lattice.ErrMalformed},
		{"non-canonical array header", "02 01 dc0001 c40161", lattice.ErrMalformed},
		{"str for bin", "02 01 91 a161", lattice.ErrMalformed},
		{"non-canonical bin header", "02 01 91 c50001 61", lattice.ErrMalformed},
		{"unsorted set", "02 01 92 c40162 c40161", lattice.ErrMalformed},
		{"duplicate set element", "02 01 92 c40161 c40161", lattice.ErrMalformed},
		{"unsorted ordered set", "04 01 92 c40162 c40161", lattice.ErrMalformed},
		{"duplicate map key", "05 01 82 c4016b c403 060105 c4016b c403 060106", lattice.ErrMalformed},
		{"map value not a lattice", "05 01 81 c4016b c402 0601", lattice.ErrMalformed},
		{"map value unknown type", "05 01 81 c4016b c403 3f0105", lattice.ErrUnknownType},
		{"vclock zero counter", "0a 01 81 0100", lattice.ErrMalformed},
		{"vclock unsorted", "0a 01 82 0201 0101", lattice.ErrMalformed},
		{"counter zero entry", "09 01 81 01 920000", lattice.ErrMalformed},
		{"counter array of 3", "09 01 81 01 93000100", lattice.ErrMalformed},
		{"orset dot outside context", "03 01 93 80 90 81 c40161 91 920101", lattice.ErrMalformed},
		{"orset dot counter 0", "03 01 93 810101 90 81 c40161 91 920100", lattice.ErrMalformed},
		{"orset element without dots", "03 01 93 810101 90 81 c40161 90", lattice.ErrMalformed},
		{"orset cloud not compacted", "03 01 93 810101 91 920102 80", lattice.ErrMalformed},
		{"orset cloud covered", "03 01 93 810102 91 920101 80", lattice.ErrMalformed},
		{"orset duplicate dots", "03 01 93 810102 90 81 c40161 92 920101 920101", lattice.ErrMalformed},
		{"causal dominated version", "0b 01 92 92 810101 c40161 92 810102 c40162", lattice.ErrMalformed},
		{"causal duplicate version", "0b 01 92 92 810101 c40161 92 810101 c40161", lattice.ErrMalformed},
		{"causal unsorted siblings", "0b 01 92 92 810101 c40162 92 810101 c40161", lattice.ErrMalformed},
		{"multicausal empty dep", "0c 01 91 93 810101 81 c4016b 80 c40176", lattice.ErrMalformed},
		{"lww ts not fixed", "01 01 93 01 cf0000000000000003 c4026869", lattice.ErrMalformed},
		{"huge array claim", "02 01 ddffffffff", lattice.ErrMalformed},
		{"huge bin claim", "01 01 93 cf0000000000000102 cf0000000000000003 c6ffffffff", lattice.ErrMalformed},
		{"deep msgpack", "02 01" + strings.Repeat("91", 40) + "90", lattice.ErrMalformed},
	} {
		_, err := lattice.Decode(unhex(t, tc.enc))
		require.True(t, errors.Is(err, tc.want), "%s: %v", tc.name, err)
		if tc.name != "cell tag" {
			_, err = lattice.DecodeCell(unhex(t, tc.enc))
			require.Error(t, err, tc.name)
		}
	}
	_, err := lattice.Decode(unhex(t, "02 01 ddffffffff"))
	require.True(t, errors.Is(err, pack.ErrMalformed), "the pack error is wrapped too: %v", err)
}

// nestMaps returns a Map nested n deep (n Maps) around a BoolOr.
func nestMaps(n int) lattice.Lattice {
	var v lattice.Lattice = &lattice.BoolOr{Value: true}
	for range n {
		m := &lattice.Map{}
		m.Update("k", v)
		v = m
	}
	return v
}

func TestNestingDepth(t *testing.T) {
	ok := nestMaps(lattice.MaxDepth - 1) // the BoolOr sits at depth MaxDepth
	enc, err := ok.AppendBinary(nil)
	require.NoError(t, err)
	got, err := lattice.Decode(enc)
	require.NoError(t, err)
	require.True(t, got.Equal(ok))

	deep := nestMaps(lattice.MaxDepth)
	out, err := deep.AppendBinary([]byte("keep"))
	require.True(t, errors.Is(err, lattice.ErrTooLarge), "%v", err)
	require.Equal(t, []byte("keep"), out, "a failed append leaves b as it was")
	require.Panics(t, func() { lattice.Encode(deep) })

	// Build the too-deep encoding by hand: wrap enc in one more map level.
	var w []byte
	w = append(w, byte(lattice.TypeMap), lattice.FormatVersion)
	w = pack.AppendMapHeader(w, 1)
	w = pack.AppendBytes(w, []byte("k"))
	w = pack.AppendBytes(w, enc)
	_, err = lattice.Decode(w)
	require.True(t, errors.Is(err, lattice.ErrMalformed), "%v", err)
}

func TestDecodeCopiesInput(t *testing.T) {
	for _, s := range samples() {
		enc := lattice.Encode(s)
		v, err := lattice.Decode(enc)
		require.NoError(t, err)
		for i := range enc {
			enc[i] = 0
		}
		require.True(t, v.Equal(s), "%s aliases Decode's input", s.Type())
	}
}

func TestAppendBinaryAppends(t *testing.T) {
	for _, s := range samples() {
		out, err := s.AppendBinary([]byte("prefix"))
		require.NoError(t, err)
		require.True(t, bytes.HasPrefix(out, []byte("prefix")))
		require.Equal(t, lattice.Encode(s), out[len("prefix"):])
		require.Equal(t, byte(lattice.FormatVersion), out[len("prefix")+1])
		require.Positive(t, s.Size())
	}
}
