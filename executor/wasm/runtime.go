package wasm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/fn/abi"
)

// Host is what a running function may ask of the executor (declared in
// package executor, which drives this runtime). The ctx passed to each
// method is the one given to Module.Call; slices passed in are the callee's
// to keep, and slices returned must not be modified afterwards.
type Host = executor.Host

// Config configures a Runtime. The zero value means the defaults.
type Config struct {
	// CacheDir is a directory for wazero's on-disk compilation cache, shared
	// safely by runtimes and processes. "" (the default) keeps compiled
	// code in memory only.
	CacheDir string
	// MemoryLimit is the most linear memory an instance may use, in bytes,
	// rounded up to 64 KiB pages; at most 4 GiB. Default 64 MiB.
	MemoryLimit int64
	// PoolSize is how many idle warm instances a Module keeps. Default
	// runtime.GOMAXPROCS(0); negative keeps none (every call instantiates).
	PoolSize int
	// MaxResult is the largest result, value, key, message or log line a
	// guest may hand over, in bytes. Default 1 MiB; at most 1 GiB.
	MaxResult int
}

const (
	pageSize         = 64 << 10
	defaultMemory    = 64 << 20
	defaultMaxResult = 1 << 20
	maxMaxResult     = 1 << 30
)

// Validate reports a configuration that cannot be used.
func (c Config) Validate() error {
	switch {
	case c.MemoryLimit < 0:
		return fmt.Errorf("wasm: MemoryLimit %d is negative", c.MemoryLimit)
	case c.MemoryLimit > 1<<32:
		return fmt.Errorf("wasm: MemoryLimit %d exceeds 4 GiB", c.MemoryLimit)
	case c.MaxResult < 0:
		return fmt.Errorf("wasm: MaxResult %d is negative", c.MaxResult)
	case c.MaxResult > maxMaxResult:
		return fmt.Errorf("wasm: MaxResult %d exceeds 1 GiB", c.MaxResult)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.MemoryLimit == 0 {
		c.MemoryLimit = defaultMemory
	}
	if c.PoolSize == 0 {
		c.PoolSize = runtime.GOMAXPROCS(0)
	}
	if c.PoolSize < 0 {
		c.PoolSize = 0
	}
	if c.MaxResult == 0 {
		c.MaxResult = defaultMaxResult
	}
	return c
}

// Runtime compiles and runs function modules. It is safe for concurrent
// use.
type Runtime struct {
	cfg    Config
	rt     wazero.Runtime
	cache  wazero.CompilationCache // nil without Config.CacheDir
	closed atomic.Bool
}

// NewRuntime returns a Runtime configured by cfg. ctx bounds the setup only.
func NewRuntime(ctx context.Context, cfg Config) (*Runtime, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pages := (cfg.MemoryLimit + pageSize - 1) / pageSize
	rc := wazero.NewRuntimeConfigCompiler().
		WithCloseOnContextDone(true).
		WithMemoryLimitPages(uint32(min(pages, math.MaxUint16+1)))
	r := &Runtime{cfg: cfg}
	if cfg.CacheDir != "" {
		cache, err := wazero.NewCompilationCacheWithDir(cfg.CacheDir)
		if err != nil {
			return nil, fmt.Errorf("wasm: compilation cache: %w", err)
		}
		r.cache = cache
		rc = rc.WithCompilationCache(cache)
	}
	r.rt = wazero.NewRuntimeWithConfig(ctx, rc)
	if err := r.instantiateHost(ctx); err != nil {
		return nil, errors.Join(err, r.Close(ctx))
	}
	return r, nil
}

func (r *Runtime) instantiateHost(ctx context.Context) error {
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r.rt); err != nil {
		return fmt.Errorf("wasm: instantiate WASI: %w", err)
	}
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	b := r.rt.NewHostModuleBuilder(abi.HostModule)
	for _, f := range []struct {
		name    string
		fn      api.GoModuleFunc
		params  []api.ValueType
		results []api.ValueType
	}{
		{abi.ImportGet, hostGet, []api.ValueType{i32, i32, i32, i32}, []api.ValueType{i64}},
		{abi.ImportPut, hostPut, []api.ValueType{i32, i32, i32, i32, i32, i32}, []api.ValueType{i64}},
		{abi.ImportSend, hostSend, []api.ValueType{i32, i32, i32, i32, i32, i32}, []api.ValueType{i64}},
		{abi.ImportRecv, hostRecv, []api.ValueType{i32, i32}, []api.ValueType{i64}},
		{abi.ImportLog, hostLog, []api.ValueType{i32, i32}, nil},
		{abi.ImportTake, hostTake, []api.ValueType{i32, i32}, []api.ValueType{i32}},
	} {
		b = b.NewFunctionBuilder().WithGoModuleFunction(f.fn, f.params, f.results).Export(f.name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("wasm: instantiate host module: %w", err)
	}
	return nil
}

// Close closes every Module compiled by r and releases the runtime. Calls in
// progress end with an error.
func (r *Runtime) Close(ctx context.Context) error {
	r.closed.Store(true)
	err := r.rt.Close(ctx)
	if r.cache != nil {
		err = errors.Join(err, r.cache.Close(ctx))
	}
	return err
}

// Compile validates code, compiles it (or loads it from the compilation
// cache) and instantiates one instance, running package init, so that the
// first Call finds a warm instance. A module that is malformed, lacks the
// Trellis exports, speaks another ABI version or fails to initialise is
// refused with an error wrapping ErrBadModule. ctx bounds compilation and
// initialisation.
func (r *Runtime) Compile(ctx context.Context, code []byte) (*Module, error) {
	if r.closed.Load() {
		return nil, ErrClosed
	}
	cm, err := r.rt.CompileModule(ctx, code)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadModule, err)
	}
	if err := checkExports(cm); err != nil {
		return nil, errors.Join(err, cm.Close(ctx))
	}
	m := &Module{r: r, compiled: cm}
	in, err := m.instantiate(ctx)
	if err == nil {
		err = in.checkVersion(ctx)
	}
	if err != nil {
		if !errors.Is(err, ErrTimeout) {
			err = fmt.Errorf("%w: %w", ErrBadModule, err)
		}
		if in != nil {
			in.close()
		}
		return nil, errors.Join(err, cm.Close(ctx))
	}
	m.put(in)
	return m, nil
}

// checkExports verifies the entry points of the ABI and their signatures.
func checkExports(cm wazero.CompiledModule) error {
	i32, i64 := api.ValueTypeI32, api.ValueTypeI64
	want := map[string][2][]api.ValueType{
		abi.ExportInit:    {nil, nil},
		abi.ExportVersion: {nil, {i32}},
		abi.ExportAlloc:   {{i32}, {i32}},
		abi.ExportCall:    {{i32, i32}, {i64}},
	}
	got := cm.ExportedFunctions()
	for name, sig := range want {
		def, ok := got[name]
		if !ok {
			return fmt.Errorf("%w: no export %q (build with the fn package and -buildmode=c-shared)", ErrBadModule, name)
		}
		if !equalTypes(def.ParamTypes(), sig[0]) || !equalTypes(def.ResultTypes(), sig[1]) {
			return fmt.Errorf("%w: export %q has signature %v -> %v, want %v -> %v",
				ErrBadModule, name, def.ParamTypes(), def.ResultTypes(), sig[0], sig[1])
		}
	}
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		return fmt.Errorf("%w: no exported memory", ErrBadModule)
	}
	return nil
}

func equalTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
