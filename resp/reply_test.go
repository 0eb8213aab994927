package resp_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/resp"
)

func simple(s string) resp.Reply { return resp.Reply{Kind: resp.KindSimple, Str: []byte(s)} }
func rerr(s string) resp.Reply   { return resp.Reply{Kind: resp.KindError, Str: []byte(s)} }
func rint(n int64) resp.Reply    { return resp.Reply{Kind: resp.KindInt, Int: n} }
func bulk(s string) resp.Reply   { return resp.Reply{Kind: resp.KindBulk, Str: []byte(s)} }
func array(e ...resp.Reply) resp.Reply {
	if len(e) == 0 {
		e = nil
	}
	return resp.Reply{Kind: resp.KindArray, Elems: e}
}

var (
	nullBulk  = resp.Reply{Kind: resp.KindBulk, Null: true}
	nullArray = resp.Reply{Kind: resp.KindArray, Null: true}
)

// replyEqual compares replies, treating nil and empty byte strings alike.
func replyEqual(a, b resp.Reply) bool {
	if a.Kind != b.Kind || !bytes.Equal(a.Str, b.Str) || a.Int != b.Int || a.Null != b.Null || len(a.Elems) != len(b.Elems) {
		return false
	}
	for i := range a.Elems {
		if !replyEqual(a.Elems[i], b.Elems[i]) {
			return false
		}
	}
	return true
}

func TestParseReply(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("*1\r\n", n) + ":1\r\n" }
	cases := []struct {
		name string
		in   string
		lim  resp.Limits
		want resp.Reply
		err  string
	}{
		{name: "ok", in: "+OK\r\n", want: simple("OK")},
		{name: "empty simple", in: "+\r\n", want: simple("")},
		{name: "simple with lone CR", in: "+a\rb\r\n", want: simple("a\rb")},
		{name: "error", in: "-ERR unknown command 'FOO'\r\n", want: rerr("ERR unknown command 'FOO'")},
		{name: "zero", in: ":0\r\n", want: rint(0)},
		{name: "negative", in: ":-12\r\n", want: rint(-12)},
		{name: "max int", in: ":9223372036854775807\r\n", want: rint(9223372036854775807)},
		{name: "min int", in: ":-9223372036854775808\r\n", want: rint(-9223372036854775808)},
		{name: "int overflow", in: ":9223372036854775808\r\n", err: "Protocol error: invalid integer"},
		{name: "int leading zero", in: ":01\r\n", err: "Protocol error: invalid integer"},
		{name: "int empty", in: ":\r\n", err: "Protocol error: invalid integer"},
		{name: "int plus", in: ":+1\r\n", err: "Protocol error: invalid integer"},
		{name: "bulk", in: "$3\r\nfoo\r\n", want: bulk("foo")},
		{name: "empty bulk", in: "$0\r\n\r\n", want: bulk("")},
		{name: "binary bulk", in: "$2\r\n\r\n\r\n", want: bulk("\r\n")},
		{name: "null bulk", in: "$-1\r\n", want: nullBulk},
		{name: "bulk -2", in: "$-2\r\n", err: errInvalidBulk},
		{name: "bulk not followed by CRLF", in: "$3\r\nfooXY", err: errBulkCRLF},
		{name: "bulk above MaxBulk", in: "$4\r\nfour\r\n", lim: resp.Limits{MaxBulk: 3}, err: errInvalidBulk},
		{name: "bulk length too long", in: "$" + strings.Repeat("1", 70000), err: errTooBigBulk},
		{name: "simple above MaxBulk", in: "+four\r\n", lim: resp.Limits{MaxBulk: 3}, err: "Protocol error: too big simple string"},
		{name: "simple at MaxBulk", in: "+thr\r\n", lim: resp.Limits{MaxBulk: 3}, want: simple("thr")},
		{name: "empty array", in: "*0\r\n", want: array()},
		{name: "null array", in: "*-1\r\n", want: nullArray},
		{name: "array -2", in: "*-2\r\n", err: errInvalidMultibulk},
		{name: "array above MaxArgs", in: "*3\r\n", lim: resp.Limits{MaxArgs: 2}, err: errInvalidMultibulk},
		{name: "array length too long", in: "*" + strings.Repeat("1", 70000), err: errTooBigMbulk},
		{name: "array", in: "*3\r\n$1\r\na\r\n:1\r\n$-1\r\n", want: array(bulk("a"), rint(1), nullBulk)},
		{name: "nested", in: "*2\r\n*2\r\n+a\r\n-b\r\n*0\r\n", want: array(array(simple("a"), rerr("b")), array())},
		{name: "depth at limit", in: deep(32), want: func() resp.Reply {
			r := rint(1)
			for range 32 {
				r = array(r)
			}
			return r
		}()},
		{name: "depth above limit", in: deep(33), err: "Protocol error: reply nesting too deep"},
		{name: "depth custom", in: deep(2), lim: resp.Limits{MaxDepth: 1}, err: "Protocol error: reply nesting too deep"},
		{name: "bad type", in: "?x\r\n", err: "Protocol error: invalid reply type '?'"},
		{name: "bad type CR", in: "\r\n", err: "Protocol error: invalid reply type ' '"},
		{name: "bad element", in: "*2\r\n:1\r\n!\r\n", err: "Protocol error: invalid reply type '!'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			buf := []byte(tc.in + "+next\r\n")
			r, n, err := resp.ParseReply(buf, tc.lim)
			if tc.err != "" {
				require.ErrorIs(t, err, resp.ErrProtocol)
				require.Equal(t, tc.err, err.Error())
				require.Zero(t, n)
				return
			}
			require.NoError(t, err)
			require.Equal(t, len(tc.in), n)
			require.True(t, replyEqual(tc.want, r), "got %#v", r)

			// Every proper prefix is incomplete, and Need stays in range.
			var p resp.Parser
			p.Limits = tc.lim
			for i := range len(tc.in) {
				_, n, err := p.ParseReply(buf[:i])
				require.ErrorIs(t, err, resp.ErrIncomplete, "prefix %q", tc.in[:i])
				require.Zero(t, n)
				require.Greater(t, p.Need(), i)
				require.LessOrEqual(t, p.Need(), len(tc.in), "prefix %q", tc.in[:i])
			}
		})
	}
}

