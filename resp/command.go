package resp

import (
	"bytes"
	"math"
)

// minBulkArg is the shortest encoding of a bulk argument, "$0\r\n\r\n". Need
// counts it for every element of a multibulk request not yet begun.
const minBulkArg = 6

// arenaChunk is the smallest block a Parser allocates for unescaped inline
// arguments.
const arenaChunk = 4 << 10

// Parser holds the state worth keeping per connection: the limits, the hint
// of how many bytes an incomplete command or reply needs, and a block of
// memory for unescaped inline arguments. The zero value is ready to use,
// with default limits. A Parser is not safe for concurrent use.
type Parser struct {
	// Limits bounds what the Parser accepts. It may be changed between
	// calls.
	Limits Limits

	need  int
	arena []byte // unescaped inline arguments; never written below len
}

// Need returns, after a parse that failed with ErrIncomplete, a lower bound
// on the length of a buffer (from the same start) that can hold the whole
// command or reply; it is always more than the length just parsed. A call
// with a shorter buffer cannot succeed (it can only find a protocol error
// sooner). Waiting for Need bytes is what keeps a large value arriving in
// small reads from being re-parsed from its start on every read. After any
// other outcome Need returns 0.
//
// For a multibulk request the bound counts the announced bulk length of the
// argument being read plus 6 bytes ("$0\r\n\r\n") for every argument after
// it, so a request of many small arguments is re-parsed O(log n) times, not
// once per read. A server that waits for Need bytes sees a protocol error
// in those bytes only when they have all arrived; they are at most what a
// valid request of the announced shape would occupy.
func (p *Parser) Need() int { return p.need }

// ParseCommand is the package function ParseCommand with p's limits, except
// that an inline argument which had to be unescaped is written into a block
// the Parser owns (4 KiB or more, allocated when the previous one is full)
// instead of into memory allocated for that command alone. The Parser never
// writes to bytes it has handed out, so the lifetime rules are the same.
func (p *Parser) ParseCommand(buf []byte, dst [][]byte) (args [][]byte, n int, err error) {
	lim := p.Limits.orDefaults()
	args, n, p.need, err = parseCommand(buf, dst, &lim, &p.arena, arenaChunk)
	return args, n, err
}

// ParseCommand parses one complete request at the start of buf, a multibulk
// command ("*<n>\r\n" then n times "$<len>\r\n<bytes>\r\n") or, when buf does
// not start with '*', an inline command (one line, split on blanks with
// quoting). It appends the arguments to dst and returns the extended slice
// and the number of bytes consumed.
//
// Arguments are sub-slices of buf, not copies, and stay valid while buf's
// bytes are not overwritten. The exception is an inline argument that
// contained quotes: it is unescaped into newly allocated memory (Parser
// reuses a block instead), which nothing else ever writes. Arguments have
// their capacity clipped to their length, so appending to one cannot
// overwrite buf.
//
// An empty request ("*0\r\n", "*-1\r\n", a blank inline line) consumes n > 0
// bytes and appends nothing: servers skip it, as Redis does.
//
// If buf holds only a prefix of a request, ParseCommand returns dst
// unchanged, n == 0 and ErrIncomplete; Parser.Need tells how many bytes
// are worth waiting for. Malformed input returns a *ProtocolError whose
// message is the one Redis 7 sends; the connection cannot continue.
//
// ParseCommand allocates nothing when dst has room for the arguments and no
// inline argument needs unescaping. It never allocates memory according to
// a length it has read before the bytes that length announces are in buf.
func ParseCommand(buf []byte, dst [][]byte, lim Limits) (args [][]byte, n int, err error) {
	lim = lim.orDefaults()
	var arena []byte
	args, n, _, err = parseCommand(buf, dst, &lim, &arena, 0)
	return args, n, err
}

// parseCommand returns the arguments, the bytes consumed, and the Need hint.
// lim has its defaults applied. Unescaped inline arguments go into *arena,
// which is replaced by a fresh block of at least chunk bytes when full.
func parseCommand(buf []byte, dst [][]byte, lim *Limits, arena *[]byte, chunk int) ([][]byte, int, int, error) {
	if len(buf) == 0 {
		return dst, 0, 1, ErrIncomplete
	}
	if buf[0] != '*' {
		return parseInline(buf, dst, lim, arena, chunk)
	}
	return parseMultibulk(buf, dst, lim)
}

