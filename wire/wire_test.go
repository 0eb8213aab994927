package wire_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

var knownOps = []wire.Op{
	wire.OpHello, wire.OpPing, wire.OpGet, wire.OpPut, wire.OpDelete, wire.OpGetMany,
	wire.OpPutMany, wire.OpSet, wire.OpSetAdd, wire.OpSetRemove, wire.OpCounterAdd,
	wire.OpDeleteMany, wire.OpStats, wire.OpReplicate, wire.OpGossip, wire.OpDigest,
	wire.OpBucket, wire.OpFetch, wire.OpHandoff, wire.OpJoin, wire.OpRing, wire.OpCommand, wire.OpHeartbeat,
	wire.OpExTrigger, wire.OpExResult, wire.OpExMessage, wire.OpExReport, wire.OpWatch, wire.OpUnwatch, wire.OpChanged,
}

func genBytes() *rapid.Generator[[]byte] { return rapid.SliceOfN(rapid.Byte(), 0, 40) }

// genRequest draws a request whose fields are exactly those its op carries.
func genRequest(t *rapid.T) wire.Request {
	r := wire.Request{
		ID: rapid.Uint64().Draw(t, "id"),
		Op: rapid.SampledFrom(knownOps).Draw(t, "op"),
		Opts: wire.Options{
			Epoch: rapid.Uint64().Draw(t, "epoch"),
			Ack:   wire.Ack(rapid.IntRange(0, 3).Draw(t, "ack")),
		},
	}
	if rapid.Bool().Draw(t, "has token") {
		r.Opts.Token = []byte(rapid.StringN(1, 20, 20).Draw(t, "token"))
	}
	key := genBytes().Draw(t, "key")
	switch r.Op {
	case wire.OpGet, wire.OpDelete:
		r.Key = key
	case wire.OpPut, wire.OpSet, wire.OpReplicate, wire.OpExTrigger, wire.OpExResult, wire.OpExMessage, wire.OpExReport:
		r.Key, r.Value = key, genBytes().Draw(t, "value")
	case wire.OpDigest:
		r.Uints = []uint64{rapid.Uint64().Draw(t, "id"), rapid.Uint64().Draw(t, "bits")}
	case wire.OpBucket:
		r.Uints = []uint64{rapid.Uint64().Draw(t, "id"), rapid.Uint64().Draw(t, "bits")}
		r.Uints = append(r.Uints, rapid.SliceOfN(rapid.Uint64(), 1, 40).Draw(t, "buckets")...)
	case wire.OpGetMany, wire.OpDeleteMany, wire.OpFetch, wire.OpJoin, wire.OpWatch, wire.OpUnwatch:
		r.Keys = rapid.SliceOfN(genBytes(), 0, 20).Draw(t, "keys")
	case wire.OpPutMany, wire.OpGossip, wire.OpHandoff:
		r.Keys = rapid.SliceOfN(genBytes(), 0, 20).Draw(t, "keys")
		r.Values = rapid.SliceOfN(genBytes(), len(r.Keys), len(r.Keys)).Draw(t, "values")
	case wire.OpSetAdd, wire.OpSetRemove:
		r.Key, r.Members = key, rapid.SliceOfN(genBytes(), 0, 20).Draw(t, "members")
	case wire.OpCounterAdd:
		r.Key, r.Int = key, rapid.Int64().Draw(t, "delta")
	case wire.OpHello:
		r.Int, r.Value = rapid.Int64Min(0).Draw(t, "version"), []byte(rapid.StringN(0, 20, 20).Draw(t, "client"))
	case wire.OpPing, wire.OpRing, wire.OpChanged:
		if rapid.Bool().Draw(t, "echo") {
			r.Value = key
		}
	case wire.OpCommand:
		r.Value = key
	case wire.OpHeartbeat:
		r.Uints = []uint64{rapid.Uint64().Draw(t, "member")}
	}
	return r
}

func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }

