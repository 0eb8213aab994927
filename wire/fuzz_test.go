package wire_test

import (
	"fmt"
	"testing"

	"github.com/trellisdb/trellis/wire"
)

// FuzzRequest feeds arbitrary bytes to the framing and request decoder: they
// must never panic, and whatever decodes must re-encode to a frame that
// decodes to the same request.
func FuzzRequest(f *testing.F) {
	f.Add((&wire.Request{ID: 1, Op: wire.OpGet, Key: []byte("k")}).AppendFrame(nil))
	f.Add((&wire.Request{ID: 2, Op: wire.OpPutMany, Keys: [][]byte{[]byte("a")}, Values: [][]byte{[]byte("b")}}).AppendFrame(nil))
	f.Add((&wire.Request{ID: 3, Op: wire.OpCounterAdd, Key: []byte("c"), Int: -5, Opts: wire.Options{Epoch: 4, Ack: wire.AckQuorum}}).AppendFrame(nil))
	f.Add((&wire.Request{ID: 4, Op: wire.OpHello, Int: 1, Value: []byte("x"), Opts: wire.Options{Token: []byte("secret")}}).AppendFrame(nil))
	f.Add((&wire.Request{ID: 5, Op: wire.OpExTrigger, Key: []byte("127.0.0.1:1"), Value: []byte{0x90}}).AppendFrame(nil))
	f.Add((&wire.Request{ID: 6, Op: wire.OpWatch, Keys: [][]byte{[]byte("k")}}).AppendFrame(nil))
	f.Add((&wire.Request{ID: 4, Op: wire.OpHello, Int: 1, Value: []byte("go")}).AppendFrame(nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := wire.Limits{MaxFrame: 1 << 16}
		var r, again wire.Request
		for len(b) > 0 {
			body, n, err := wire.SplitFrame(b, lim)
			if err != nil {
				return
			}
			b = b[n:]
			if r.Decode(body, lim) != nil {
				continue
			}
			frame := r.AppendFrame(nil)
			if err := again.Decode(frame[wire.HeaderLen:], lim); err != nil {
				t.Fatalf("re-encoded request does not decode: %v", err)
			}
			if again.ID != r.ID || again.Op != r.Op || again.Opts.Epoch != r.Opts.Epoch || again.Opts.Ack != r.Opts.Ack || !equalBytes(again.Opts.Token, r.Opts.Token) || !equalBytes(again.Key, r.Key) ||
				!equalBytes(again.Value, r.Value) || again.Int != r.Int || !equalLists(again.Keys, r.Keys) ||
				!equalLists(again.Values, r.Values) || !equalLists(again.Members, r.Members) ||
				fmt.Sprint(again.Uints) != fmt.Sprint(r.Uints) {
				t.Fatalf("round trip changed the request: %+v vs %+v", r, again)
			}
		}
	})
}

// FuzzResponse: arbitrary bodies never panic the response decoder or its
// accessors.
func FuzzResponse(f *testing.F) {
	f.Add(wire.AppendBytesResult(nil, 1, []byte("v"))[wire.HeaderLen:])
	f.Add(wire.AppendError(nil, 2, &wire.Error{Code: wire.CodeWrongOwner, Epoch: 3})[wire.HeaderLen:])
	items, start := wire.BeginResult(nil, 3)
	items = append(items, 0x92)
	items = wire.AppendItemInt(items, 5)
	items = wire.AppendItemError(items, wire.ErrNotFound)
	f.Add(wire.EndFrame(items, start)[wire.HeaderLen:])
	f.Fuzz(func(t *testing.T, body []byte) {
		var r wire.Response
		if r.Decode(body, wire.Limits{}) != nil {
			return
		}
		_, _ = r.Bytes()
		_, _ = r.Int()
		_, _ = r.Items(nil)
		_ = r.Err()
	})
}
