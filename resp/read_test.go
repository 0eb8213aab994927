package resp

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
)

func TestReadReply(t *testing.T) {
	enc := "*2\r\n$5\r\nhello\r\n:42\r\n"
	r, raw, err := ReadReply(iotest.OneByteReader(strings.NewReader(enc)), nil, Limits{})
	require.NoError(t, err)
	require.Equal(t, enc, string(raw))
	require.Equal(t, KindArray, r.Kind)
	require.Equal(t, "hello", string(r.Elems[0].Str))
	require.EqualValues(t, 42, r.Elems[1].Int)

	buf := make([]byte, 0, 64)
	_, raw, err = ReadReply(strings.NewReader("+OK\r\n"), buf, Limits{})
	require.NoError(t, err)
	require.Equal(t, &buf[:1][0], &raw[0], "a buffer with room is reused")

	_, _, err = ReadReply(strings.NewReader("+OK\r\n+OK\r\n"), nil, Limits{})
	require.ErrorIs(t, err, ErrExtraBytes)
	_, _, err = ReadReply(strings.NewReader("$5\r\nhel"), nil, Limits{})
	require.ErrorIs(t, err, io.EOF)
	_, _, err = ReadReply(strings.NewReader("$100\r\n"+strings.Repeat("x", 100)+"\r\n"), nil, Limits{MaxBulk: 10})
	require.ErrorIs(t, err, ErrProtocol)
	_, _, err = ReadReply(bytes.NewReader([]byte("?bad\r\n")), nil, Limits{})
	require.ErrorIs(t, err, ErrProtocol)
}