func equalLists(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func TestRequestRoundTrip(t *testing.T) {
	var got wire.Request // reused across cases, as a server does
	rapid.Check(t, func(t *rapid.T) {
		r := genRequest(t)
		frame := r.AppendFrame(nil)
		body, n, err := wire.SplitFrame(frame, wire.Limits{})
		require.NoError(t, err)
		require.Equal(t, len(frame), n)
		require.NoError(t, got.Decode(body, wire.Limits{}))
		require.Equal(t, r.ID, got.ID)
		require.Equal(t, r.Op, got.Op)
		require.Equal(t, r.Opts.Epoch, got.Opts.Epoch)
		require.Equal(t, r.Opts.Ack, got.Opts.Ack)
		require.True(t, equalBytes(r.Opts.Token, got.Opts.Token))
		require.True(t, equalBytes(r.Key, got.Key))
		require.True(t, equalBytes(r.Value, got.Value), "value %q vs %q", r.Value, got.Value)
		require.True(t, equalLists(r.Keys, got.Keys))
		require.True(t, equalLists(r.Values, got.Values))
		require.True(t, equalLists(r.Members, got.Members))
		require.Equal(t, r.Int, got.Int)
		require.Equal(t, len(r.Uints), len(got.Uints))
		for i := range r.Uints {
			require.Equal(t, r.Uints[i], got.Uints[i])
		}
	})
}

func TestUnknownOpKeepsID(t *testing.T) {
	frame := (&wire.Request{ID: 9, Op: 200}).AppendFrame(nil)
	var got wire.Request
	err := got.Decode(frame[wire.HeaderLen:], wire.Limits{})
	require.ErrorIs(t, err, wire.ErrBadRequest)
	require.EqualValues(t, 9, got.ID, "the server needs the id to answer")
	require.False(t, got.Op.Known())
}

func TestResponses(t *testing.T) {
	var b []byte
	b = wire.AppendNilResult(b, 1)
	b = wire.AppendBytesResult(b, 2, []byte("hello"))
	b = wire.AppendIntResult(b, 3, -42)
	b = wire.AppendError(b, 4, fmt.Errorf("lookup: %w", wire.ErrNotFound))
	b = wire.AppendError(b, 5, &wire.Error{Code: wire.CodeWrongOwner, Msg: "moved", Epoch: 17})
	b = wire.AppendError(b, 6, errors.New("boom"))
	b = wire.AppendError(b, 8, fmt.Errorf("%w: the key holds lww", wire.ErrTypeMismatch))
	items, start := wire.BeginResult(b, 7)
	items = pack.AppendArrayHeader(items, 4)
	items = wire.AppendItemBytes(items, []byte("v"))
	items = wire.AppendItemNil(items)
	items = wire.AppendItemInt(items, 5)
	items = wire.AppendItemError(items, wire.Errorf(wire.CodeTypeMismatch, "key holds a set"))
	b = wire.EndFrame(items, start)

	var rs []wire.Response
	for len(b) > 0 {
		body, n, err := wire.SplitFrame(b, wire.Limits{})
		require.NoError(t, err)
		var r wire.Response
		require.NoError(t, r.Decode(body, wire.Limits{}))
		rs = append(rs, r)
		b = b[n:]
	}
	require.Len(t, rs, 8)
	require.Equal(t, "lattice type mismatch: the key holds lww", rs[6].Err().Error(), "the code's name once")
	rs = append(rs[:6], rs[7])
	v, err := rs[0].Bytes()
	require.NoError(t, err)
	require.Nil(t, v)
	v, err = rs[1].Bytes()
	require.NoError(t, err)
	require.Equal(t, "hello", string(v))
	n, err := rs[2].Int()
	require.NoError(t, err)
	require.EqualValues(t, -42, n)
	require.ErrorIs(t, rs[3].Err(), wire.ErrNotFound)
	require.Equal(t, "not found: lookup: not found", rs[3].Err().Error())
	_, err = rs[3].Bytes()
	require.ErrorIs(t, err, wire.ErrNotFound)
	require.ErrorIs(t, rs[4].Err(), wire.ErrWrongOwner)
	require.EqualValues(t, 17, rs[4].Epoch)
	require.ErrorIs(t, rs[5].Err(), wire.ErrInternal)
	require.Equal(t, "internal error: boom", rs[5].Err().Error())
	its, err := rs[6].Items(nil)
	require.NoError(t, err)
	require.Len(t, its, 4)
	require.Equal(t, "v", string(its[0].Value))
	require.NoError(t, its[1].Err())
	require.EqualValues(t, 5, its[2].Int)
	require.ErrorIs(t, its[3].Err(), wire.ErrTypeMismatch)
	require.Equal(t, "key holds a set", its[3].Msg)
}

func TestCodeOf(t *testing.T) {
	require.Equal(t, wire.CodeOK, wire.CodeOf(nil))
	require.Equal(t, wire.CodeTooLarge, wire.CodeOf(fmt.Errorf("x: %w", wire.ErrTooLarge)))
	require.Equal(t, wire.CodeTimeout, wire.CodeOf(wire.Errorf(wire.CodeTimeout, "slow")))
	require.Equal(t, wire.CodeInternal, wire.CodeOf(errors.New("other")))
	for c := wire.CodeNotFound; c <= wire.CodeInternal; c++ {
		require.ErrorIs(t, &wire.Error{Code: c}, c.Sentinel())
		require.Equal(t, c, wire.CodeOf(c.Sentinel()))
	}
}

func TestSplitFrameLimits(t *testing.T) {
	huge := binary.BigEndian.AppendUint32(nil, 0xFFFFFFFF)
	_, _, err := wire.SplitFrame(huge, wire.Limits{})
	require.ErrorIs(t, err, wire.ErrTooLarge)

	_, need, err := wire.SplitFrame([]byte{0, 0}, wire.Limits{})
	require.ErrorIs(t, err, wire.ErrIncomplete)
	require.Equal(t, wire.HeaderLen, need)

	partial := binary.BigEndian.AppendUint32(nil, 100)
	_, need, err = wire.SplitFrame(append(partial, 1, 2, 3), wire.Limits{})
	require.ErrorIs(t, err, wire.ErrIncomplete)
	require.Equal(t, 104, need)

	small := binary.BigEndian.AppendUint32(nil, 11)
	_, _, err = wire.SplitFrame(small, wire.Limits{MaxFrame: 10})
	require.ErrorIs(t, err, wire.ErrTooLarge)
}

func TestHostileBodies(t *testing.T) {
	be32 := func(code byte, n uint32) []byte { return binary.BigEndian.AppendUint32([]byte{code}, n) }
	deep := append(bytes.Repeat([]byte{0x91}, 100_000), 0xc0)
	cases := map[string][]byte{
		"bin32 2^31 key":   append([]byte{0x94, 0x01, 0x03, 0x80}, append(be32(0xc6, 1<<31), 'k')...),
		"array32 keys":     append([]byte{0x94, 0x01, 0x06, 0x80}, append(be32(0xdd, 1<<31), 0xc0)...),
		"map32 opts":       append([]byte{0x93, 0x01, 0x03}, append(be32(0xdf, 1<<31), 0xc0)...),
		"100k deep":        deep,
		"not an array":     {0xc0},
		"short":            {0x92, 0x01, 0x03},
		"wrong arg count":  {0x95, 0x01, 0x03, 0x80, 0xa1, 'k', 0xa1, 'v'},
		"key not bytes":    {0x94, 0x01, 0x03, 0x80, 0x05},
		"putmany mismatch": {0x95, 0x01, 0x07, 0x80, 0x91, 0xa1, 'k', 0x90},
		"bad ack":          {0x94, 0x01, 0x03, 0x81, 0x02, 0x09, 0xa1, 'k'},
		"negative id":      {0x94, 0xff, 0x03, 0x80, 0xa1, 'k'},
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			var r wire.Request
			err := r.Decode(body, wire.Limits{})
			require.ErrorIs(t, err, wire.ErrBadRequest)
			require.Equal(t, wire.CodeBadRequest, wire.CodeOf(err))
		})
	}
}

