package fn_test

import (
	"errors"
	"testing"

	"github.com/trellisdb/trellis/fn"
	"github.com/trellisdb/trellis/fn/fntest"
)

// One test owns the package's single handler slot, as a module would.
func TestInvoke(t *testing.T) {
	if _, err := fn.Invoke(&fntest.Host{}, nil); !errors.Is(err, fn.ErrNoHandler) {
		t.Fatalf("Invoke before Handle = %v, want ErrNoHandler", err)
	}
	fn.Handle(func(c *fn.Ctx, args [][]byte) ([]byte, error) {
		v, ok, err := c.Get(string(args[0]))
		if err != nil || !ok {
			return nil, errors.New("missing")
		}
		if err := c.Put("copy", v); err != nil {
			return nil, err
		}
		if err := c.Send("next", v); err != nil {
			return nil, err
		}
		m, err := c.Recv()
		if err != nil {
			return nil, err
		}
		c.Log("done")
		return append(v, m...), nil
	})
	h := &fntest.Host{}
	if _, err := fn.Invoke(h, [][]byte{[]byte("k")}); err == nil || err.Error() != "missing" {
		t.Fatalf("Invoke on a missing key = %v, want the handler's error", err)
	}
	_ = h.Put("k", []byte("v"))
	h.Deliver([]byte("m"))
	got, err := fn.Invoke(h, [][]byte{[]byte("k")})
	if err != nil || string(got) != "vm" {
		t.Fatalf("Invoke = %q, %v; want \"vm\"", got, err)
	}
	if v, _, _ := h.Get("copy"); string(v) != "v" {
		t.Errorf("Put wrote %q, want \"v\"", v)
	}
	if s := h.Sent(); len(s) != 1 || s[0].To != "next" || string(s[0].Msg) != "v" {
		t.Errorf("Sent = %+v", s)
	}
	if l := h.Logs(); len(l) != 1 || l[0] != "done" {
		t.Errorf("Logs = %q", l)
	}
}
