package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderLen is the length of a frame header: a big-endian uint32 body length.
const HeaderLen = 4

// Default limits.
const (
	DefaultMaxFrame = 16 << 20 // bytes of one frame body
	DefaultMaxDepth = 16       // msgpack nesting of one body
)

// Limits bound what a peer may send. The zero value means the defaults.
type Limits struct {
	// MaxFrame is the largest accepted frame body in bytes. Default 16 MiB.
	MaxFrame int
	// MaxDepth is the deepest accepted msgpack nesting in a body. Default 16.
	MaxDepth int
}

func (l Limits) maxFrame() int {
	if l.MaxFrame <= 0 {
		return DefaultMaxFrame
	}
	return l.MaxFrame
}

func (l Limits) maxDepth() int {
	if l.MaxDepth <= 0 {
		return DefaultMaxDepth
	}
	return l.MaxDepth
}

// ErrIncomplete reports that a buffer holds only part of a frame.
var ErrIncomplete = errors.New("incomplete frame")

// SplitFrame returns the body of the first frame in buf and the number of
// bytes the frame takes. If buf holds only part of a frame, it returns
// ErrIncomplete and, in n, the total number of bytes the frame needs (or
// HeaderLen if the header itself is incomplete). A header claiming more than
// lim.MaxFrame returns an error wrapping ErrTooLarge, whatever follows.
func SplitFrame(buf []byte, lim Limits) (body []byte, n int, err error) {
	if len(buf) < HeaderLen {
		return nil, HeaderLen, ErrIncomplete
	}
	size := binary.BigEndian.Uint32(buf)
	if uint64(size) > uint64(lim.maxFrame()) {
		return nil, 0, fmt.Errorf("%w: frame of %d bytes exceeds the limit of %d", ErrTooLarge, size, lim.maxFrame())
	}
	n = HeaderLen + int(size)
	if len(buf) < n {
		return nil, n, ErrIncomplete
	}
	return buf[HeaderLen:n:n], n, nil
}

// beginFrame appends a placeholder header and returns the offset of the
// frame's start, for endFrame to fill in.
func beginFrame(b []byte) ([]byte, int) {
	return append(b, 0, 0, 0, 0), len(b)
}

// endFrame writes the body length of the frame that starts at start.
func endFrame(b []byte, start int) []byte {
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-HeaderLen))
	return b
}
