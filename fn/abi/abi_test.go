package abi_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/trellisdb/trellis/fn/abi"
)

func TestArgsRoundTrip(t *testing.T) {
	for _, args := range [][][]byte{
		{},
		{nil},
		{[]byte("41")},
		{[]byte("a"), {}, []byte("ccc")},
	} {
		b := abi.AppendArgs(nil, args)
		if len(b) != abi.ArgsSize(args) {
			t.Errorf("ArgsSize(%q) = %d, encoding has %d bytes", args, abi.ArgsSize(args), len(b))
		}
		got, err := abi.DecodeArgs(make([][]byte, 5), b)
		if err != nil {
			t.Fatalf("DecodeArgs(AppendArgs(%q)): %v", args, err)
		}
		if !equal(got, args) {
			t.Errorf("round trip of %q = %q", args, got)
		}
	}
}

func TestDecodeArgsRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          nil,
		"short count":    {1, 0},
		"huge count":     {0xff, 0xff, 0xff, 0xff},
		"overrun length": {1, 0, 0, 0, 5, 0, 0, 0, 'a'},
		"trailing":       {0, 0, 0, 0, 'x'},
		"missing length": {2, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3},
	} {
		if _, err := abi.DecodeArgs(nil, b); !errors.Is(err, abi.ErrMalformed) {
			t.Errorf("%s: DecodeArgs(%v) = %v, want ErrMalformed", name, b, err)
		}
	}
}

func TestPack(t *testing.T) {
	hi, lo := abi.Unpack(abi.Pack(0xdeadbeef, 7))
	if hi != 0xdeadbeef || lo != 7 {
		t.Errorf("Unpack(Pack(0xdeadbeef, 7)) = %#x, %d", hi, lo)
	}
}

// FuzzDecodeArgs checks that DecodeArgs never panics, and that whatever it
// accepts re-encodes to the same bytes.
func FuzzDecodeArgs(f *testing.F) {
	f.Add([]byte{})
	f.Add(abi.AppendArgs(nil, [][]byte{[]byte("41")}))
	f.Add(abi.AppendArgs(nil, [][]byte{nil, []byte("x"), []byte("yz")}))
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		args, err := abi.DecodeArgs(nil, b)
		if err != nil {
			if !errors.Is(err, abi.ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if re := abi.AppendArgs(nil, args); !bytes.Equal(re, b) {
			t.Fatalf("re-encoding of accepted %x is %x", b, re)
		}
	})
}

func equal(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}