func TestReplyString(t *testing.T) {
	cases := []struct {
		r    resp.Reply
		want string
	}{
		{simple("OK"), "OK"},
		{rerr("ERR wrong"), "(error) ERR wrong"},
		{rint(-5), "(integer) -5"},
		{bulk("foo"), `"foo"`},
		{bulk("a\"b\\c\n\r\t\a\b\x00\xff~"), `"a\"b\\c\n\r\t\a\b\x00\xff~"`},
		{nullBulk, "(nil)"},
		{nullArray, "(nil)"},
		{array(), "(empty array)"},
		{array(bulk("a"), array(rint(1), bulk("b")), nullBulk, array()),
			"1) \"a\"\n2) 1) (integer) 1\n   2) \"b\"\n3) (nil)\n4) (empty array)"},
		{array(bulk("0"), bulk("1"), bulk("2"), bulk("3"), bulk("4"), bulk("5"), bulk("6"), bulk("7"), bulk("8"),
			array(bulk("x"), bulk("y"))),
			" 1) \"0\"\n 2) \"1\"\n 3) \"2\"\n 4) \"3\"\n 5) \"4\"\n 6) \"5\"\n 7) \"6\"\n 8) \"7\"\n 9) \"8\"\n" +
				"10) 1) \"x\"\n    2) \"y\""},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, tc.r.String())
	}
}

func TestKindString(t *testing.T) {
	require.Equal(t, "bulk string", resp.KindBulk.String())
	require.Equal(t, "array", resp.KindArray.String())
	require.Contains(t, resp.Kind('x').String(), "invalid")
}

// An incomplete reply allocates nothing, whatever its headers claim.
func TestParseReplyIncompleteAllocatesNothing(t *testing.T) {
	for _, in := range []string{"*1048576\r\n", "*2\r\n*1048576\r\n:1\r\n", "$536870912\r\nabc"} {
		buf := []byte(in)
		var p resp.Parser
		allocs := testing.AllocsPerRun(100, func() { _, _, _ = p.ParseReply(buf) })
		require.Zero(t, allocs, in)
	}
	// A complete reply allocates its elements once.
	buf := resp.AppendArrayHeader(nil, 3)
	for range 3 {
		buf = resp.AppendArrayHeader(buf, 2)
		buf = resp.AppendBulkString(buf, "a")
		buf = resp.AppendInt(buf, 1)
	}
	allocs := testing.AllocsPerRun(100, func() { _, _, _ = resp.ParseReply(buf, resp.Limits{}) })
	require.Equal(t, 1.0, allocs)
}

func TestAppend(t *testing.T) {
	var b []byte
	b = resp.AppendSimple(b, "OK")
	b = resp.AppendError(b, "ERR bad\r\nthing")
	b = resp.AppendInt(b, -42)
	b = resp.AppendBulk(b, []byte("foo"))
	b = resp.AppendBulk(b, nil)
	b = resp.AppendBulkString(b, "bar")
	b = resp.AppendNull(b)
	b = resp.AppendArrayHeader(b, 2)
	b = resp.AppendNullArray(b)
	b = resp.AppendCommandString(b, "GET", "k")
	b = resp.AppendCommand(b, []byte("DEL"))
	require.Equal(t, "+OK\r\n-ERR bad  thing\r\n:-42\r\n$3\r\nfoo\r\n$0\r\n\r\n$3\r\nbar\r\n$-1\r\n*2\r\n*-1\r\n"+
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$3\r\nDEL\r\n", string(b))

	buf := make([]byte, 0, 256)
	val := []byte("value")
	allocs := testing.AllocsPerRun(100, func() {
		out := resp.AppendSimple(buf, "OK")
		out = resp.AppendError(out, "WRONGTYPE Operation against a key holding the wrong kind of value")
		out = resp.AppendInt(out, 1234567)
		out = resp.AppendBulk(out, val)
		out = resp.AppendBulkString(out, "s")
		out = resp.AppendNull(out)
		out = resp.AppendArrayHeader(out, 3)
		out = resp.AppendNullArray(out)
		_ = resp.AppendCommandString(out, "SET", "k", "v")
	})
	require.Zero(t, allocs)
}
