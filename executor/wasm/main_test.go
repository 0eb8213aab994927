package wasm_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/sync/errgroup"

	"github.com/trellisdb/trellis/executor/wasm"
)

// Modules built once per test binary by TestMain, and the compilation cache
// shared by every Runtime the tests create.
var (
	incrementWasm, squareWasm, guestWasm []byte
	cacheDir                             string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trellis-wasm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cacheDir = filepath.Join(dir, "cache")
	if err := setup(dir); err != nil {
		os.RemoveAll(dir)
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { os.RemoveAll(dir) }))
}

// setup builds the modules into dir and compiles them into the cache.
func setup(dir string) error {
	mods := []struct {
		src  string
		code *[]byte
	}{
		{"../../examples/functions/increment", &incrementWasm},
		{"../../examples/functions/square", &squareWasm},
		{"testdata/guest", &guestWasm},
	}
	files := make([]string, len(mods))
	var g errgroup.Group
	for i, mod := range mods {
		files[i] = filepath.Join(dir, filepath.Base(mod.src)+".wasm")
		g.Go(func() error {
			if err := wasm.Build(context.Background(), mod.src, files[i]); err != nil {
				return err
			}
			code, err := os.ReadFile(files[i])
			*mod.code = code
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	return fillCache(files)
}

// fillCache compiles the modules into the shared compilation cache, so
// that the tests load them instead of each compiling them. The work is done
// by testdata/precompile, in a process of its own without the race detector
// (which slows wazero's compiler tenfold), then checked here: whatever it
// left out (if the versions below disagree, everything) is compiled here,
// concurrently.
func fillCache(files []string) error {
	cmd := exec.Command("go", append([]string{"run",
		"-ldflags=-X=github.com/tetratelabs/wazero/internal/version.version=" + testBinaryWazeroVersion,
		"./testdata/precompile", cacheDir}, files...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("precompile: %w\n%s", err, out)
	}
	ctx := context.Background()
	r, err := wasm.NewRuntime(ctx, wasm.Config{CacheDir: cacheDir, PoolSize: -1})
	if err != nil {
		return err
	}
	defer r.Close(ctx)
	var g errgroup.Group
	for _, code := range [][]byte{incrementWasm, squareWasm, guestWasm} {
		g.Go(func() error {
			m, err := r.Compile(ctx, code)
			if err != nil {
				return err
			}
			return m.Close(ctx)
		})
	}
	return g.Wait()
}

// testBinaryWazeroVersion is the wazero version a test binary reports, and
// keys its compilation cache entries by: test binaries carry no dependency
// versions, so wazero falls back to "dev".
const testBinaryWazeroVersion = "dev"

// newRuntime returns a Runtime on the shared compilation cache, closed when
// the test ends.
func newRuntime(t testing.TB, cfg wasm.Config) *wasm.Runtime {
	t.Helper()
	cfg.CacheDir = cacheDir
	r, err := wasm.NewRuntime(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return r
}

func compile(t testing.TB, r *wasm.Runtime, code []byte) *wasm.Module {
	t.Helper()
	m, err := r.Compile(context.Background(), code)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}
