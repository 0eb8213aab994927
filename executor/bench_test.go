package executor

import (
	"context"
	"testing"

	"github.com/trellisdb/trellis/kvs"
)

// BenchmarkFunctionReadCacheHit is a function's read (Ctx.Get) of a key its
// executor's cache holds: the target is ≤ 2 µs. Compare with a KVS
// round trip: `trellis bench kvs --conns 1 --pipeline 1 --get-ratio 1`.
func BenchmarkFunctionReadCacheHit(b *testing.B) {
	st, err := kvs.NewStore(kvs.StoreConfig{NodeID: 1})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.SetLWW([]byte("k"), make([]byte, 100)); err != nil {
		b.Fatal(err)
	}
	e, err := New(Config{Addr: "e", ID: 1, KV: kvs.Direct{Store: st}, Network: NewLocalNetwork()})
	if err != nil {
		b.Fatal(err)
	}
	c := &Ctx{ctx: context.Background(), h: &host{e: e, t: &Trigger{}}}
	if _, _, err := c.Get("k"); err != nil { // the miss that fills the cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, err := c.Get("k"); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
