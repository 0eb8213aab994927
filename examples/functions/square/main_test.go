package main

import (
	"testing"

	"github.com/trellisdb/trellis/fn"
	"github.com/trellisdb/trellis/fn/fntest"
)

func TestSquare(t *testing.T) {
	for in, want := range map[string]string{"7": "49", "-3": "9", "0": "0", "3037000499": "9223372030926249001"} {
		got, err := fn.Invoke(&fntest.Host{}, [][]byte{[]byte(in)})
		if err != nil || string(got) != want {
			t.Errorf("square(%s) = %q, %v; want %s", in, got, err, want)
		}
	}
	for _, args := range [][][]byte{nil, {[]byte("seven")}} {
		if got, err := fn.Invoke(&fntest.Host{}, args); err == nil {
			t.Errorf("square(%q) = %q, want an error", args, got)
		}
	}
}
