package resp_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/trellisdb/trellis/resp"
)

func genArgs() *rapid.Generator[[][]byte] {
	return rapid.SliceOfN(rapid.SliceOfN(rapid.Byte(), 0, 40), 0, 12)
}

// AppendCommand then ParseCommand gives back the arguments, consuming
// exactly what was written, alone or pipelined.
func TestCommandRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cmds := rapid.SliceOfN(genArgs(), 1, 5).Draw(t, "cmds")
		var buf []byte
		for _, c := range cmds {
			buf = resp.AppendCommand(buf, c...)
		}
		var p resp.Parser
		off := 0
		for _, c := range cmds {
			args, n, err := p.ParseCommand(buf[off:], nil)
			require.NoError(t, err)
			require.Equal(t, len(resp.AppendCommand(nil, c...)), n)
			require.Equal(t, strs(c), strs(args))
			off += n
		}
		require.Equal(t, len(buf), off)
	})
}

// appendQuoted quotes s the way Redis's sdscatrepr does, which is what
// sdssplitargs reads back.
func appendQuoted(b, s []byte) []byte {
	str := resp.Reply{Kind: resp.KindBulk, Str: s}.String()
	return append(b, str...)
}

// Quoted inline arguments, any bytes at all, are read back unescaped.
func TestInlineRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		args := rapid.SliceOfN(rapid.SliceOfN(rapid.Byte(), 0, 20), 1, 8).Draw(t, "args")
		var line []byte
		for i, a := range args {
			if i > 0 {
				line = append(line, strings.Repeat(" ", rapid.IntRange(1, 3).Draw(t, "blanks"))...)
			}
			line = appendQuoted(line, a)
		}
		line = append(line, "\r\n"...)
		got, n, err := resp.ParseCommand(line, nil, resp.Limits{})
		require.NoError(t, err)
		require.Equal(t, len(line), n)
		require.Equal(t, strs(args), strs(got))
	})
}

func genReply(depth int) *rapid.Generator[resp.Reply] {
	return rapid.Custom(func(t *rapid.T) resp.Reply {
		kinds := 8
		if depth >= 3 {
			kinds = 6
		}
		switch rapid.IntRange(0, kinds-1).Draw(t, "kind") {
		case 0:
			return simple(rapid.String().Draw(t, "simple"))
		case 1:
			return rerr(rapid.String().Draw(t, "error"))
		case 2:
			return rint(rapid.Int64().Draw(t, "int"))
		case 3:
			return bulk(string(rapid.SliceOfN(rapid.Byte(), 0, 50).Draw(t, "bulk")))
		case 4:
			return nullBulk
		case 5:
			return nullArray
		default:
			return array(rapid.SliceOfN(genReply(depth+1), 0, 4).Draw(t, "elems")...)
		}
	})
}

func appendReply(b []byte, r resp.Reply) []byte {
	switch r.Kind {
	case resp.KindSimple:
		return resp.AppendSimple(b, string(r.Str))
	case resp.KindError:
		return resp.AppendError(b, string(r.Str))
	case resp.KindInt:
		return resp.AppendInt(b, r.Int)
	case resp.KindBulk:
		if r.Null {
			return resp.AppendNull(b)
		}
		return resp.AppendBulk(b, r.Str)
	default:
		if r.Null {
			return resp.AppendNullArray(b)
		}
		b = resp.AppendArrayHeader(b, len(r.Elems))
		for _, e := range r.Elems {
			b = appendReply(b, e)
		}
		return b
	}
}

// oneLine is what AppendSimple and AppendError make of a line.
func oneLine(r resp.Reply) resp.Reply {
	switch r.Kind {
	case resp.KindSimple, resp.KindError:
		r.Str = []byte(strings.NewReplacer("\r", " ", "\n", " ").Replace(string(r.Str)))
	case resp.KindArray:
		elems := make([]resp.Reply, len(r.Elems))
		for i, e := range r.Elems {
			elems[i] = oneLine(e)
		}
		r.Elems = elems
	}
	return r
}

// ParseReply reads back what the Append functions write, and every proper
// prefix of it is incomplete with a Need that does not overshoot.
func TestReplyRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		want := genReply(0).Draw(t, "reply")
		buf := appendReply(nil, want)
		got, n, err := resp.ParseReply(buf, resp.Limits{})
		require.NoError(t, err)
		require.Equal(t, len(buf), n)
		require.True(t, replyEqual(oneLine(want), got), "want %v\ngot %v", want, got)

		var p resp.Parser
		i := rapid.IntRange(0, len(buf)-1).Draw(t, "prefix")
		_, _, err = p.ParseReply(buf[:i])
		require.True(t, errors.Is(err, resp.ErrIncomplete))
		require.Greater(t, p.Need(), i)
		require.LessOrEqual(t, p.Need(), len(buf))
	})
}
