package resp

import "strconv"

// The Append functions encode RESP2 replies and requests onto b and return
// the extended slice. They allocate only when b lacks capacity.

// AppendSimple appends the simple string "+s\r\n". CR and LF in s become
// spaces, as in Redis's addReplyStatusFormat, so the reply stays one line.
func AppendSimple(b []byte, s string) []byte {
	return appendLine(append(b, '+'), s)
}

// AppendError appends the error "-msg\r\n". msg starts with its error code,
// as in "ERR unknown command" or "WRONGTYPE Operation against a key holding
// the wrong kind of value". CR and LF in msg become spaces.
func AppendError(b []byte, msg string) []byte {
	return appendLine(append(b, '-'), msg)
}

func appendLine(b []byte, s string) []byte {
	start := len(b)
	b = append(b, s...)
	for i := start; i < len(b); i++ {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = ' '
		}
	}
	return append(b, '\r', '\n')
}

// AppendInt appends the integer reply ":n\r\n".
func AppendInt(b []byte, n int64) []byte {
	b = strconv.AppendInt(append(b, ':'), n, 10)
	return append(b, '\r', '\n')
}

// AppendBulk appends the bulk string "$<len>\r\n<p>\r\n". A nil p is the
// empty string, not the null bulk string (see AppendNull).
func AppendBulk(b []byte, p []byte) []byte {
	b = appendBulkHeader(b, len(p))
	b = append(b, p...)
	return append(b, '\r', '\n')
}

// AppendBulkString is AppendBulk for a string.
func AppendBulkString(b []byte, s string) []byte {
	b = appendBulkHeader(b, len(s))
	b = append(b, s...)
	return append(b, '\r', '\n')
}

func appendBulkHeader(b []byte, n int) []byte {
	b = strconv.AppendInt(append(b, '$'), int64(n), 10)
	return append(b, '\r', '\n')
}

// AppendNull appends the null bulk string "$-1\r\n", Redis's reply for a
// missing key.
func AppendNull(b []byte) []byte { return append(b, "$-1\r\n"...) }

// AppendArrayHeader appends "*<n>\r\n"; the n elements follow. n must not
// be negative; use AppendNullArray for the null array.
func AppendArrayHeader(b []byte, n int) []byte {
	b = strconv.AppendInt(append(b, '*'), int64(n), 10)
	return append(b, '\r', '\n')
}

// AppendNullArray appends the null array "*-1\r\n".
func AppendNullArray(b []byte) []byte { return append(b, "*-1\r\n"...) }

// AppendCommand appends args as a multibulk request, the form every Redis
// client sends and ParseCommand reads.
func AppendCommand(b []byte, args ...[]byte) []byte {
	b = AppendArrayHeader(b, len(args))
	for _, a := range args {
		b = AppendBulk(b, a)
	}
	return b
}

// AppendCommandString is AppendCommand for strings.
func AppendCommandString(b []byte, args ...string) []byte {
	b = AppendArrayHeader(b, len(args))
	for _, a := range args {
		b = AppendBulkString(b, a)
	}
	return b
}
