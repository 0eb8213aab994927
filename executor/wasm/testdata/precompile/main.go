// Command precompile compiles WebAssembly modules into a wazero compilation
// cache directory, concurrently:
//
//	precompile CACHEDIR MODULE.wasm...
//
// The tests of package wasm run it before they start, because under the
// race detector wazero's compiler is ten times slower than in this
// uninstrumented process. For the test binary to find the entries, build
// this with the version the test binary reports to wazero's cache, "dev":
//
//	-ldflags=-X=github.com/tetratelabs/wazero/internal/version.version=dev
//
// A mismatch only costs time: the tests then compile for themselves.
package main

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sync/errgroup"

	"github.com/trellisdb/trellis/executor/wasm"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "precompile:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 1 {
		return fmt.Errorf("usage: precompile CACHEDIR MODULE.wasm...")
	}
	ctx := context.Background()
	r, err := wasm.NewRuntime(ctx, wasm.Config{CacheDir: args[0], PoolSize: -1})
	if err != nil {
		return err
	}
	defer r.Close(ctx)
	var g errgroup.Group
	for _, file := range args[1:] {
		g.Go(func() error {
			code, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			m, err := r.Compile(ctx, code)
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			return m.Close(ctx)
		})
	}
	return g.Wait()
}
