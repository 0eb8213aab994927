package resp_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/resp"
)

const (
	errInvalidMultibulk = "Protocol error: invalid multibulk length"
	errInvalidBulk      = "Protocol error: invalid bulk length"
	errTooBigMbulk      = "Protocol error: too big mbulk count string"
	errTooBigBulk       = "Protocol error: too big bulk count string"
	errTooBigInline     = "Protocol error: too big inline request"
	errUnbalanced       = "Protocol error: unbalanced quotes in request"
	errBulkCRLF         = "Protocol error: expected CRLF after bulk argument"
	incomplete          = "incomplete"
)

type commandCase struct {
	name string
	in   string
	lim  resp.Limits
	args []string // nil with err == "": the empty request
	n    int      // bytes consumed when err == ""; 0 means len(in)
	err  string   // "", incomplete, or the protocol error text
}

var set3 = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"

func commandCases() []commandCase {
	ones := func(n int) string { return strings.Repeat("1", n) }
	return []commandCase{
		// Multibulk.
		{name: "set", in: set3, args: []string{"SET", "key", "value"}},
		{name: "set then more", in: set3 + "*1\r\n", args: []string{"SET", "key", "value"}, n: len(set3)},
		{name: "empty bulk", in: "*1\r\n$0\r\n\r\n", args: []string{""}},
		{name: "binary bulk", in: "*1\r\n$4\r\n\r\n\x00\xff\r\n", args: []string{"\r\n\x00\xff"}},
		{name: "zero count", in: "*0\r\n"},
		{name: "null count", in: "*-1\r\n"},
		{name: "negative count", in: "*-10\r\n"},
		{name: "count is MaxArgs", in: "*1048576\r\n", err: incomplete},
		{name: "count above MaxArgs", in: "*1048577\r\n", err: errInvalidMultibulk},
		{name: "count 2^31-1", in: "*2147483647\r\n", err: errInvalidMultibulk},
		{name: "count 3e9", in: "*3000000000\r\n", err: errInvalidMultibulk},
		{name: "count above int64", in: "*9223372036854775808\r\n", err: errInvalidMultibulk},
		{name: "count not a number", in: "*abc\r\n", err: errInvalidMultibulk},
		{name: "count leading zero", in: "*01\r\n", err: errInvalidMultibulk},
		{name: "count plus sign", in: "*+1\r\n", err: errInvalidMultibulk},
		{name: "count minus zero", in: "*-0\r\n", err: errInvalidMultibulk},
		{name: "count empty", in: "*\r\n", err: errInvalidMultibulk},
		{name: "count blank", in: "* 1\r\n", err: errInvalidMultibulk},
		{name: "count CR without LF", in: "*1\rX$1\r\na\r\n", err: errInvalidMultibulk},
		{name: "count custom MaxArgs", in: "*3\r\n", lim: resp.Limits{MaxArgs: 2}, err: errInvalidMultibulk},
		{name: "count line 64 KiB waits", in: "*" + ones(64<<10-1), err: incomplete},
		{name: "count line over 64 KiB", in: "*" + ones(64<<10), err: errTooBigMbulk},
		{name: "count line 64 KiB judged at CR", in: "*" + ones(64<<10-1) + "\r\n", err: errInvalidMultibulk},
		{name: "count NUL", in: "*\x00" + strings.Repeat("payload", 10000), err: errTooBigMbulk},
		{name: "payload header not $", in: "*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n", err: "Protocol error: expected '$', got 'f'"},
		{name: "no bulk arguments", in: "*1\r\nfoo\r\n", err: "Protocol error: expected '$', got 'f'"},
		{name: "empty header line", in: "*1\r\n\r\n", err: "Protocol error: expected '$', got ' '"},
		{name: "non-$ waits for its line", in: "*1\r\nfoo", err: incomplete},
		{name: "negative bulk", in: "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$-10\r\n", err: errInvalidBulk},
		{name: "null bulk in request", in: "*1\r\n$-1\r\n", err: errInvalidBulk},
		{name: "bulk 2e9", in: "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$2000000000\r\n", err: errInvalidBulk},
		{name: "bulk 2^31-1", in: "*1\r\n$2147483647\r\n", err: errInvalidBulk},
		{name: "bulk at MaxBulk", in: "*1\r\n$536870912\r\n", err: incomplete},
		{name: "bulk above MaxBulk", in: "*1\r\n$536870913\r\n", err: errInvalidBulk},
		{name: "bulk custom MaxBulk", in: "*1\r\n$11\r\nhello world\r\n", lim: resp.Limits{MaxBulk: 10}, err: errInvalidBulk},
		{name: "bulk custom MaxBulk ok", in: "*1\r\n$10\r\nhelloworld\r\n", lim: resp.Limits{MaxBulk: 10}, args: []string{"helloworld"}},
		{name: "bulk not a number", in: "*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$blabla\r\n", err: errInvalidBulk},
		{name: "bulk leading zero", in: "*1\r\n$03\r\nfoo\r\n", err: errInvalidBulk},
		{name: "bulk CR without LF", in: "*1\r\n$3\rXfoo\r\n", err: errInvalidBulk},
		{name: "bulk line over 64 KiB", in: "*1\r\n$" + ones(70000), err: errTooBigBulk},
		{name: "bulk line over 64 KiB before $ check", in: "*1\r\n" + strings.Repeat("X", 70000), err: errTooBigBulk},
		{name: "bulk line 64 KiB judged at CR", in: "*1\r\n$" + ones(64<<10-1) + "\r\n", err: errInvalidBulk},
		{name: "bulk data not followed by CRLF", in: "*1\r\n$3\r\nfooXY", err: errBulkCRLF},
		{name: "bulk data longer than announced", in: "*1\r\n$3\r\nfoobar\r\n", err: errBulkCRLF},

		// Inline.
		{name: "inline ping", in: "PING\r\n", args: []string{"PING"}},
		{name: "inline LF only", in: "PING\n", args: []string{"PING"}},
		{name: "inline pipelined", in: "PING\r\nPING\r\n", args: []string{"PING"}, n: 6},
		{name: "inline empty CRLF", in: "\r\n"},
		{name: "inline empty LF", in: "\n"},
		{name: "inline blanks", in: " \t\v\f \r\n"},
		{name: "inline args", in: "  SET   a\tb  \r\n", args: []string{"SET", "a", "b"}},
		{name: "inline CR splits", in: "GE\rT a\r\n", args: []string{"GE", "T", "a"}},
		{name: "inline vertical tab inside arg", in: "a\vb\n", args: []string{"a\vb"}},
		{name: "inline double quotes", in: `SET "hello world" x` + "\r\n", args: []string{"SET", "hello world", "x"}},
		{name: "inline escapes", in: `ECHO "a\nb\r\t\b\a\\\"\x41\x4a\xff\q"` + "\n", args: []string{"ECHO", "a\nb\r\t\b\a\\\"AJ\xffq"}},
		{name: "inline bad hex", in: `ECHO "\xZZ\x4"` + "\n", args: []string{"ECHO", "xZZx4"}},
		{name: "inline single quotes", in: `ECHO 'it\'s' '\n'` + "\n", args: []string{"ECHO", "it's", `\n`}},
		{name: "inline empty quotes", in: `ECHO "" ''` + "\n", args: []string{"ECHO", "", ""}},
		{name: "inline quote mid-arg", in: `ECHO a"b c"` + "\n", args: []string{"ECHO", "ab c"}},
		{name: "inline quote then vtab", in: "ECHO \"a\"\vb\n", args: []string{"ECHO", "a", "b"}},
		{name: "inline unterminated", in: `ECHO "abc` + "\r\n", err: errUnbalanced},
		{name: "inline unterminated single", in: `ECHO 'abc` + "\r\n", err: errUnbalanced},
		{name: "inline escaped closing quote", in: `ECHO "abc\"` + "\r\n", err: errUnbalanced},
		{name: "inline text after quote", in: `ECHO "a"b` + "\r\n", err: errUnbalanced},
		{name: "inline text after single quote", in: `ECHO 'a'b` + "\r\n", err: errUnbalanced},
		{name: "inline NUL ends line", in: "GET a\x00b c\r\n", args: []string{"GET", "a"}},
		{name: "inline NUL in quotes", in: "ECHO \"a\x00\"\r\n", err: errUnbalanced},
		{name: "inline starting with $", in: "$3\r\nfoo\r\n", args: []string{"$3"}, n: 4},
		{name: "inline waits for LF", in: "PING\r", err: incomplete},
		{name: "inline at MaxInline", in: "12345678\n", lim: resp.Limits{MaxInline: 8}, args: []string{"12345678"}},
		{name: "inline at MaxInline waits", in: "12345678", lim: resp.Limits{MaxInline: 8}, err: incomplete},
		{name: "inline over MaxInline", in: "123456789", lim: resp.Limits{MaxInline: 8}, err: errTooBigInline},
		{name: "inline over MaxInline with LF", in: "123456789\n", lim: resp.Limits{MaxInline: 8}, err: errTooBigInline},
		{name: "inline 8 MiB without LF", in: strings.Repeat("A", 8<<20), err: errTooBigInline},
		{name: "inline NUL then payload", in: "\x00" + strings.Repeat("payload", 10000), err: errTooBigInline},

		{name: "empty buffer", in: "", err: incomplete},
	}
}

