package wasm

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/tetratelabs/wazero/api"

	"github.com/trellisdb/trellis/fn/abi"
)

// call is the state of one guest call that the host functions need. It
// travels in the context given to wazero, because the host module is shared
// by every instance.
type call struct {
	host    Host
	max     int    // Config.MaxResult
	pending []byte // a reply that did not fit the guest's buffer, until take
}

type callKey struct{}

// errABI marks a guest that broke the ABI (an address outside its memory);
// host functions panic with it, which traps the instance.
var errABI = errors.New("ABI violation")

// Errors of a refusingHost.
var (
	errNoCall = errors.New("host calls are not available during initialisation")
	errNoHost = errors.New("this call has no host")
)

// refusingHost is the Host during instantiation, and of a Call without one:
// it refuses everything.
type refusingHost struct{ err error }

func (h refusingHost) Get(context.Context, []byte) ([]byte, bool, error) { return nil, false, h.err }
func (h refusingHost) Put(context.Context, []byte, []byte) error         { return h.err }
func (h refusingHost) Send(context.Context, string, []byte) error        { return h.err }
func (h refusingHost) Recv(context.Context) ([]byte, error)              { return nil, h.err }
func (h refusingHost) Log(string)                                        {}

func callFrom(ctx context.Context) *call {
	c, _ := ctx.Value(callKey{}).(*call)
	if c == nil {
		c = &call{host: refusingHost{errNoCall}, max: defaultMaxResult}
	}
	return c
}

// memory is the part of api.Memory the decoders use, so that they can be
// tested and fuzzed without an instance.
type memory interface {
	Read(offset, byteCount uint32) ([]byte, bool)
	Write(offset uint32, v []byte) bool
}

// errTooLong reports a guest length above the limit; not an ABI violation.
type errTooLong struct {
	what   string
	n, max uint32
}

func (e errTooLong) Error() string {
	return fmt.Sprintf("%s of %d bytes exceeds the limit of %d", e.what, e.n, e.max)
}

// readGuest copies [ptr, ptr+n) out of mem. A length above max is an
// errTooLong; a range outside mem wraps errABI.
func readGuest(mem memory, ptr, n uint32, max int, what string) ([]byte, error) {
	if uint64(n) > uint64(max) {
		return nil, errTooLong{what, n, uint32(max)}
	}
	b, ok := mem.Read(ptr, n)
	if !ok {
		return nil, fmt.Errorf("%w: %s at [%d, %d) is outside guest memory", errABI, what, ptr, uint64(ptr)+uint64(n))
	}
	return append([]byte(nil), b...), nil
}

// readReply decodes trellis_call's packed result: the reply block's address
// and length, then its status byte. payload is a copy.
func readReply(mem memory, packed uint64, max int) (status byte, payload []byte, err error) {
	ptr, n := abi.Unpack(packed)
	if n == 0 {
		return 0, nil, fmt.Errorf("%w: empty reply block", errABI)
	}
	b, err := readGuest(mem, ptr, n, max+1, "result")
	if err != nil {
		return 0, nil, err
	}
	switch b[0] {
	case abi.StatusOK, abi.StatusError:
		return b[0], b[1:], nil
	}
	return 0, nil, fmt.Errorf("%w: reply status %d", errABI, b[0])
}

// must panics with an ABI violation, trapping the instance; other errors
// are returned for the guest.
func must(err error) error {
	if errors.Is(err, errABI) {
		panic(err)
	}
	return err
}

// reply hands a host call's outcome to the guest: payload into [bptr,
// bptr+bcap) if it fits, else held for take. It returns the packed status
// and length.
func (c *call) reply(mem memory, status uint32, payload []byte, bptr, bcap uint32) uint64 {
	if uint64(len(payload)) > math.MaxInt32 {
		status, payload = abi.StatusError, []byte("reply too large")
	}
	n := uint32(len(payload))
	c.pending = nil
	if n <= bcap {
		if !mem.Write(bptr, payload) {
			panic(fmt.Errorf("%w: reply buffer at [%d, %d) is outside guest memory", errABI, bptr, uint64(bptr)+uint64(n)))
		}
	} else {
		c.pending = payload
	}
	return abi.Pack(status, n)
}

