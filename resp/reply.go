package resp

import (
	"bytes"
	"strconv"
	"strings"
)

// Kind is the type of a RESP2 reply, named by its first byte.
type Kind byte

// The RESP2 reply kinds.
const (
	KindSimple Kind = '+' // simple string, such as OK
	KindError  Kind = '-' // error, such as "ERR unknown command"
	KindInt    Kind = ':' // integer
	KindBulk   Kind = '$' // bulk string, or the null bulk string
	KindArray  Kind = '*' // array, or the null array
)

// String returns the kind's name.
func (k Kind) String() string {
	switch k {
	case KindSimple:
		return "simple string"
	case KindError:
		return "error"
	case KindInt:
		return "integer"
	case KindBulk:
		return "bulk string"
	case KindArray:
		return "array"
	}
	return "invalid kind " + strconv.Quote(string(rune(k)))
}

// Reply is one decoded RESP2 reply.
type Reply struct {
	Kind Kind
	// Str is the text of a simple string or error (without the leading
	// '+' or '-') or the bytes of a bulk string. It is a sub-slice of the
	// parsed buffer, valid while that buffer's bytes are.
	Str []byte
	// Int is the value of an integer reply.
	Int int64
	// Null marks the null bulk string ("$-1") and the null array ("*-1").
	Null bool
	// Elems are the elements of an array; nil for the empty and the null
	// array.
	Elems []Reply
}

// ParseReply parses one complete reply at the start of buf and returns it
// and the number of bytes consumed. Like ParseCommand it returns
// ErrIncomplete (and n == 0) for a prefix, and a *ProtocolError for malformed
// input. Bulk lengths are bounded by lim.MaxBulk, array lengths by
// lim.MaxArgs, nesting by lim.MaxDepth, simple-string and error lines by
// lim.MaxBulk.
//
// The whole reply is checked before anything is allocated, and then the
// arrays' elements are allocated at once, so the memory used is
// proportional to the bytes of the reply, and an incomplete reply allocates
// nothing.
func ParseReply(buf []byte, lim Limits) (Reply, int, error) {
	lim = lim.orDefaults()
	r, n, _, err := parseReply(buf, &lim)
	return r, n, err
}

// ParseReply is the package function ParseReply with p's limits; after
// ErrIncomplete, p.Need tells how many bytes are worth waiting for.
func (p *Parser) ParseReply(buf []byte) (Reply, int, error) {
	lim := p.Limits.orDefaults()
	r, n, need, err := parseReply(buf, &lim)
	p.need = need
	return r, n, err
}

// minReply is the length of the shortest reply, "+\r\n".
const minReply = 3

// Reply error texts, in the style of Redis's request errors.
const (
	msgInvalidInt   = "Protocol error: invalid integer"
	msgTooBigSimple = "Protocol error: too big simple string"
	msgTooDeep      = "Protocol error: reply nesting too deep"
)

func parseReply(buf []byte, lim *Limits) (Reply, int, int, error) {
	end, elems, need, err := scanReply(buf, 0, 0, lim)
	if err != nil {
		return Reply{}, 0, need, err
	}
	var slab []Reply
	if elems > 0 {
		slab = make([]Reply, elems)
	}
	var r Reply
	buildReply(&r, buf, 0, slab)
	return r, end, 0, nil
}

// scanReply checks the reply at buf[pos:] without allocating. It returns
// the reply's end, the number of array elements it holds at every depth,
// and, with ErrIncomplete, a lower bound on the end. depth is the number of
// arrays enclosing the reply.
func scanReply(buf []byte, pos, depth int, lim *Limits) (end, elems, need int, err error) {
	incomplete := func(atLeast int) (int, int, int, error) {
		return 0, 0, max(atLeast, len(buf)+1, satAdd(pos, minReply)), ErrIncomplete
	}
	if pos >= len(buf) {
		return incomplete(0)
	}
	switch typ := buf[pos]; typ {
	case '+', '-':
		_, next, st := simpleLine(buf, pos, lim.MaxBulk)
		switch st {
		case hdrOK:
			return next, 0, 0, nil
		case hdrIncomplete:
			return incomplete(0)
		}
		return 0, 0, 0, protoErr(msgTooBigSimple)
	case ':':
		_, next, st := header(buf, pos, ':')
		switch st {
		case hdrOK:
			return next, 0, 0, nil
		case hdrIncomplete:
			return incomplete(0)
		}
		return 0, 0, 0, protoErr(msgInvalidInt)
	case '$':
		l, next, st := header(buf, pos, '$')
		switch st {
		case hdrOK:
		case hdrIncomplete:
			return incomplete(0)
		case hdrTooBig:
			return 0, 0, 0, protoErr(msgTooBigBulk)
		default:
			return 0, 0, 0, protoErr(msgInvalidBulk)
		}
		if l == -1 {
			return next, 0, 0, nil
		}
		if l < 0 || l > int64(lim.MaxBulk) {
			return 0, 0, 0, protoErr(msgInvalidBulk)
		}
		size := int(l)
		if len(buf)-next-2 < size {
			return incomplete(satAdd(next, satAdd(size, 2)))
		}
		end := next + size
		if buf[end] != '\r' || buf[end+1] != '\n' {
			return 0, 0, 0, protoErr(msgBulkCRLF)
		}
		return end + 2, 0, 0, nil
	case '*':
		n, next, st := header(buf, pos, '*')
		switch st {
		case hdrOK:
		case hdrIncomplete:
			return incomplete(0)
		case hdrTooBig:
			return 0, 0, 0, protoErr(msgTooBigMbulk)
		default:
			return 0, 0, 0, protoErr(msgInvalidMultibulk)
		}
		if n == -1 {
			return next, 0, 0, nil
		}
		if n < 0 || n > int64(lim.MaxArgs) {
			return 0, 0, 0, protoErr(msgInvalidMultibulk)
		}
		if depth >= lim.MaxDepth {
			return 0, 0, 0, protoErr(msgTooDeep)
		}
		count := int(n)
		elems = count
		for i := range count {
			var sub int
			next, sub, need, err = scanReply(buf, next, depth+1, lim)
			if err != nil {
				if err == ErrIncomplete {
					need = satAdd(need, satMul(minReply, count-i-1))
				}
				return 0, 0, need, err
			}
			elems = satAdd(elems, sub)
		}
		return next, elems, 0, nil
	default:
		if typ == '\r' || typ == '\n' {
			typ = ' '
		}
		return 0, 0, 0, protoErr("Protocol error: invalid reply type '" + string([]byte{typ}) + "'")
	}
}

