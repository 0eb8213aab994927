package resp

import (
	"errors"
	"io"
	"slices"
)

// ErrExtraBytes is returned by ReadReply when bytes follow the reply: the
// connection is out of step with its requests.
var ErrExtraBytes = protoErr("Protocol error: bytes after the reply")

// ReadReply reads one reply from rd, for a caller that sent one command and
// waits for its answer, and returns it with its encoding, which is buf
// (reused if it has room) grown by what was read. It reads no more than the
// reply, bounded by lim (MaxBulk also bounds the whole reply); bytes after
// it fail with ErrExtraBytes. The reply's slices alias the encoding.
func ReadReply(rd io.Reader, buf []byte, lim Limits) (Reply, []byte, error) {
	p := Parser{Limits: lim}
	bound := p.Limits.orDefaults().MaxBulk
	buf = buf[:0]
	for {
		if len(buf) > 0 && p.Need() <= len(buf) {
			r, size, err := p.ParseReply(buf)
			switch {
			case err == nil && size != len(buf):
				return Reply{}, buf, ErrExtraBytes
			case err == nil:
				return r, buf, nil
			case !errors.Is(err, ErrIncomplete):
				return Reply{}, buf, err
			}
		}
		if len(buf) > bound {
			return Reply{}, buf, protoErr("Protocol error: reply too large")
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(16<<10, len(buf)))
		}
		k, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+k]
		if err != nil && k == 0 {
			return Reply{}, buf, err
		}
	}
}
