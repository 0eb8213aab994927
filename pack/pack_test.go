package pack_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/pack"
)

// The Append functions must produce what the reference library decodes to
// the same value, and Reader must decode what the reference library encodes.
func TestAgreesWithReferenceLibrary(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		u := rapid.Uint64().Draw(t, "u")
		i := rapid.Int64().Draw(t, "i")
		bs := rapid.SliceOfN(rapid.Byte(), 0, 300).Draw(t, "bs")
		s := rapid.StringN(0, 70000, 70000).Draw(t, "s")
		n := rapid.IntRange(0, 70000).Draw(t, "n")

		var b []byte
		b = pack.AppendArrayHeader(b, 6)
		b = pack.AppendUint(b, u)
		b = pack.AppendInt(b, i)
		b = pack.AppendBytes(b, bs)
		b = pack.AppendString(b, s)
		b = pack.AppendUint64Fixed(b, u)
		b = pack.AppendMapHeader(b, 0)
		require.NoError(t, pack.Validate(b, 0))

		var got []any
		require.NoError(t, msgpack.Unmarshal(b, &got))
		require.Len(t, got, 6)
		require.EqualValues(t, u, toUint(got[0]))
		require.EqualValues(t, i, toInt(got[1]))
		require.Equal(t, bs, got[2])
		require.Equal(t, s, got[3])
		require.EqualValues(t, u, toUint(got[4]))

		// Reference encoding, read back with Reader.
		ref, err := msgpack.Marshal([]any{u, i, bs, s, make([]int, n)})
		require.NoError(t, err)
		require.NoError(t, pack.Validate(ref, 0))
		r := pack.NewReader(ref)
		l, err := r.ArrayLen()
		require.NoError(t, err)
		require.Equal(t, 5, l)
		gu, err := r.Uint()
		require.NoError(t, err)
		require.Equal(t, u, gu)
		gi, err := r.Int()
		require.NoError(t, err)
		require.Equal(t, i, gi)
		gb, err := r.Bytes()
		require.NoError(t, err)
		require.True(t, bytes.Equal(bs, gb))
		gs, err := r.String()
		require.NoError(t, err)
		require.Equal(t, s, gs)
		an, err := r.ArrayLen()
		require.NoError(t, err)
		require.Equal(t, n, an)
		for range an {
			require.NoError(t, r.Skip())
		}
		require.Zero(t, r.Len())
	})
}

func toUint(v any) uint64 {
	switch x := v.(type) {
	case uint64:
		return x
	case uint8:
		return uint64(x)
	case uint16:
		return uint64(x)
	case uint32:
		return uint64(x)
	case int8:
		return uint64(x)
	case int64:
		return uint64(x)
	}
	panic(v)
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case uint64:
		return int64(x)
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	}
	panic(v)
}

func be32(code byte, n uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{code}, n)
}

// Hostile headers are rejected by both Validate and Reader without
// allocating what they claim.
func TestHostileHeaders(t *testing.T) {
	deep := bytes.Repeat([]byte{0x91}, 100_000)
	deep = append(deep, 0xc0)
	cases := map[string][]byte{
		"bin32 2^31":     append(be32(0xc6, 1<<31), 1, 2, 3, 4, 5, 6),
		"str32 4GiB-1":   append(be32(0xdb, math.MaxUint32), 'x'),
		"array32 2^31":   append(be32(0xdd, 1<<31), 0xc0),
		"map32 2^31":     append(be32(0xdf, 1<<31), 0xc0, 0xc0),
		"ext32 2^31":     append(be32(0xc9, 1<<31), 1),
		"truncated u64":  {0xcf, 1, 2},
		"reserved c1":    {0xc1},
		"empty":          {},
		"trailing bytes": {0xc0, 0xc0},
		"array short":    {0x93, 1, 2},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			err := pack.Validate(b, 0)
			require.ErrorIs(t, err, pack.ErrMalformed)
			require.Less(t, bytesAllocated(func() { _ = pack.Validate(b, 0) }), uint64(4096))
		})
	}
	t.Run("100k deep", func(t *testing.T) {
		require.ErrorIs(t, pack.Validate(deep, 0), pack.ErrTooDeep)
	})
	t.Run("reader bounds array", func(t *testing.T) {
		r := pack.NewReader(append(be32(0xdd, 1<<31), 0xc0))
		_, err := r.ArrayLen()
		require.ErrorIs(t, err, pack.ErrMalformed)
	})
	t.Run("reader bounds bin", func(t *testing.T) {
		r := pack.NewReader(append(be32(0xc6, 1<<31), 0xc0))
		_, err := r.Bytes()
		require.ErrorIs(t, err, pack.ErrMalformed)
		// the error sticks
		_, err = r.Uint()
		require.ErrorIs(t, err, pack.ErrMalformed)
	})
}

