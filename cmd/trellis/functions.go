package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/executor/wasm"
	"github.com/trellisdb/trellis/kvs"
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
	wcfg := wasm.Config{}
	if cfg.DataDir != "" {
		wcfg.CacheDir = filepath.Join(cfg.DataDir, "wasm-cache")
	}
	rt, err := wasm.NewRuntime(ctx, wcfg)
	if err != nil {
		return nil, fmt.Errorf("WebAssembly runtime: %w", err)
	}
	natives := executor.Builtins()
	net := executor.NewLocalNetwork()
	kv := kvs.Direct{Store: store}
	coord, err := executor.NewCoordinator(executor.CoordinatorConfig{
		Addr: localCoordinator, ID: store.NodeID(), KV: kv, Network: net,
		Validate: func(ctx context.Context, code []byte) error {
			// A compile (the runtime's compilation cache keeps the result
			// for the executor's first call).
			m, err := rt.Compile(ctx, code)
			if err != nil {
				return err
			}
			return m.Close(ctx)
		},
		Natives: natives.Names(),
		Logger:  log.With("role", "coordinator"),
	})
	if err != nil {
		_ = rt.Close(ctx)
		return nil, err
	}
	exec, err := executor.New(executor.Config{
		Addr: localExecutor, ID: store.NodeID(), KV: kv, Network: net, Natives: natives, Wasm: wasmRuntime{rt},
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

// wasmRuntime adapts a wasm.Runtime to executor.Runtime.
type wasmRuntime struct{ rt *wasm.Runtime }

func (w wasmRuntime) Compile(ctx context.Context, code []byte) (executor.Module, error) {
	m, err := w.rt.Compile(ctx, code)
	if err != nil {
		return nil, err
	}
	return wasmModule{m}, nil
}

type wasmModule struct{ m *wasm.Module }

func (w wasmModule) Call(ctx context.Context, h executor.Host, args [][]byte) ([]byte, error) {
	return w.m.Call(ctx, h, args)
}

func (w wasmModule) Close(ctx context.Context) error { return w.m.Close(ctx) }
