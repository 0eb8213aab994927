package remote_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/executor/remote"
	"github.com/trellisdb/trellis/kvs"
)

// BenchmarkFunctionReadKVSFetch is a function's read of a key its
// executor's cache does not hold: the cache fetches it from a storage node
// over loopback TCP (the executor in a process of its own). Compare with
// BenchmarkFunctionReadCacheHit in package executor.
func BenchmarkFunctionReadKVSFetch(b *testing.B) {
	store, err := kvs.NewStore(kvs.StoreConfig{NodeID: 1})
	if err != nil {
		b.Fatal(err)
	}
	srv, err := kvs.NewServer(store, kvs.ServerConfig{Addr: "127.0.0.1:0", RESPAddr: kvs.AddrOff})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	<-srv.Ready()
	const keys = 4096
	for i := range keys {
		if err := store.SetLWW(fmt.Appendf(nil, "k%d", i), make([]byte, 100)); err != nil {
			b.Fatal(err)
		}
	}
	cl, err := client.Dial(ctx, srv.Addr(), client.Options{Conns: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	// A cache too small for two entries: every read misses.
	cache := executor.NewCache(remote.ClientKV(cl), 200)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := cache.Get(ctx, fmt.Appendf(nil, "k%d", i%keys)); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if s := cache.Stats(); s.Hits > 0 {
		b.Fatalf("%d reads hit the cache", s.Hits)
	}
}