// bytesAllocated returns the heap bytes fn allocates.
func bytesAllocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestDepthLimit(t *testing.T) {
	nest := func(n int) []byte {
		b := bytes.Repeat([]byte{0x91}, n)
		return append(b, 0x01)
	}
	require.NoError(t, pack.Validate(nest(3), 4))
	require.ErrorIs(t, pack.Validate(nest(4), 4), pack.ErrTooDeep)
	require.NoError(t, pack.Validate(nest(pack.DefaultMaxDepth-1), 0))
	require.ErrorIs(t, pack.Validate(nest(pack.DefaultMaxDepth), 0), pack.ErrTooDeep)
}

func TestReaderTypeErrors(t *testing.T) {
	b := pack.AppendString(nil, "hello")
	r := pack.NewReader(b)
	_, err := r.Uint()
	require.ErrorIs(t, err, pack.ErrType)

	r.Reset(pack.AppendInt(nil, -5))
	_, err = r.Uint()
	require.ErrorIs(t, err, pack.ErrType)

	r.Reset(pack.AppendUint(nil, math.MaxUint64))
	_, err = r.Int()
	require.ErrorIs(t, err, pack.ErrType)
	require.False(t, errors.Is(err, pack.ErrMalformed))
}

func TestRawAndSkip(t *testing.T) {
	var b []byte
	b = pack.AppendArrayHeader(b, 2)
	b = pack.AppendMapHeader(b, 1)
	b = pack.AppendString(b, "k")
	b = pack.AppendArrayHeader(b, 2)
	b = pack.AppendFloat(b, 1.5)
	b = pack.AppendBool(b, true)
	b = pack.AppendNil(b)
	r := pack.NewReader(b)
	_, err := r.ArrayLen()
	require.NoError(t, err)
	raw, err := r.Raw()
	require.NoError(t, err)
	require.NoError(t, pack.Validate(raw, 0))
	require.True(t, r.Nil())
	require.Zero(t, r.Len())
}

// FuzzValidate checks that Validate never panics, and that whatever it
// accepts can be skipped by Reader and decoded by the reference library.
func FuzzValidate(f *testing.F) {
	f.Add([]byte{0x93, 0x01, 0xa1, 'x', 0xc4, 0x01, 0xff})
	f.Add(append(be32(0xdd, 1<<31), 0xc0))
	f.Add([]byte{0x81, 0xa1, 'k', 0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xc3})
	f.Fuzz(func(t *testing.T, b []byte) {
		err := pack.Validate(b, 8)
		if err != nil {
			return
		}
		r := pack.NewReader(b)
		if err := r.Skip(); err != nil || r.Len() != 0 {
			t.Fatalf("validated input not skippable: %v, %d left", err, r.Len())
		}
		br := bytes.NewReader(b)
		if err := msgpack.NewDecoder(br).Skip(); err != nil || br.Len() != 0 {
			t.Fatalf("validated input not skippable by reference: %v, %d left", err, br.Len())
		}
	})
}