func TestParseCommand(t *testing.T) {
	for _, tc := range commandCases() {
		t.Run(tc.name, func(t *testing.T) {
			dst := make([][]byte, 1, 4)
			dst[0] = []byte("keep")
			args, n, err := resp.ParseCommand([]byte(tc.in), dst, tc.lim)
			checkCommand(t, tc, args, n, err)

			var p resp.Parser
			p.Limits = tc.lim
			args, n, err = p.ParseCommand([]byte(tc.in), dst)
			checkCommand(t, tc, args, n, err)
			if tc.err == incomplete {
				require.Greater(t, p.Need(), len(tc.in))
			} else {
				require.Zero(t, p.Need())
			}
		})
	}
}

func checkCommand(t *testing.T, tc commandCase, args [][]byte, n int, err error) {
	t.Helper()
	require.Equal(t, "keep", string(args[0]), "dst's own elements are kept")
	args = args[1:]
	switch tc.err {
	case "":
		require.NoError(t, err)
		want := tc.n
		if want == 0 {
			want = len(tc.in)
		}
		require.Equal(t, want, n)
		require.Equal(t, tc.args, strs(args))
	case incomplete:
		require.ErrorIs(t, err, resp.ErrIncomplete)
		require.Zero(t, n)
		require.Empty(t, args)
	default:
		require.ErrorIs(t, err, resp.ErrProtocol)
		var pe *resp.ProtocolError
		require.ErrorAs(t, err, &pe)
		require.Equal(t, tc.err, pe.Msg)
		require.Equal(t, tc.err, err.Error())
		require.Zero(t, n)
		require.Empty(t, args)
	}
}

