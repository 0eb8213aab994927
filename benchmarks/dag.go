package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/executor/wasm"
)

// DAGConfig configures RunDAG.
type DAGConfig struct {
	Addr        string        // coordinator (trellis up's native address)
	Chain       int           // functions in the chain: 1 or 2 (increment, then square)
	Runtime     string        // "native" or "wasm"
	Concurrency int           // callers, each with one call in flight
	Duration    time.Duration // measured run
	Warmup      time.Duration // calls before the measured run (first call: compile)
	// Examples is the directory of the example functions, built when the
	// wasm functions increment and square are not registered yet.
	Examples string
}

// DAGResult is a RunDAG measurement. Latencies are in microseconds.
type DAGResult struct {
	Chain       int     `json:"chain"`
	Runtime     string  `json:"runtime"`
	Concurrency int     `json:"concurrency"`
	Calls       uint64  `json:"calls"`
	Errors      uint64  `json:"errors"`
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50us       float64 `json:"p50_us"`
	P90us       float64 `json:"p90_us"`
	P99us       float64 `json:"p99_us"`
	MaxUs       float64 `json:"max_us"`
	// FirstCallUs is the first call after the DAG was registered, with the
	// functions' compile (wasm) and the executors' first instances.
	FirstCallUs float64 `json:"first_call_us"`
}

// RunDAG registers a chain DAG of increment and square (native or
// WebAssembly) with the coordinator at cfg.Addr and calls it from
// cfg.Concurrency callers for cfg.Duration.
func RunDAG(ctx context.Context, cfg DAGConfig) (DAGResult, error) {
	res := DAGResult{Chain: cfg.Chain, Runtime: cfg.Runtime, Concurrency: cfg.Concurrency}
	if cfg.Chain < 1 || cfg.Chain > 2 {
		return res, errors.New("benchmarks: --chain is 1 or 2 (increment, then square)")
	}
	if cfg.Concurrency < 1 {
		return res, errors.New("benchmarks: --concurrency must be positive")
	}
	c, err := client.Dial(ctx, cfg.Addr, client.Options{Conns: min(cfg.Concurrency, 8), Name: "trellis-bench-dag"})
	if err != nil {
		return res, err
	}
	defer c.Close()
	fns := []string{"increment", "square"}[:cfg.Chain]
	switch cfg.Runtime {
	case "native":
		for i := range fns {
			fns[i] = executor.NativePrefix + fns[i]
		}
	case "wasm":
		if err := ensureExamples(ctx, c, cfg.Examples, fns); err != nil {
			return res, err
		}
	default:
		return res, fmt.Errorf("benchmarks: --runtime is native or wasm, not %q", cfg.Runtime)
	}
	name := fmt.Sprintf("bench-chain%d-%s", cfg.Chain, cfg.Runtime)
	if err := c.RegisterDAG(ctx, executor.Chain(name, fns...)); err != nil {
		return res, err
	}
	call := func(ctx context.Context, x int) error {
		arg := strconv.Itoa(x)
		out, err := c.CallDAG(ctx, name, executor.Call{Args: map[string][]executor.Arg{"": {executor.Value([]byte(arg))}}}).Get(ctx)
		if err != nil {
			return err
		}
		want := x + 1
		if cfg.Chain == 2 {
			want *= want
		}
		if string(out) != strconv.Itoa(want) {
			return fmt.Errorf("chain(%d) = %q, want %d", x, out, want)
		}
		return nil
	}
	start := time.Now()
	if err := call(ctx, 1); err != nil {
		return res, fmt.Errorf("first call: %w", err)
	}
	res.FirstCallUs = us(time.Since(start))
	for end := time.Now().Add(cfg.Warmup); time.Now().Before(end); {
		if err := call(ctx, 2); err != nil {
			return res, fmt.Errorf("warm-up: %w", err)
		}
	}

	var (
		mu    sync.Mutex
		hist  Histogram
		wg    sync.WaitGroup
		calls uint64
	)
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	start = time.Now()
	for w := range cfg.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var h Histogram
			var n, errs uint64
			var first string
			for i := w; runCtx.Err() == nil; i += cfg.Concurrency {
				t0 := time.Now()
				err := call(runCtx, i%1000)
				if runCtx.Err() != nil {
					break
				}
				n++
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				h.Record(time.Since(t0))
			}
			mu.Lock()
			hist.Merge(&h)
			calls += n
			res.Errors += errs
			if res.FirstError == "" {
				res.FirstError = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Calls = calls
	res.OpsPerSec = float64(calls-res.Errors) / res.Seconds
	res.P50us, res.P90us, res.P99us = us(hist.Quantile(0.5)), us(hist.Quantile(0.9)), us(hist.Quantile(0.99))
	res.MaxUs = us(hist.Max())
	return res, ctx.Err()
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// ensureExamples registers the example WebAssembly functions fns unless
// the coordinator has them, building them from dir.
func ensureExamples(ctx context.Context, c *client.Client, dir string, fns []string) error {
	have, err := c.Functions(ctx)
	if err != nil {
		return err
	}
	tmp := ""
	for _, f := range fns {
		if slices.Contains(have, f) {
			continue
		}
		if tmp == "" {
			if tmp, err = os.MkdirTemp("", "trellis-bench-dag"); err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
		}
		out := filepath.Join(tmp, f+".wasm")
		if err := wasm.Build(ctx, filepath.Join(dir, f), out); err != nil {
			return fmt.Errorf("building the example %s (run from the repository, or register it first): %w", f, err)
		}
		code, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if err := c.RegisterFunction(ctx, f, code); err != nil {
			return err
		}
	}
	return nil
}
