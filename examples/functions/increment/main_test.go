package main

import (
	"testing"

	"github.com/trellisdb/trellis/fn"
	"github.com/trellisdb/trellis/fn/fntest"
)

func TestIncrement(t *testing.T) {
	for in, want := range map[string]string{"41": "42", "-1": "0", "0": "1", "-9223372036854775807": "-9223372036854775806"} {
		got, err := fn.Invoke(&fntest.Host{}, [][]byte{[]byte(in)})
		if err != nil || string(got) != want {
			t.Errorf("increment(%s) = %q, %v; want %s", in, got, err, want)
		}
	}
	for _, args := range [][][]byte{nil, {[]byte("x")}, {[]byte("")}, {[]byte("1.5")}} {
		if got, err := fn.Invoke(&fntest.Host{}, args); err == nil {
			t.Errorf("increment(%q) = %q, want an error", args, got)
		}
	}
}