func parseMultibulk(buf []byte, dst [][]byte, lim *Limits) ([][]byte, int, int, error) {
	count, pos, st := header(buf, 0, '*')
	switch st {
	case hdrOK:
	case hdrIncomplete:
		return dst, 0, len(buf) + 1, ErrIncomplete
	case hdrTooBig:
		return dst, 0, 0, protoErr(msgTooBigMbulk)
	default:
		return dst, 0, 0, protoErr(msgInvalidMultibulk)
	}
	if count > int64(lim.MaxArgs) {
		return dst, 0, 0, protoErr(msgInvalidMultibulk)
	}
	if count <= 0 {
		return dst, pos, 0, nil
	}
	base := len(dst)
	for left := int(count); left > 0; left-- {
		start := pos
		l, next, st := header(buf, pos, '$')
		switch st {
		case hdrOK:
		case hdrIncomplete:
			need := max(satAdd(start, satMul(minBulkArg, left)),
				satAdd(len(buf)+1, satMul(minBulkArg, left-1)))
			return dst[:base], 0, need, ErrIncomplete
		case hdrTooBig:
			return dst[:base], 0, 0, protoErr(msgTooBigBulk)
		case hdrBadType:
			return dst[:base], 0, 0, expectedDollar(buf[start])
		default:
			return dst[:base], 0, 0, protoErr(msgInvalidBulk)
		}
		if l < 0 || l > int64(lim.MaxBulk) {
			return dst[:base], 0, 0, protoErr(msgInvalidBulk)
		}
		pos = next
		size := int(l) // fits: l <= MaxBulk, an int
		if len(buf)-pos-2 < size {
			need := satAdd(satAdd(pos, satAdd(size, 2)), satMul(minBulkArg, left-1))
			return dst[:base], 0, need, ErrIncomplete
		}
		end := pos + size
		if buf[end] != '\r' || buf[end+1] != '\n' {
			return dst[:base], 0, 0, protoErr(msgBulkCRLF)
		}
		dst = append(dst, buf[pos:end:end])
		pos = end + 2
	}
	return dst, pos, 0, nil
}

type hdrStatus uint8

const (
	hdrOK hdrStatus = iota
	hdrIncomplete
	hdrTooBig    // no CR within maxHeaderLine bytes
	hdrBadType   // the line does not start with the expected byte
	hdrBadNumber // not an integer as Redis's string2ll reads one, or CR not followed by LF
)

// header reads the line "<typ><integer>\r\n" at buf[pos:] and returns the
// integer and the position after the line. Like Redis, it first looks for
// the CR (waiting up to maxHeaderLine bytes for it), then checks the type
// byte, then the number.
func header(buf []byte, pos int, typ byte) (int64, int, hdrStatus) {
	// Fast path: a short positive decimal without leading zero, directly
	// followed by CRLF.
	if i := pos + 1; i < len(buf) && buf[pos] == typ {
		if c := buf[i]; c >= '1' && c <= '9' {
			v := int64(c - '0')
			for i++; i < len(buf) && i-pos <= 18; i++ {
				c = buf[i]
				if c < '0' || c > '9' {
					break
				}
				v = v*10 + int64(c-'0')
			}
			if i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n' {
				return v, i + 2, hdrOK
			}
		}
	}
	return headerSlow(buf, pos, typ)
}

func headerSlow(buf []byte, pos int, typ byte) (int64, int, hdrStatus) {
	rest := buf[pos:]
	window := rest
	if len(window) > maxHeaderLine+1 {
		window = window[:maxHeaderLine+1]
	}
	cr := bytes.IndexByte(window, '\r')
	if cr < 0 {
		if len(rest) > maxHeaderLine {
			return 0, 0, hdrTooBig
		}
		return 0, 0, hdrIncomplete
	}
	if cr+1 >= len(rest) {
		return 0, 0, hdrIncomplete
	}
	if rest[0] != typ {
		return 0, 0, hdrBadType
	}
	if rest[cr+1] != '\n' {
		return 0, 0, hdrBadNumber
	}
	v, ok := parseInt(rest[1:cr])
	if !ok {
		return 0, 0, hdrBadNumber
	}
	return v, pos + cr + 2, hdrOK
}

// parseInt reads a decimal int64 the way Redis's string2ll does: an
// optional '-', no '+', no leading zeros, no blanks, fewer than 21 bytes.
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) >= 21 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	if b[0] < '1' || b[0] > '9' {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return int64(-v), true
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}

// satAdd and satMul saturate at math.MaxInt; their operands are >= 0.
func satAdd(a, b int) int {
	if a > math.MaxInt-b {
		return math.MaxInt
	}
	return a + b
}

func satMul(a, b int) int {
	if a != 0 && b > math.MaxInt/a {
		return math.MaxInt
	}
	return a * b
}
