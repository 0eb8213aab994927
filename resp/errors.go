package resp

import "errors"

// ErrIncomplete reports that the buffer holds only a prefix of a command or
// reply. The caller should read more bytes and call again with the same
// start; nothing was consumed.
var ErrIncomplete = errors.New("resp: incomplete input")

// ErrProtocol is matched (with errors.Is) by every *ProtocolError.
var ErrProtocol = errors.New("resp: protocol error")

// ProtocolError reports malformed input. The stream cannot be resynchronised:
// a server replies "-ERR " + Msg + "\r\n" and closes the connection, as Redis
// does.
type ProtocolError struct {
	// Msg is the text Redis sends after "ERR ", for example
	// "Protocol error: invalid bulk length". It never contains CR or LF.
	Msg string
}

// Error returns Msg.
func (e *ProtocolError) Error() string { return e.Msg }

// Is reports whether target is ErrProtocol.
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

// The texts Redis 7 sends for malformed requests.
const (
	msgInvalidMultibulk = "Protocol error: invalid multibulk length"
	msgInvalidBulk      = "Protocol error: invalid bulk length"
	msgTooBigMbulk      = "Protocol error: too big mbulk count string"
	msgTooBigBulk       = "Protocol error: too big bulk count string"
	msgTooBigInline     = "Protocol error: too big inline request"
	msgUnbalanced       = "Protocol error: unbalanced quotes in request"
	// Redis skips the two bytes after a bulk argument without looking at
	// them; this package insists they are CRLF (see doc.go).
	msgBulkCRLF = "Protocol error: expected CRLF after bulk argument"
)

// protoErr allocates: errors end the connection, so they are rare.
func protoErr(msg string) error { return &ProtocolError{Msg: msg} }

// expectedDollar formats Redis's "expected '$', got 'X'", with CR and LF
// mapped to spaces as Redis's addReplyErrorFormat does.
func expectedDollar(got byte) error {
	if got == '\r' || got == '\n' {
		got = ' '
	}
	return &ProtocolError{Msg: "Protocol error: expected '$', got '" + string([]byte{got}) + "'"}
}