// simpleLine reads the line of a simple string or error at buf[pos:]: the
// bytes up to the first CRLF, at most limit of them. It looks no further
// than the limit.
func simpleLine(buf []byte, pos, limit int) ([]byte, int, hdrStatus) {
	first := pos + 1
	window := buf
	if len(buf)-first-1 > limit {
		window = buf[:first+limit+1] // the content and its CR
	}
	for from := first; ; {
		i := bytes.IndexByte(window[from:], '\r')
		if i < 0 {
			if len(window) < len(buf) {
				return nil, 0, hdrTooBig
			}
			return nil, 0, hdrIncomplete
		}
		i += from
		if i+1 >= len(buf) {
			return nil, 0, hdrIncomplete
		}
		if buf[i+1] == '\n' {
			return buf[first:i:i], i + 2, hdrOK
		}
		from = i + 1
	}
}

// buildReply decodes into r the reply at buf[pos:], which scanReply
// accepted, taking array elements from slab. It returns the reply's end and
// the unused rest of slab.
func buildReply(r *Reply, buf []byte, pos int, slab []Reply) (int, []Reply) {
	switch buf[pos] {
	case '+', '-':
		s, next, _ := simpleLine(buf, pos, len(buf))
		r.Kind, r.Str = Kind(buf[pos]), s
		return next, slab
	case ':':
		v, next, _ := header(buf, pos, ':')
		r.Kind, r.Int = KindInt, v
		return next, slab
	case '$':
		l, next, _ := header(buf, pos, '$')
		r.Kind = KindBulk
		if l < 0 {
			r.Null = true
			return next, slab
		}
		end := next + int(l)
		r.Str = buf[next:end:end]
		return end + 2, slab
	default: // '*'
		n, next, _ := header(buf, pos, '*')
		r.Kind = KindArray
		if n <= 0 {
			r.Null = n < 0
			return next, slab
		}
		r.Elems = slab[:n:n]
		slab = slab[n:]
		for i := range r.Elems {
			next, slab = buildReply(&r.Elems[i], buf, next, slab)
		}
		return next, slab
	}
}

// String renders r the way redis-cli does on a terminal, without the final
// newline: OK, (error) ERR ..., (integer) 1, "bulk", (nil), (empty array),
// and numbered, indented array elements.
func (r Reply) String() string {
	b := r.appendTTY(nil, "")
	return string(b[:len(b)-1])
}

func (r Reply) appendTTY(b []byte, prefix string) []byte {
	switch r.Kind {
	case KindSimple:
		b = append(b, r.Str...)
	case KindError:
		b = append(b, "(error) "...)
		b = append(b, r.Str...)
	case KindInt:
		b = append(b, "(integer) "...)
		b = strconv.AppendInt(b, r.Int, 10)
	case KindBulk:
		if r.Null {
			b = append(b, "(nil)"...)
		} else {
			b = appendRepr(b, r.Str)
		}
	case KindArray:
		switch {
		case r.Null:
			b = append(b, "(nil)"...)
		case len(r.Elems) == 0:
			b = append(b, "(empty array)"...)
		default:
			width := len(strconv.Itoa(len(r.Elems)))
			inner := prefix + strings.Repeat(" ", width+2)
			for i, e := range r.Elems {
				if i > 0 {
					b = append(b, prefix...)
				}
				num := strconv.Itoa(i + 1)
				for range width - len(num) {
					b = append(b, ' ')
				}
				b = append(b, num...)
				b = append(b, ") "...)
				b = e.appendTTY(b, inner)
			}
			return b // every element ended its own line
		}
	default:
		b = append(b, "(invalid reply kind)"...)
	}
	return append(b, '\n')
}

// appendRepr quotes s as Redis's sdscatrepr does.
func appendRepr(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range s {
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\a':
			b = append(b, '\\', 'a')
		case '\b':
			b = append(b, '\\', 'b')
		default:
			if c >= 0x20 && c < 0x7f {
				b = append(b, c)
			} else {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
			}
		}
	}
	return append(b, '"')
}
