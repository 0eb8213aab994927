package main

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/clusterclient"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/executor/remote"
	"github.com/trellisdb/trellis/executor/wasm"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/wire"
)

// localAddr names the coordinator and the executor of `trellis up` on its
// in-process network (they are reached through the node's native port).
const (
	localCoordinator = "local-coordinator"
	localExecutor    = "local-executor"
)

// functionRoles are the coordinator and the executor that `trellis up` runs
// in the storage node's process: they reach the store directly and each
// other by direct calls; clients reach the coordinator through the node's
// native port (kvs.ServerConfig.Functions).
type functionRoles struct {
	coord *executor.Coordinator
	exec  *executor.Executor
	rt    *wasm.Runtime
}

// newFunctionRoles builds them over store. With a data directory, compiled
// WebAssembly is cached under it, so a restart does not compile again.
func newFunctionRoles(ctx context.Context, store *kvs.Store, cfg config, log *slog.Logger) (*functionRoles, error) {
	return buildFunctionRoles(ctx, kvs.Direct{Store: store}, directKV{kvs.NewDirect(store)}, store.NodeID(), cfg.DataDir, log)
}

// directKV is the executor's store in `trellis up`'s process. On one node a
// write is merged at once whatever the acknowledgement asked, except
// durable: it waits until the node's disk has synced it.
type directKV struct{ kvs.Direct }

// PutAck implements executor.AckPutter.
func (d directKV) PutAck(ctx context.Context, key, enc []byte, ack wire.Ack) error {
	if ack != wire.AckDurable {
		return d.Put(ctx, key, enc)
	}
	if !d.Store.HasDisk() {
		return kvs.ErrNoDisk
	}
	if err := d.Put(ctx, key, enc); err != nil {
		return err
	}
	if err := d.Store.WaitDurable(ctx); err != nil {
		return fmt.Errorf("%w: %w", wire.ErrTimeout, err)
	}
	return nil
}

// buildFunctionRoles builds a coordinator keeping definitions in coordKV and
// an executor reading through execKV, connected by direct calls.
func buildFunctionRoles(ctx context.Context, coordKV, execKV executor.KV, id uint64, dataDir string, log *slog.Logger) (*functionRoles, error) {
	wcfg := wasm.Config{}
	if dataDir != "" {
		wcfg.CacheDir = filepath.Join(dataDir, "wasm-cache")
	}
	rt, err := wasm.NewRuntime(ctx, wcfg)
	if err != nil {
		return nil, fmt.Errorf("WebAssembly runtime: %w", err)
	}
	natives := executor.Builtins()
	net := executor.NewLocalNetwork()
	wr := &wasmRuntime{rt: rt, mods: make(map[[32]byte]*wasm.Module)}
	coord, err := executor.NewCoordinator(executor.CoordinatorConfig{
		Addr: localCoordinator, ID: id, KV: coordKV, Network: net,
		Validate: func(ctx context.Context, code []byte) error {
			_, err := wr.Compile(ctx, code) // kept: the executor's first call uses it
			return err
		},
		Natives: natives.Names(),
		Logger:  log.With("role", "coordinator"),
	})
	if err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	exec, err := executor.New(executor.Config{
		Addr: localExecutor, ID: id, KV: execKV, Network: net, Natives: natives, Wasm: wr,
		Coordinators: []string{localCoordinator}, Logger: log.With("role", "executor"),
	})
	if err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	net.AddCoordinator(coord)
	net.AddExecutor(exec)
	return &functionRoles{coord: coord, exec: exec, rt: rt}, nil
}

// run runs both until ctx ends, then closes the runtime.
func (f *functionRoles) run(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.coord.Run(ctx)
	}()
	err := f.exec.Run(ctx)
	<-done
	if cerr := f.rt.Close(context.Background()); err == nil {
		err = cerr
	}
	return err
}

// wasmRuntime adapts a wasm.Runtime to executor.Runtime, and compiles each
// module once: the coordinator's check at registration and the executor's
// first call share the compiled module (wazero keeps compiled code across a
// close only in an on-disk cache). Modules live until the runtime closes.
type wasmRuntime struct {
	rt   *wasm.Runtime
	mu   sync.Mutex
	mods map[[32]byte]*wasm.Module
}

func (w *wasmRuntime) Compile(ctx context.Context, code []byte) (executor.Module, error) {
	h := sha256.Sum256(code)
	w.mu.Lock()
	m := w.mods[h]
	w.mu.Unlock()
	if m == nil {
		var err error
		if m, err = w.rt.Compile(ctx, code); err != nil {
			return nil, err
		}
		w.mu.Lock()
		if have := w.mods[h]; have != nil {
			_ = m.Close(ctx) // compiled concurrently: keep one
			m = have
		} else {
			w.mods[h] = m
		}
		w.mu.Unlock()
	}
	return wasmModule{m}, nil
}

type wasmModule struct{ m *wasm.Module }

func (w wasmModule) Call(ctx context.Context, h executor.Host, args [][]byte) ([]byte, error) {
	return w.m.Call(ctx, h, args)
}

// Close does nothing: the module stays compiled for later callers until the
// runtime closes.
func (w wasmModule) Close(context.Context) error { return nil }

// clusterFunctionRoles builds the coordinator and executor of `trellis up
// --storage-nodes N`: they reach the cluster's keys through a cluster
// client (the coordinator with the system token), and the executor's cache
// watches its keys at every storage node. close releases the client once
// the roles stopped.
func clusterFunctionRoles(ctx context.Context, cfg config, routeAddrs []string, dataDir string, log *slog.Logger) (*functionRoles, func(), error) {
	cc, err := clusterclient.Dial(ctx, clusterclient.Options{Route: routeAddrs,
		Client: client.Options{Name: "trellis-functions", Token: cfg.SystemToken}})
	if err != nil {
		return nil, nil, fmt.Errorf("functions: %w", err)
	}
	kv := remote.ClusterKV(cc)
	watched := &remote.WatchedKV{KV: kv, Nodes: func() []string { return clusterNodes(cc.State()) },
		Dial: dialWatcher, Logger: log.With("role", "executor"), Done: ctx.Done()}
	f, err := buildFunctionRoles(ctx, kv, watched, rand.Uint64()|1, dataDir, log)
	if err != nil {
		_ = cc.Close()
		return nil, nil, err
	}
	return f, func() {
		_ = watched.Close()
		_ = cc.Close()
	}, nil
}
