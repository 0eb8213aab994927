package resp

import "bytes"

// parseInline parses one inline command: a line ending in "\n" or "\r\n",
// split into arguments as Redis's sdssplitargs does.
func parseInline(buf []byte, dst [][]byte, lim *Limits, arena *[]byte, chunk int) ([][]byte, int, int, error) {
	window := buf
	if len(window)-1 > lim.MaxInline {
		window = window[:lim.MaxInline+1]
	}
	nl := bytes.IndexByte(window, '\n')
	if nl < 0 {
		if len(buf) > lim.MaxInline {
			return dst, 0, 0, protoErr(msgTooBigInline)
		}
		return dst, 0, len(buf) + 1, ErrIncomplete
	}
	line := buf[:nl]
	if nl > 0 && line[nl-1] == '\r' {
		line = line[:nl-1]
	}
	args, ok := splitArgs(line, dst, arena, chunk)
	if !ok {
		return dst, 0, 0, protoErr(msgUnbalanced)
	}
	return args, nl + 1, 0, nil
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// endsToken reports the bytes that end an unquoted token in sdssplitargs.
func endsToken(c byte) bool {
	return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == 0
}

// splitArgs appends the arguments of line to dst, following sdssplitargs:
// blanks separate arguments; a NUL byte ends the line; "double quotes"
// understand \xHH, \n, \r, \t, \b, \a and \<any>; 'single quotes' understand
// \'; a closing quote must be followed by a blank or the end; quotes may
// open in the middle of an argument (a"b c" is one argument, "ab c").
// Unquoted arguments are sub-slices of line; quoted ones are unescaped into
// *arena. It reports false for unbalanced quotes.
func splitArgs(line []byte, dst [][]byte, arena *[]byte, chunk int) ([][]byte, bool) {
	base := len(dst)
	p := 0
	for {
		for p < len(line) && isSpace(line[p]) {
			p++
		}
		if p == len(line) || line[p] == 0 {
			return dst, true
		}
		start := p
		for p < len(line) && !endsToken(line[p]) && line[p] != '"' && line[p] != '\'' {
			p++
		}
		if p == len(line) || endsToken(line[p]) {
			dst = append(dst, line[start:p:p])
			continue
		}
		var tok []byte
		var ok bool
		tok, p, ok = unquote(line, start, p, arena, chunk)
		if !ok {
			return dst[:base], false
		}
		dst = append(dst, tok)
	}
}

func byteAt(b []byte, i int) byte {
	if i < len(b) {
		return b[i]
	}
	return 0
}

// unquote unescapes the argument that starts at line[start] and whose first
// quote is at line[q]. It returns the argument and the position after it.
func unquote(line []byte, start, q int, arena *[]byte, chunk int) ([]byte, int, bool) {
	// The unescaped argument is never longer than the rest of the line, so
	// reserving that much means the appends below never reallocate, and
	// arguments already handed out are never moved or overwritten.
	if rest := len(line) - start; cap(*arena)-len(*arena) < rest {
		*arena = make([]byte, 0, max(chunk, rest))
	}
	a := *arena
	s0 := len(a)
	a = append(a, line[start:q]...)
	p := q
	inq, insq := false, false
	for done := false; !done; {
		c := byteAt(line, p)
		switch {
		case inq:
			switch {
			case c == '\\' && byteAt(line, p+1) == 'x' && isHex(byteAt(line, p+2)) && isHex(byteAt(line, p+3)):
				a = append(a, unhex(line[p+2])<<4|unhex(line[p+3]))
				p += 3
			case c == '\\' && byteAt(line, p+1) != 0:
				p++
				a = append(a, unescape(line[p]))
			case c == '"':
				if n := byteAt(line, p+1); n != 0 && !isSpace(n) {
					return nil, 0, false
				}
				done = true
			case c == 0:
				return nil, 0, false
			default:
				a = append(a, c)
			}
		case insq:
			switch {
			case c == '\\' && byteAt(line, p+1) == '\'':
				p++
				a = append(a, '\'')
			case c == '\'':
				if n := byteAt(line, p+1); n != 0 && !isSpace(n) {
					return nil, 0, false
				}
				done = true
			case c == 0:
				return nil, 0, false
			default:
				a = append(a, c)
			}
		default:
			switch c {
			case ' ', '\n', '\r', '\t', 0:
				done = true
			case '"':
				inq = true
			case '\'':
				insq = true
			default:
				a = append(a, c)
			}
		}
		if byteAt(line, p) != 0 {
			p++
		}
	}
	*arena = a
	return a[s0:len(a):len(a)], p, true
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 'r':
		return '\r'
	case 't':
		return '\t'
	case 'b':
		return '\b'
	case 'a':
		return '\a'
	}
	return c
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