func TestRequestDecodeAllocations(t *testing.T) {
	get := (&wire.Request{ID: 1, Op: wire.OpGet, Key: []byte("key:000000012345")}).AppendFrame(nil)
	set := (&wire.Request{ID: 2, Op: wire.OpSet, Key: []byte("key:000000012345"), Value: bytes.Repeat([]byte("x"), 100)}).AppendFrame(nil)
	mget := (&wire.Request{ID: 3, Op: wire.OpGetMany, Keys: [][]byte{[]byte("a"), []byte("b")}}).AppendFrame(nil)
	var r wire.Request
	for _, f := range [][]byte{get, set, mget} {
		require.NoError(t, r.Decode(f[wire.HeaderLen:], wire.Limits{})) // warm the reused slices
		allocs := testing.AllocsPerRun(100, func() { _ = r.Decode(f[wire.HeaderLen:], wire.Limits{}) })
		require.Zero(t, allocs)
	}
}

func BenchmarkDecodeSet(b *testing.B) {
	f := (&wire.Request{ID: 2, Op: wire.OpSet, Key: []byte("key:000000012345"), Value: bytes.Repeat([]byte("x"), 100)}).AppendFrame(nil)
	var r wire.Request
	b.ReportAllocs()
	for b.Loop() {
		body, _, _ := wire.SplitFrame(f, wire.Limits{})
		if err := r.Decode(body, wire.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendBytesResult(b *testing.B) {
	v := bytes.Repeat([]byte("x"), 100)
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = wire.AppendBytesResult(buf[:0], 12345, v)
	}
}
