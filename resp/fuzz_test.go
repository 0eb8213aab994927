package resp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"unsafe"
)

var fuzzLimits = []Limits{{}, {MaxArgs: 4, MaxBulk: 16, MaxInline: 24, MaxDepth: 3}}

// within reports whether sub's bytes lie inside the array of whole[:cap].
func within(sub, whole []byte) bool {
	if len(sub) == 0 {
		return true
	}
	if cap(whole) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(whole)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return p >= lo && p+uintptr(len(sub)) <= lo+uintptr(cap(whole))
}

func checkProtocolError(t *testing.T, err error) {
	t.Helper()
	var pe *ProtocolError
	if !errors.As(err, &pe) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("error %v is not a *ProtocolError", err)
	}
	if !strings.HasPrefix(pe.Msg, "Protocol error: ") || strings.ContainsAny(pe.Msg, "\r\n") {
		t.Fatalf("bad message %q", pe.Msg)
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n",
		"*1\r\n$0\r\n\r\n*0\r\n*-1\r\nPING\r\n",
		"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET",
		"*3\r\n$3\r\nSET\r\n$1\r\nx\r\nfooz\r\n",
		"*1\r\n$-1\r\n",
		"*1\r\n$3\r\nfooXY",
		"SET \"a\\x41\\n b\" 'it\\'s' c\r\n",
		"ECHO a\"b c\"\n\r\n",
		"ECHO \"abc\r\n",
		"GET a\x00b\r\n",
		"*01\r\n",
		"*1\r\n$2147483647\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range fuzzLimits {
			fuzzCommand(t, data, lim)
		}
	})
}

func fuzzCommand(t *testing.T, data []byte, lim Limits) {
	p := Parser{Limits: lim}
	args, n, err := p.ParseCommand(data, nil)
	args2, n2, err2 := ParseCommand(data, nil, lim)
	if n != n2 || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) ||
		!slicesEqual(args, args2) {
		t.Fatalf("Parser and ParseCommand disagree: %q %d %v / %q %d %v", args, n, err, args2, n2, err2)
	}
	if n < 0 || n > len(data) {
		t.Fatalf("n = %d for %d bytes", n, len(data))
	}
	switch {
	case errors.Is(err, ErrIncomplete):
		if n != 0 || len(args) != 0 || p.Need() <= len(data) {
			t.Fatalf("incomplete: n %d, %d args, need %d for %d bytes", n, len(args), p.Need(), len(data))
		}
		return
	case err != nil:
		checkProtocolError(t, err)
		if n != 0 || len(args) != 0 {
			t.Fatalf("error with n %d, %d args", n, len(args))
		}
		return
	}
	if n == 0 || p.Need() != 0 {
		t.Fatalf("success with n %d, need %d", n, p.Need())
	}
	// Memory: arguments are in data, or (inline, quoted) in the arena, and
	// there are no more of them, nor bytes in them, than consumed.
	total := 0
	for _, a := range args {
		total += len(a)
		if !within(a, data[:n]) && !(data[0] != '*' && within(a, p.arena)) {
			t.Fatalf("argument %q outside the input and the arena", a)
		}
		if cap(a) != len(a) {
			t.Fatalf("argument capacity %d > length %d", cap(a), len(a))
		}
	}
	if len(args) > n || total > n {
		t.Fatalf("%d args of %d bytes from %d bytes", len(args), total, n)
	}
	if data[0] == '*' && len(p.arena) != 0 {
		t.Fatal("multibulk used the arena")
	}
	// A multibulk request re-encodes to exactly the bytes consumed.
	if data[0] == '*' && len(args) > 0 && !bytes.Equal(AppendCommand(nil, args...), data[:n]) {
		t.Fatalf("re-encoding %q gives %q", data[:n], AppendCommand(nil, args...))
	}
	// The request parses alone, and every proper prefix is incomplete with
	// a Need that does not overshoot.
	if a, m, err := ParseCommand(data[:n], nil, lim); err != nil || m != n || !slicesEqual(a, args) {
		t.Fatalf("alone: %q %d %v", a, m, err)
	}
	if n <= 300 {
		for i := range n {
			_, _, err := p.ParseCommand(data[:i], nil)
			if !errors.Is(err, ErrIncomplete) || p.Need() > n {
				t.Fatalf("prefix %q of %q: %v, need %d", data[:i], data[:n], err, p.Need())
			}
		}
	}
}

func slicesEqual(a, b [][]byte) bool {
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

// appendRaw encodes r exactly, unlike AppendSimple and AppendError, which
// replace CR and LF.
func appendRaw(b []byte, r Reply) []byte {
	switch r.Kind {
	case KindSimple, KindError:
		b = append(b, byte(r.Kind))
		b = append(b, r.Str...)
		return append(b, '\r', '\n')
	case KindInt:
		return AppendInt(b, r.Int)
	case KindBulk:
		if r.Null {
			return AppendNull(b)
		}
		return AppendBulk(b, r.Str)
	}
	if r.Null {
		return AppendNullArray(b)
	}
	b = AppendArrayHeader(b, len(r.Elems))
	for _, e := range r.Elems {
		b = appendRaw(b, e)
	}
	return b
}

func countReplies(r Reply) int {
	n := 1
	for _, e := range r.Elems {
		n += countReplies(e)
	}
	return n
}

func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-ERR x\r\n", ":-1\r\n", "$3\r\nfoo\r\n", "$-1\r\n", "*-1\r\n", "*0\r\n",
		"*3\r\n$1\r\na\r\n*2\r\n:1\r\n+b\r\n$-1\r\n",
		strings.Repeat("*1\r\n", 40) + ":1\r\n",
		"+a\rb\r\n", ":01\r\n", "$3\r\nfooXY", "*2\r\n:1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range fuzzLimits {
			fuzzReply(t, data, lim)
		}
	})
}

func fuzzReply(t *testing.T, data []byte, lim Limits) {
	p := Parser{Limits: lim}
	r, n, err := p.ParseReply(data)
	if n < 0 || n > len(data) {
		t.Fatalf("n = %d for %d bytes", n, len(data))
	}
	switch {
	case errors.Is(err, ErrIncomplete):
		if n != 0 || p.Need() <= len(data) {
			t.Fatalf("incomplete: n %d, need %d for %d bytes", n, p.Need(), len(data))
		}
		return
	case err != nil:
		checkProtocolError(t, err)
		return
	}
	_ = r.String()
	if c := countReplies(r); c > n/minReply {
		t.Fatalf("%d replies from %d bytes", c, n)
	}
	if enc := appendRaw(nil, r); !bytes.Equal(enc, data[:n]) {
		t.Fatalf("re-encoding %q gives %q", data[:n], enc)
	}
	if n <= 300 {
		for i := range n {
			_, _, err := p.ParseReply(data[:i])
			if !errors.Is(err, ErrIncomplete) || p.Need() > n {
				t.Fatalf("prefix %q of %q: %v, need %d", data[:i], data[:n], err, p.Need())
			}
		}
	}
}
