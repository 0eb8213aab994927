package wasm_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/trellisdb/trellis/executor/wasm"
)

// BenchmarkCallWarm measures the per-call overhead of a warm instance: one
// increment call, arguments in, result out.
func BenchmarkCallWarm(b *testing.B) {
	r := newRuntime(b, wasm.Config{})
	m := compile(b, r, incrementWasm)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a := args("41")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Call(ctx, nil, a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallWarmParallel is BenchmarkCallWarm from GOMAXPROCS goroutines.
func BenchmarkCallWarmParallel(b *testing.B) {
	r := newRuntime(b, wasm.Config{})
	m := compile(b, r, incrementWasm)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		a := args("41")
		for pb.Next() {
			if _, err := m.Call(context.Background(), nil, a); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCallCold measures a call that must instantiate (and initialise)
// its instance: the pool keeps none.
func BenchmarkCallCold(b *testing.B) {
	r := newRuntime(b, wasm.Config{PoolSize: -1})
	m := compile(b, r, incrementWasm)
	a := args("41")
	for b.Loop() {
		if _, err := m.Call(context.Background(), nil, a); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHostCall measures a call making one Get, Put, Send, Recv and Log.
func BenchmarkHostCall(b *testing.B) {
	r := newRuntime(b, wasm.Config{})
	m := compile(b, r, guestWasm)
	h := newFakeHost()
	h.kv["k"] = []byte("value")
	a := args("host", "k")
	msg := []byte("message")
	for b.Loop() {
		h.inbox <- msg
		if _, err := m.Call(context.Background(), h, a); err != nil {
			b.Fatal(err)
		}
		h.sent, h.logs = h.sent[:0], h.logs[:0]
	}
}

// BenchmarkCompile measures Compile and the first call of the increment
// module: cold (no compilation cache, every iteration compiles) and from a
// warm on-disk cache (a new Runtime per iteration, as after a restart).
func BenchmarkCompile(b *testing.B) {
	for _, withCache := range []bool{false, true} {
		b.Run("cache="+strconv.FormatBool(withCache), func(b *testing.B) {
			ctx := context.Background()
			cfg := wasm.Config{}
			if withCache {
				cfg.CacheDir = cacheDir
			}
			var compile, first time.Duration
			for b.Loop() {
				r, err := wasm.NewRuntime(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				m, err := r.Compile(ctx, incrementWasm)
				if err != nil {
					b.Fatal(err)
				}
				compiled := time.Now()
				if _, err := m.Call(ctx, nil, args("1")); err != nil {
					b.Fatal(err)
				}
				compile += compiled.Sub(start)
				first += time.Since(compiled)
				if err := r.Close(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(compile.Milliseconds())/float64(b.N), "ms-compile/op")
			b.ReportMetric(float64(first.Microseconds())/float64(b.N), "µs-first-call/op")
		})
	}
}
