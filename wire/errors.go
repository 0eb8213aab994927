package wire

import (
	"errors"
	"fmt"
)

// Code is the status of a response or of one item of a batch response.
// The values are part of the protocol.
type Code uint8

// Status codes.
const (
	CodeOK           Code = 0
	CodeNotFound     Code = 1  // the key holds no value
	CodeWrongOwner   Code = 2  // this node is not responsible for the key; the response carries the ring epoch
	CodeTypeMismatch Code = 3  // the key holds a lattice of another type; nothing was changed
	CodeTooLarge     Code = 4  // a frame, key or value exceeds a configured limit
	CodeBadRequest   Code = 5  // malformed request, unknown operation, bad argument
	CodeUnauthorized Code = 6  // the connection has not authenticated
	CodeUnavailable  Code = 7  // the server cannot serve now (shutting down, overloaded, too many connections)
	CodeTimeout      Code = 8  // the operation's deadline passed
	CodeInternal     Code = 9  // a bug or an unexpected condition on the server
	CodeFunction     Code = 10 // a function failed: it returned an error, trapped or overran its deadline
	CodeConflict     Code = 11 // a repeatable-read call saw two versions of one key (the coordinator re-runs it)
)

// Sentinel errors, one per non-OK code, for errors.Is.
var (
	ErrNotFound     = errors.New("not found")
	ErrWrongOwner   = errors.New("wrong owner")
	ErrTypeMismatch = errors.New("lattice type mismatch")
	ErrTooLarge     = errors.New("too large")
	ErrBadRequest   = errors.New("bad request")
	ErrUnauthorized = errors.New("unauthorized")
	ErrUnavailable  = errors.New("unavailable")
	ErrTimeout      = errors.New("timeout")
	ErrInternal     = errors.New("internal error")
	ErrFunction     = errors.New("function failed")
	ErrConflict     = errors.New("conflict")
)

var sentinels = [...]error{
	CodeNotFound:     ErrNotFound,
	CodeWrongOwner:   ErrWrongOwner,
	CodeTypeMismatch: ErrTypeMismatch,
	CodeTooLarge:     ErrTooLarge,
	CodeBadRequest:   ErrBadRequest,
	CodeUnauthorized: ErrUnauthorized,
	CodeUnavailable:  ErrUnavailable,
	CodeTimeout:      ErrTimeout,
	CodeInternal:     ErrInternal,
	CodeFunction:     ErrFunction,
	CodeConflict:     ErrConflict,
}

// Sentinel returns the sentinel error for c, or nil for CodeOK and unknown
// codes.
func (c Code) Sentinel() error {
	if int(c) < len(sentinels) {
		return sentinels[c]
	}
	return nil
}

func (c Code) String() string {
	if c == CodeOK {
		return "ok"
	}
	if s := c.Sentinel(); s != nil {
		return s.Error()
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Error is an error reported by a server: its code, its message and, for
// CodeWrongOwner, the server's ring epoch. errors.Is(err, ErrNotFound) and
// the like match it by code.
type Error struct {
	Code  Code
	Msg   string
	Epoch uint64
}

func (e *Error) Error() string {
	if e.Msg == "" {
		return e.Code.String()
	}
	return e.Code.String() + ": " + e.Msg
}

// Is reports whether target is the sentinel of e's code.
func (e *Error) Is(target error) bool {
	s := e.Code.Sentinel()
	return s != nil && s == target
}

// CodeOf maps err to the code a server reports for it: the code of a wrapped
// *Error or sentinel, CodeOK for nil, CodeInternal for anything else.
func CodeOf(err error) Code {
	if err == nil {
		return CodeOK
	}
	var we *Error
	if errors.As(err, &we) {
		return we.Code
	}
	for c, s := range sentinels {
		if s != nil && errors.Is(err, s) {
			return Code(c)
		}
	}
	return CodeInternal
}

// Errorf returns an *Error with code c and a formatted message.
func Errorf(c Code, format string, args ...any) *Error {
	return &Error{Code: c, Msg: fmt.Sprintf(format, args...)}
}
