package wasm

import (
	"bytes"
	"errors"
	"testing"

	"github.com/trellisdb/trellis/fn/abi"
)

// sliceMemory is a guest memory backed by a byte slice.
type sliceMemory []byte

func (m sliceMemory) Read(off, n uint32) ([]byte, bool) {
	if uint64(off)+uint64(n) > uint64(len(m)) {
		return nil, false
	}
	return m[off : off+n : off+n], true
}

func (m sliceMemory) Write(off uint32, v []byte) bool {
	if uint64(off)+uint64(len(v)) > uint64(len(m)) {
		return false
	}
	copy(m[off:], v)
	return true
}

func TestReadReply(t *testing.T) {
	mem := sliceMemory("xx\x00okyy\x02boom")
	for _, tc := range []struct {
		packed  uint64
		status  byte
		payload string
		err     error
	}{
		{abi.Pack(2, 3), abi.StatusOK, "ok", nil},
		{abi.Pack(7, 5), abi.StatusError, "boom", nil},
		{abi.Pack(2, 1), abi.StatusOK, "", nil},
		{abi.Pack(0, 0), 0, "", errABI},                // empty block
		{abi.Pack(0, 2), 0, "", errABI},                // status 'x'
		{abi.Pack(8, 5), 0, "", errABI},                // past the end
		{abi.Pack(0xffffffff, 2), 0, "", errABI},       // wraps around
		{abi.Pack(0, 0xffffffff), 0, "", errTooLong{}}, // over the limit
	} {
		status, payload, err := readReply(mem, tc.packed, 8)
		var tl errTooLong
		switch {
		case tc.err == nil && (err != nil || status != tc.status || string(payload) != tc.payload):
			t.Errorf("readReply(%#x) = %d, %q, %v; want %d, %q", tc.packed, status, payload, err, tc.status, tc.payload)
		case tc.err == errABI && !errors.Is(err, errABI):
			t.Errorf("readReply(%#x) error = %v, want an ABI violation", tc.packed, err)
		case tc.err == (errTooLong{}) && !errors.As(err, &tl):
			t.Errorf("readReply(%#x) error = %v, want too long", tc.packed, err)
		}
	}
}

func TestReplyBuffers(t *testing.T) {
	mem := make(sliceMemory, 16)
	c := &call{max: 1 << 20}
	if got := c.reply(mem, abi.StatusOK, []byte("fits"), 4, 8); got != abi.Pack(abi.StatusOK, 4) || string(mem[4:8]) != "fits" || c.pending != nil {
		t.Errorf("reply that fits: %#x, memory %q, pending %q", got, mem, c.pending)
	}
	if got := c.reply(mem, abi.StatusError, []byte("too long for it"), 4, 8); got != abi.Pack(abi.StatusError, 15) || string(c.pending) != "too long for it" {
		t.Errorf("reply that does not fit: %#x, pending %q", got, c.pending)
	}
	defer func() {
		if err, _ := recover().(error); !errors.Is(err, errABI) {
			t.Errorf("reply into a buffer outside memory: recovered %v, want an ABI violation", err)
		}
	}()
	c.reply(mem, abi.StatusOK, []byte("x"), 16, 8)
}

// FuzzReadGuest checks the decoders of guest memory: they never panic, never
// return bytes from outside memory or above the limit, and copy what they
// return.
func FuzzReadGuest(f *testing.F) {
	f.Add([]byte("\x00ok"), uint64(3), 16)
	f.Add([]byte("\x02boom"), abi.Pack(0, 5), 16)
	f.Add([]byte("\x00"), abi.Pack(0xffffffff, 0xffffffff), 1<<20)
	f.Add(abi.AppendArgs(nil, [][]byte{[]byte("a")}), abi.Pack(1, 4), 0)
	f.Fuzz(func(t *testing.T, b []byte, packed uint64, max int) {
		if max < 0 || max > maxMaxResult {
			return
		}
		mem := sliceMemory(bytes.Clone(b))
		ptr, n := abi.Unpack(packed)
		got, err := readGuest(mem, ptr, n, max, "x")
		if err == nil {
			if uint64(ptr)+uint64(n) > uint64(len(b)) || len(got) > max || !bytes.Equal(got, b[ptr:ptr+n]) {
				t.Fatalf("readGuest(%d, %d) of %d bytes returned %d bytes", ptr, n, len(b), len(got))
			}
			if len(got) > 0 {
				got[0]++
				if mem[ptr] != b[ptr] {
					t.Fatal("readGuest returned a view of guest memory, not a copy")
				}
			}
		}
		status, payload, err := readReply(mem, packed, max)
		if err == nil {
			if status != abi.StatusOK && status != abi.StatusError {
				t.Fatalf("readReply accepted status %d", status)
			}
			if len(payload) > max || uint64(ptr)+uint64(n) > uint64(len(b)) {
				t.Fatalf("readReply returned %d bytes from [%d, %d) of %d", len(payload), ptr, uint64(ptr)+uint64(n), len(b))
			}
		}
	})
}
