package executor

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/wire"
)

func TestEncodingsRoundTrip(t *testing.T) {
	d := DAG{Name: "d", Functions: []string{"a", "native/b", "c"}, Edges: [][2]string{{"a", "c"}, {"native/b", "c"}}}
	require.NoError(t, d.Validate(nil))
	got, err := DecodeDAG(d.AppendBinary(nil))
	require.NoError(t, err)
	assert.Equal(t, d, got)
	assert.Equal(t, "c", got.Sink())
	assert.Equal(t, []string{"a", "native/b"}, got.Sources())

	c := Call{Args: map[string][]Arg{"": {Value([]byte("3"))}, "c": {Ref("k"), Value(nil)}}, ResultKey: "r", Consistency: "lww", Ack: wire.AckDurable}
	enc := c.AppendBinary(nil)
	gc, err := DecodeCall(enc)
	require.NoError(t, err)
	assert.Equal(t, c.ResultKey, gc.ResultKey)
	assert.Equal(t, c.Consistency, gc.Consistency)
	assert.Equal(t, wire.AckDurable, gc.Ack)
	// The encoding of earlier versions, without the ack, still decodes.
	old := append([]byte{0x94}, enc[1:len(enc)-1]...)
	gold, err := DecodeCall(old)
	require.NoError(t, err)
	assert.Equal(t, wire.AckDefault, gold.Ack)
	assert.Equal(t, c.ResultKey, gold.ResultKey)
	_, err = DecodeCall(append(enc[:len(enc)-1:len(enc)-1], 9))
	assert.ErrorIs(t, err, wire.ErrBadRequest, "an unknown ack level")
	assert.Equal(t, Value([]byte("3")), gc.Args[""][0])
	assert.Equal(t, Ref("k"), gc.Args["c"][0])
	assert.Empty(t, gc.Args["c"][1].Value)

	f := NewFunction("f", []byte("\x00asm"))
	gf, err := DecodeFunction(f.AppendBinary(nil))
	require.NoError(t, err)
	assert.Equal(t, f, gf)
}

func TestDecodersRefuseGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {0x90}, {0x94, 0x02}, {0x94, 0x01, 0xa1, 'x'}, {0xdd, 0xff, 0xff, 0xff, 0xff}} {
		_, err := DecodeDAG(b)
		assert.ErrorIs(t, err, wire.ErrBadRequest)
		_, err = DecodeCall(b)
		assert.ErrorIs(t, err, wire.ErrBadRequest)
		_, err = DecodeFunction(b)
		assert.ErrorIs(t, err, wire.ErrBadRequest)
	}
	_, err := DecodeArg([]byte{7})
	assert.ErrorIs(t, err, wire.ErrBadRequest)
}

// The decoders read bytes from clients: never panic, never allocate beyond
// the input's size, and what they accept re-encodes to an equal value.
func FuzzDecodeDAG(f *testing.F) {
	d := Chain("c", "a", "native/b")
	f.Add(d.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeDAG(b)
		if err != nil {
			return
		}
		again, err := DecodeDAG(got.AppendBinary(nil))
		require.NoError(t, err)
		require.Equal(t, got, again)
		_ = got.Validate(nil) // must not panic
	})
}

func FuzzDecodeCall(f *testing.F) {
	c := Call{Args: map[string][]Arg{"": {Value([]byte("3"))}, "c": {Ref("k")}}, ResultKey: "r"}
	f.Add(c.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeCall(b)
		if err != nil {
			return
		}
		again, err := DecodeCall(got.AppendBinary(nil))
		require.NoError(t, err)
		require.Equal(t, len(got.Args), len(again.Args))
	})
}

func FuzzDecodeFunction(f *testing.F) {
	fn := NewFunction("f", []byte("code"))
	f.Add(fn.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeFunction(b)
		if err != nil {
			return
		}
		again, err := DecodeFunction(got.AppendBinary(nil))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}
