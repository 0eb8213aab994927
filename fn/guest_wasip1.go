//go:build wasip1

package fn

import (
	"bytes"
	"errors"
	"unsafe"

	"github.com/trellisdb/trellis/fn/abi"
)

// Buffers shared with the host. They are package variables so that the
// garbage collector (which does not move objects) keeps them alive while the
// host holds their addresses.
var (
	inbuf   = make([]byte, 0, 256) // argument block, written by the host after trellis_alloc
	outbuf  = make([]byte, 0, 256) // reply block of the last trellis_call
	scratch = make([]byte, 4<<10)  // host-call replies that fit
	argv    [][]byte               // the current call's arguments, aliasing inbuf
)

// guestCtx is the Ctx of every call; a package variable, as allocating costs
// more inside the sandbox than anything else the entry point does.
var guestCtx = &Ctx{host: wasmHost{}}

//go:wasmexport trellis_abi
func trellisABI() uint32 { return abi.Version }

//go:wasmexport trellis_alloc
func trellisAlloc(size uint32) uint32 {
	if uint64(cap(inbuf)) < uint64(size) {
		inbuf = make([]byte, size)
	}
	inbuf = inbuf[:size]
	return addr(inbuf[:cap(inbuf)])
}

//go:wasmexport trellis_call
func trellisCall(ptr, n uint32) uint64 {
	if cap(outbuf) > 64<<10 {
		outbuf = make([]byte, 0, 256) // let a large previous reply go
	}
	var res []byte
	var err error
	if ptr != addr(inbuf[:cap(inbuf)]) || uint64(n) > uint64(cap(inbuf)) {
		err = errors.New("fn: argument block outside the trellis_alloc buffer")
	} else {
		argv, err = abi.DecodeArgs(argv, inbuf[:n])
		if err == nil {
			res, err = invoke(guestCtx, argv)
		}
	}
	if err != nil {
		outbuf = append(append(outbuf[:0], abi.StatusError), err.Error()...)
	} else {
		outbuf = append(append(outbuf[:0], abi.StatusOK), res...)
	}
	return abi.Pack(addr(outbuf), uint32(len(outbuf)))
}

//go:wasmimport trellis kv_get
func kvGet(kptr unsafe.Pointer, klen uint32, bptr unsafe.Pointer, bcap uint32) uint64

//go:wasmimport trellis kv_put
func kvPut(kptr unsafe.Pointer, klen uint32, vptr unsafe.Pointer, vlen uint32, bptr unsafe.Pointer, bcap uint32) uint64

//go:wasmimport trellis send
func send(tptr unsafe.Pointer, tlen uint32, mptr unsafe.Pointer, mlen uint32, bptr unsafe.Pointer, bcap uint32) uint64

//go:wasmimport trellis recv
func recv(bptr unsafe.Pointer, bcap uint32) uint64

//go:wasmimport trellis log
func hostLog(mptr unsafe.Pointer, mlen uint32)

//go:wasmimport trellis take
func take(bptr unsafe.Pointer, blen uint32) uint32

// wasmHost is the Host of a function running in the executor.
type wasmHost struct{}

func (wasmHost) Get(key string) ([]byte, bool, error) {
	sp, sc := scratchArea()
	status, payload, err := reply(kvGet(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)), sp, sc))
	switch {
	case err != nil:
		return nil, false, err
	case status == abi.StatusNotFound:
		return nil, false, nil
	}
	return payload, true, nil
}

func (wasmHost) Put(key string, value []byte) error {
	sp, sc := scratchArea()
	_, _, err := reply(kvPut(unsafe.Pointer(unsafe.StringData(key)), uint32(len(key)),
		unsafe.Pointer(unsafe.SliceData(value)), uint32(len(value)), sp, sc))
	return err
}

func (wasmHost) Send(to string, msg []byte) error {
	sp, sc := scratchArea()
	_, _, err := reply(send(unsafe.Pointer(unsafe.StringData(to)), uint32(len(to)),
		unsafe.Pointer(unsafe.SliceData(msg)), uint32(len(msg)), sp, sc))
	return err
}

func (wasmHost) Recv() ([]byte, error) {
	sp, sc := scratchArea()
	_, payload, err := reply(recv(sp, sc))
	return payload, err
}

func (wasmHost) Log(msg string) {
	hostLog(unsafe.Pointer(unsafe.StringData(msg)), uint32(len(msg)))
}

func scratchArea() (unsafe.Pointer, uint32) {
	return unsafe.Pointer(unsafe.SliceData(scratch)), uint32(len(scratch))
}

// reply decodes a host call's packed (status, length) and fetches the
// payload, from scratch or with take. The payload is a fresh slice.
func reply(r uint64) (status uint32, payload []byte, err error) {
	status, n := abi.Unpack(r)
	if uint64(n) <= uint64(len(scratch)) {
		payload = bytes.Clone(scratch[:n])
	} else {
		payload = make([]byte, n)
		if got := take(unsafe.Pointer(unsafe.SliceData(payload)), n); got != n {
			return 0, nil, errors.New("fn: host reply lost")
		}
	}
	switch status {
	case abi.StatusOK, abi.StatusNotFound:
		return status, payload, nil
	case abi.StatusError:
		return status, nil, errors.New(string(payload))
	}
	return status, nil, errors.New("fn: unknown host reply status")
}

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }
