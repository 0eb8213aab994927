package wire

import (
	"errors"
	"fmt"
	"strings"

	"github.com/trellisdb/trellis/pack"
)

// BeginResult starts a successful response frame for request id: it appends
// the frame header placeholder and [id, 0, and returns the frame's start. The
// caller appends exactly one msgpack value, the result, and calls EndFrame.
func BeginResult(b []byte, id uint64) ([]byte, int) {
	b, start := beginFrame(b)
	b = pack.AppendArrayHeader(b, 3)
	b = pack.AppendUint(b, id)
	b = append(b, byte(CodeOK))
	return b, start
}

// EndFrame completes the frame that starts at start.
func EndFrame(b []byte, start int) []byte { return endFrame(b, start) }

// AppendNilResult appends a successful response with a nil result.
func AppendNilResult(b []byte, id uint64) []byte {
	b, start := BeginResult(b, id)
	return EndFrame(pack.AppendNil(b), start)
}

// AppendBytesResult appends a successful response whose result is v (bin).
func AppendBytesResult(b []byte, id uint64, v []byte) []byte {
	b, start := BeginResult(b, id)
	return EndFrame(pack.AppendBytes(b, v), start)
}

// AppendIntResult appends a successful response whose result is n.
func AppendIntResult(b []byte, id uint64, n int64) []byte {
	b, start := BeginResult(b, id)
	return EndFrame(pack.AppendInt(b, n), start)
}

// AppendError appends an error response for err: its code (CodeOf), its
// message and, for a *Error with CodeWrongOwner, its epoch.
func AppendError(b []byte, id uint64, err error) []byte {
	code, msg, epoch := describe(err)
	b, start := beginFrame(b)
	if code == CodeWrongOwner {
		b = pack.AppendArrayHeader(b, 4)
	} else {
		b = pack.AppendArrayHeader(b, 3)
	}
	b = pack.AppendUint(b, id)
	b = append(b, byte(code))
	b = pack.AppendString(b, msg)
	if code == CodeWrongOwner {
		b = pack.AppendUint(b, epoch)
	}
	return endFrame(b, start)
}

func describe(err error) (Code, string, uint64) {
	var we *Error
	if errors.As(err, &we) {
		return we.Code, we.Msg, we.Epoch
	}
	code := CodeOf(err)
	// The receiving side shows the code's name before the message (see
	// Error.Error), so a message that starts with it would repeat it.
	msg := strings.TrimPrefix(err.Error(), code.String()+": ")
	return code, msg, 0
}

// Batch results are arrays of items. An item is [code, result] on success
// (result: nil, bin or int) and [code, message] on failure.

// AppendItemNil appends a successful item with a nil result.
func AppendItemNil(b []byte) []byte { return append(b, 0x92, byte(CodeOK), 0xc0) }

// AppendItemBytes appends a successful item whose result is v.
func AppendItemBytes(b []byte, v []byte) []byte {
	return pack.AppendBytes(append(b, 0x92, byte(CodeOK)), v)
}

// AppendItemInt appends a successful item whose result is n.
func AppendItemInt(b []byte, n int64) []byte {
	return pack.AppendInt(append(b, 0x92, byte(CodeOK)), n)
}

// AppendItemError appends a failed item for err.
func AppendItemError(b []byte, err error) []byte {
	code, msg, _ := describe(err)
	return pack.AppendString(append(b, 0x92, byte(code)), msg)
}

// Response is a decoded response. Result aliases the frame.
type Response struct {
	ID    uint64
	Code  Code
	Msg   string // error message (Code != CodeOK)
	Epoch uint64 // ring epoch (CodeWrongOwner)
	// Result is the msgpack encoding of the result (Code == CodeOK). Use the
	// accessors to read it.
	Result []byte
}

// Decode decodes a response body.
func (r *Response) Decode(body []byte, lim Limits) error {
	*r = Response{}
	if err := pack.Validate(body, lim.maxDepth()); err != nil {
		return fmt.Errorf("%w: response: %w", ErrBadRequest, err)
	}
	rd := pack.NewReader(body)
	n, err := rd.ArrayLen()
	if err != nil || n < 3 || n > 4 {
		return fmt.Errorf("%w: response is not an array of 3 or 4", ErrBadRequest)
	}
	if r.ID, err = rd.Uint(); err != nil {
		return fmt.Errorf("%w: response id: %w", ErrBadRequest, err)
	}
	c, err := rd.Uint()
	if err != nil || c > 255 {
		return fmt.Errorf("%w: response code", ErrBadRequest)
	}
	r.Code = Code(c)
	if r.Code == CodeOK {
		if n != 3 {
			return fmt.Errorf("%w: successful response with %d elements", ErrBadRequest, n)
		}
		r.Result, err = rd.Raw()
		return err
	}
	if r.Msg, err = rd.String(); err != nil {
		return fmt.Errorf("%w: response message: %w", ErrBadRequest, err)
	}
	if n == 4 {
		if r.Epoch, err = rd.Uint(); err != nil {
			return fmt.Errorf("%w: response epoch: %w", ErrBadRequest, err)
		}
	}
	return nil
}

// Err returns the response's error as an *Error, or nil if it succeeded.
func (r *Response) Err() error {
	if r.Code == CodeOK {
		return nil
	}
	return &Error{Code: r.Code, Msg: r.Msg, Epoch: r.Epoch}
}

// Bytes returns a bin or str result (nil for a nil result).
func (r *Response) Bytes() ([]byte, error) {
	if err := r.Err(); err != nil {
		return nil, err
	}
	rd := pack.NewReader(r.Result)
	if rd.Nil() {
		return nil, nil
	}
	return rd.Bytes()
}

// Int returns an integer result.
func (r *Response) Int() (int64, error) {
	if err := r.Err(); err != nil {
		return 0, err
	}
	rd := pack.NewReader(r.Result)
	return rd.Int()
}

// Item is one result of a batch operation. Value aliases the frame.
type Item struct {
	Code  Code
	Msg   string
	Value []byte // bin result, nil if the result was nil or an int
	Int   int64  // int result
}

// Err returns the item's error, or nil.
func (it Item) Err() error {
	if it.Code == CodeOK {
		return nil
	}
	return &Error{Code: it.Code, Msg: it.Msg}
}

// Items decodes a batch result into dst (reusing its capacity).
func (r *Response) Items(dst []Item) ([]Item, error) {
	if err := r.Err(); err != nil {
		return dst[:0], err
	}
	dst = dst[:0]
	rd := pack.NewReader(r.Result)
	n, err := rd.ArrayLen()
	if err != nil {
		return dst, fmt.Errorf("%w: batch result: %w", ErrBadRequest, err)
	}
	for range n {
		var it Item
		m, err := rd.ArrayLen()
		if err != nil || m != 2 {
			return dst, fmt.Errorf("%w: batch item", ErrBadRequest)
		}
		c, err := rd.Uint()
		if err != nil || c > 255 {
			return dst, fmt.Errorf("%w: batch item code", ErrBadRequest)
		}
		it.Code = Code(c)
		switch {
		case it.Code != CodeOK:
			it.Msg, err = rd.String()
		case rd.Nil():
		case rd.Peek() == pack.KindInt:
			it.Int, err = rd.Int()
		default:
			it.Value, err = rd.Bytes()
		}
		if err != nil {
			return dst, fmt.Errorf("%w: batch item: %w", ErrBadRequest, err)
		}
		dst = append(dst, it)
	}
	return dst, nil
}
