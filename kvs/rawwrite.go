package kvs

import (
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"
)

// writeReply writes out to c. When nothing is queued on c, it writes to the
// socket directly with a raw write(2): the socket is non-blocking, so the
// call cannot block, and skipping the runtime's system-call bookkeeping
// saves measurable time per reply on unpipelined loads. Whatever the raw
// write leaves (a full socket buffer, an error) goes through c.Write, which
// queues it or closes the connection as gnet does.
func writeReply(c gnet.Conn, out []byte) {
	if len(out) == 0 {
		return
	}
	if c.OutboundBuffered() == 0 {
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, uintptr(c.Fd()), uintptr(unsafe.Pointer(&out[0])), uintptr(len(out)))
		if errno == 0 {
			out = out[n:]
			if len(out) == 0 {
				return
			}
		}
	}
	_, _ = c.Write(out)
}