// replyErr is reply for a failed host call. Messages are cut to 64 KiB.
func (c *call) replyErr(mem memory, err error, bptr, bcap uint32) uint64 {
	msg := err.Error()
	if len(msg) > 64<<10 {
		msg = msg[:64<<10]
	}
	return c.reply(mem, abi.StatusError, []byte(msg), bptr, bcap)
}

func u32(v uint64) uint32 { return api.DecodeU32(v) }

func hostGet(ctx context.Context, mod api.Module, stack []uint64) {
	c, mem := callFrom(ctx), mod.Memory()
	bptr, bcap := u32(stack[2]), u32(stack[3])
	key, err := readGuest(mem, u32(stack[0]), u32(stack[1]), c.max, "key")
	if must(err) != nil {
		stack[0] = c.replyErr(mem, err, bptr, bcap)
		return
	}
	v, ok, err := c.host.Get(ctx, key)
	switch {
	case err != nil:
		stack[0] = c.replyErr(mem, err, bptr, bcap)
	case !ok:
		stack[0] = c.reply(mem, abi.StatusNotFound, nil, bptr, bcap)
	default:
		stack[0] = c.reply(mem, abi.StatusOK, v, bptr, bcap)
	}
}

func hostPut(ctx context.Context, mod api.Module, stack []uint64) {
	c, mem := callFrom(ctx), mod.Memory()
	bptr, bcap := u32(stack[4]), u32(stack[5])
	key, err := readGuest(mem, u32(stack[0]), u32(stack[1]), c.max, "key")
	var v []byte
	if err == nil {
		v, err = readGuest(mem, u32(stack[2]), u32(stack[3]), c.max, "value")
	}
	if must(err) == nil {
		err = c.host.Put(ctx, key, v)
	}
	if err != nil {
		stack[0] = c.replyErr(mem, err, bptr, bcap)
		return
	}
	stack[0] = c.reply(mem, abi.StatusOK, nil, bptr, bcap)
}

func hostSend(ctx context.Context, mod api.Module, stack []uint64) {
	c, mem := callFrom(ctx), mod.Memory()
	bptr, bcap := u32(stack[4]), u32(stack[5])
	to, err := readGuest(mem, u32(stack[0]), u32(stack[1]), c.max, "function name")
	var msg []byte
	if err == nil {
		msg, err = readGuest(mem, u32(stack[2]), u32(stack[3]), c.max, "message")
	}
	if must(err) == nil {
		err = c.host.Send(ctx, string(to), msg)
	}
	if err != nil {
		stack[0] = c.replyErr(mem, err, bptr, bcap)
		return
	}
	stack[0] = c.reply(mem, abi.StatusOK, nil, bptr, bcap)
}

func hostRecv(ctx context.Context, mod api.Module, stack []uint64) {
	c, mem := callFrom(ctx), mod.Memory()
	bptr, bcap := u32(stack[0]), u32(stack[1])
	msg, err := c.host.Recv(ctx)
	if err != nil {
		stack[0] = c.replyErr(mem, err, bptr, bcap)
		return
	}
	stack[0] = c.reply(mem, abi.StatusOK, msg, bptr, bcap)
}

func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	msg, err := readGuest(mod.Memory(), u32(stack[0]), u32(stack[1]), c.max, "log line")
	if must(err) != nil {
		msg = []byte(err.Error())
	}
	c.host.Log(string(msg))
}

func hostTake(ctx context.Context, mod api.Module, stack []uint64) {
	c := callFrom(ctx)
	bptr, blen := u32(stack[0]), u32(stack[1])
	p := c.pending
	c.pending = nil
	if p == nil || uint64(len(p)) != uint64(blen) {
		stack[0] = 0
		return
	}
	if !mod.Memory().Write(bptr, p) {
		panic(fmt.Errorf("%w: take buffer at [%d, %d) is outside guest memory", errABI, bptr, uint64(bptr)+uint64(blen)))
	}
	stack[0] = uint64(blen)
}