func strs(args [][]byte) []string {
	if len(args) == 0 {
		return nil
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

// A server parses pipelined requests one after another from one buffer.
func TestPipelined(t *testing.T) {
	var buf []byte
	buf = resp.AppendCommandString(buf, "SET", "k", "v")
	buf = append(buf, "*0\r\n"...)
	buf = append(buf, "PING\r\n"...)
	buf = resp.AppendCommandString(buf, "MGET", "a", "b", "c")
	buf = append(buf, "\r\n"...)
	buf = append(buf, `ECHO "x y"`+"\n"...)
	buf = resp.AppendCommandString(buf, "GET", "k")
	buf = append(buf, "*2\r\n$3\r\nGET"...) // a partial request at the end

	want := [][]string{{"SET", "k", "v"}, nil, {"PING"}, {"MGET", "a", "b", "c"}, nil, {"ECHO", "x y"}, {"GET", "k"}}
	var p resp.Parser
	var got [][]string
	var args [][]byte
	for off := 0; ; {
		var n int
		var err error
		args, n, err = p.ParseCommand(buf[off:], args[:0])
		if errors.Is(err, resp.ErrIncomplete) {
			require.Equal(t, len(buf)-len("*2\r\n$3\r\nGET"), off)
			break
		}
		require.NoError(t, err)
		got = append(got, strs(args))
		off += n
	}
	require.Equal(t, want, got)
}

// Every proper prefix of a valid request is incomplete, consumes nothing,
// and Need points past the prefix and no further than the full request.
func TestEveryPrefixIsIncomplete(t *testing.T) {
	var valid []string
	for _, tc := range commandCases() {
		if tc.err == "" && tc.n == 0 && len(tc.in) < 1000 {
			valid = append(valid, tc.in)
		}
	}
	valid = append(valid,
		string(resp.AppendCommandString(nil, "SET", "key", strings.Repeat("v", 100))),
		string(resp.AppendCommandString(nil, "MSET", "a", "1", "b", "22", "c", "", "d", "4444444444")),
		string(resp.AppendCommand(nil, bytes.Repeat([]byte("\r\n$*"), 300))),
	)
	for _, full := range valid {
		var p resp.Parser
		for i := range len(full) {
			args, n, err := p.ParseCommand([]byte(full[:i]), nil)
			require.ErrorIs(t, err, resp.ErrIncomplete, "prefix %q", full[:i])
			require.Zero(t, n)
			require.Empty(t, args)
			require.Greater(t, p.Need(), i, "prefix %q", full[:i])
			require.LessOrEqual(t, p.Need(), len(full), "prefix %q", full[:i])
		}
		_, n, err := p.ParseCommand([]byte(full), nil)
		require.NoError(t, err)
		require.Equal(t, len(full), n)
	}
}

// reader simulates a connection that delivers a request in fixed-size reads
// to a server that re-parses only when Need bytes have arrived.
func parseInReads(t *testing.T, msg []byte, readSize int) (args [][]byte, parses int) {
	t.Helper()
	var p resp.Parser
	for have := 0; ; {
		have = min(len(msg), have+readSize)
		if have < p.Need() {
			continue
		}
		parses++
		args, n, err := p.ParseCommand(msg[:have], nil)
		if err == nil {
			require.Equal(t, len(msg), n)
			return args, parses
		}
		require.ErrorIs(t, err, resp.ErrIncomplete)
		require.Less(t, have, len(msg))
	}
}

func TestNeedAvoidsReparsing(t *testing.T) {
	t.Run("large value", func(t *testing.T) {
		value := bytes.Repeat([]byte("v"), 10<<20)
		msg := resp.AppendCommand(nil, []byte("SET"), []byte("k"), value)
		args, parses := parseInReads(t, msg, 4096)
		require.Len(t, args, 3)
		// One parse when the header arrives, one when the value is complete.
		require.LessOrEqual(t, parses, 3)
	})
	t.Run("many small arguments", func(t *testing.T) {
		const n = 100_000
		cmd := make([][]byte, n)
		for i := range cmd {
			cmd[i] = []byte{byte('a' + i%26)}
		}
		msg := resp.AppendCommand(nil, cmd...)
		args, parses := parseInReads(t, msg, 4096)
		require.Len(t, args, n)
		// 171 reads; the bound of 6 bytes per missing argument makes the
		// re-parses logarithmic in the argument count.
		require.LessOrEqual(t, parses, 20)
	})
}

// Lengths read from the input allocate nothing until their bytes are there.
func TestHostileLengthsCostNothing(t *testing.T) {
	lim := resp.Limits{MaxArgs: math.MaxInt32, MaxBulk: math.MaxInt64}
	for _, in := range []string{
		"*2147483647\r\n",
		"*2147483647\r\n$9223372036854775807\r\n",
		"*1\r\n$536870912\r\n",
		"*1\r\n$536870912\r\nsome",
	} {
		buf := []byte(in)
		dst := make([][]byte, 0, 4)
		var p resp.Parser
		p.Limits = lim
		allocs := testing.AllocsPerRun(100, func() {
			_, _, err := p.ParseCommand(buf, dst)
			if !errors.Is(err, resp.ErrIncomplete) {
				t.Fatalf("%q: %v", in, err)
			}
		})
		require.Zero(t, allocs, in)
		require.Greater(t, p.Need(), len(in))
		allocs = testing.AllocsPerRun(100, func() { _, _, _ = resp.ParseCommand(buf, dst, lim) })
		require.Zero(t, allocs, in)
	}
}

func TestParseCommandZeroAllocs(t *testing.T) {
	bufs := map[string][]byte{
		"set":       resp.AppendCommandString(nil, "SET", "key:000001", strings.Repeat("v", 100)),
		"inline":    []byte("SET key value\r\n"),
		"pipelined": bytes.Repeat(resp.AppendCommandString(nil, "GET", "key"), 16),
	}
	for name, buf := range bufs {
		dst := make([][]byte, 0, 8)
		allocs := testing.AllocsPerRun(1000, func() {
			_, _, err := resp.ParseCommand(buf, dst[:0], resp.Limits{})
			if err != nil {
				t.Fatal(err)
			}
		})
		require.Zero(t, allocs, name)
		var p resp.Parser
		allocs = testing.AllocsPerRun(1000, func() {
			_, _, err := p.ParseCommand(buf, dst[:0])
			if err != nil {
				t.Fatal(err)
			}
		})
		require.Zero(t, allocs, name)
	}
}

// Quoted inline arguments live in memory nothing writes again: they survive
// later calls and changes to the input buffer.
func TestUnescapedArgumentsLiveOn(t *testing.T) {
	var p resp.Parser
	var kept [][]byte
	for i := range 2000 {
		buf := fmt.Appendf(nil, "SET \"k%d\" 'v %d'\r\n", i, i)
		args, n, err := p.ParseCommand(buf, nil)
		require.NoError(t, err)
		require.Equal(t, len(buf), n)
		for j := range buf {
			buf[j] = 'X'
		}
		kept = append(kept, args[1], args[2])
	}
	for i := range 2000 {
		require.Equal(t, fmt.Sprintf("k%d", i), string(kept[2*i]))
		require.Equal(t, fmt.Sprintf("v %d", i), string(kept[2*i+1]))
	}
	// The Parser amortizes: far fewer allocations than arguments.
	buf := []byte(`SET "a b" "c d"` + "\r\n")
	allocs := testing.AllocsPerRun(1000, func() { _, _, _ = p.ParseCommand(buf, make([][]byte, 0, 4)) })
	require.Less(t, allocs, 0.1)
}

// Arguments cannot be appended to over the bytes that follow them.
func TestArgumentCapacityIsClipped(t *testing.T) {
	buf := resp.AppendCommandString(nil, "SET", "k", "v")
	args, _, err := resp.ParseCommand(buf, nil, resp.Limits{})
	require.NoError(t, err)
	for _, a := range args {
		require.Equal(t, len(a), cap(a))
	}
	args, _, err = resp.ParseCommand([]byte("SET k v\n"), nil, resp.Limits{})
	require.NoError(t, err)
	for _, a := range args {
		require.Equal(t, len(a), cap(a))
	}
}

func TestLimitsValidate(t *testing.T) {
	require.NoError(t, resp.Limits{}.Validate())
	require.NoError(t, resp.Limits{MaxArgs: 1, MaxBulk: 1, MaxInline: 1, MaxDepth: 1}.Validate())
	for _, l := range []resp.Limits{{MaxArgs: -1}, {MaxBulk: -1}, {MaxInline: -1}, {MaxDepth: -1}} {
		require.ErrorIs(t, l.Validate(), resp.ErrInvalidLimits)
	}
}

func TestIncompleteIsNotProtocolError(t *testing.T) {
	require.NotErrorIs(t, resp.ErrIncomplete, resp.ErrProtocol)
	_, _, err := resp.ParseCommand([]byte("*1\r\n"), nil, resp.Limits{})
	require.NotErrorIs(t, err, resp.ErrProtocol)
}

// Memory used while a request is incomplete does not depend on what its
// header claims.
func TestHugeClaimsDoNotAllocate(t *testing.T) {
	buf := []byte("*1048576\r\n$536870912\r\n")
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range 100 {
		_, _, _ = resp.ParseCommand(buf, nil, resp.Limits{})
	}
	runtime.ReadMemStats(&after)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<10))
}
