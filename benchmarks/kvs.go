package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/wire"
)

// Phases a Progress reports.
const (
	PhasePreload = "preload" // RunKVS writing every key once
	PhaseRun     = "run"     // RunKVS's measured run
	PhaseFill    = "fill"    // FillRESP
)

// ProgressInterval is how often RunKVS and FillRESP report progress.
const ProgressInterval = 250 * time.Millisecond

// Progress is a snapshot of a phase in progress.
type Progress struct {
	Phase   string
	Elapsed time.Duration // since the phase began
	Total   time.Duration // the phase's time bound; 0 when bounded by count only
	Done    int64         // operations completed in the phase
	Target  int64         // the phase's operation count; 0 when bounded by time only
	Errors  int64         // operations that failed in the phase
}

// KVSResult is what RunKVS measured. Latencies are in microseconds; every
// operation of a batch records the batch's round trip (see the package
// documentation).
type KVSResult struct {
	Config KVSConfig `json:"config"` // with defaults applied
	Ops    int64     `json:"ops"`    // operations completed, errors included
	Gets   int64     `json:"gets"`
	Sets   int64     `json:"sets"`
	Misses int64     `json:"misses"` // gets of a key holding no value (not errors)
	Errors int64     `json:"errors"` // operations the server answered with an error
	// ErrorKinds counts Errors by kind ("type_mismatch", "unavailable", ...).
	ErrorKinds     map[string]int64 `json:"error_kinds,omitempty"`
	Seconds        float64          `json:"seconds"` // the measured run's wall time
	OpsPerSec      float64          `json:"ops_per_sec"`
	MeanUs         float64          `json:"mean_us"`
	P50us          float64          `json:"p50_us"`
	P90us          float64          `json:"p90_us"`
	P99us          float64          `json:"p99_us"`
	P999us         float64          `json:"p999_us"`
	MaxUs          float64          `json:"max_us"`
	PreloadSeconds float64          `json:"preload_s"` // 0 without preload
	// Latency holds every operation's latency; the P fields are read from it.
	Latency *Histogram `json:"-"`
}

// RunKVS runs the load cfg describes against a node's native port and
// returns what it measured. progress, if not nil, is called every
// ProgressInterval from one goroutine (never concurrently, never after RunKVS
// returns).
//
// A transport failure (a connection lost, the node gone) ends the run with
// the error; errors the server answers for single operations are counted.
// When ctx ends, RunKVS returns promptly with the figures so far and ctx's
// error.
func RunKVS(ctx context.Context, cfg KVSConfig, progress func(Progress)) (KVSResult, error) {
	if err := cfg.Validate(); err != nil {
		return KVSResult{}, err
	}
	cfg = cfg.WithDefaults()
	res := KVSResult{Config: cfg, Latency: &Histogram{}}
	var zipf *Zipf
	if cfg.Distribution == Zipfian {
		var err error
		if zipf, err = NewZipf(uint64(cfg.Keys), cfg.ZipfS); err != nil {
			return res, err
		}
	}
	workers := make([]*worker, cfg.Conns)
	defer func() {
		for _, w := range workers {
			if w != nil {
				_ = w.c.Close()
			}
		}
	}()
	for i := range workers {
		c, err := dialTarget(ctx, cfg)
		if err != nil {
			return res, fmt.Errorf("benchmarks: connection %d: %w", i, err)
		}
		workers[i] = newWorker(i, c, cfg, zipf)
	}

	if !cfg.SkipPreload {
		start := time.Now()
		var next atomic.Int64
		err := runPhase(ctx, workers, progress, Progress{Phase: PhasePreload, Target: cfg.Keys}, start,
			func(ctx context.Context, w *worker) error { return w.preload(ctx, cfg.Keys, &next) })
		res.PreloadSeconds = time.Since(start).Seconds()
		if err != nil {
			return res, fmt.Errorf("benchmarks: preload: %w", err)
		}
		for _, w := range workers {
			w.resetCounters()
		}
	}

	start := time.Now()
	bound := newRunBound(cfg, start)
	err := runPhase(ctx, workers, progress, Progress{Phase: PhaseRun, Total: bound.duration, Target: bound.requests}, start,
		func(ctx context.Context, w *worker) error { return w.run(ctx, bound) })
	res.Seconds = time.Since(start).Seconds()
	res.collect(workers)
	if err != nil {
		return res, fmt.Errorf("benchmarks: %w", err)
	}
	return res, nil
}

// runPhase runs fn on every worker and reports progress until all return.
// The first error cancels the others and is returned.
func runPhase(ctx context.Context, workers []*worker, progress func(Progress), p Progress, start time.Time, fn func(context.Context, *worker) error) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, w := range workers {
		w.done.Store(0)
		w.failed.Store(0)
		g.Go(func() error { return fn(gctx, w) })
	}
	stop := reportEvery(progress, func() Progress {
		p.Elapsed = time.Since(start)
		p.Done, p.Errors = 0, 0
		for _, w := range workers {
			p.Done += w.done.Load()
			p.Errors += w.failed.Load()
		}
		return p
	})
	err := g.Wait()
	stop()
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr // the caller's end, not a worker's reaction to it
	}
	return err
}

// reportEvery calls progress(snapshot()) every ProgressInterval from one
// goroutine until the returned stop is called; stop returns once that
// goroutine has exited. A nil progress starts nothing.
func reportEvery(progress func(Progress), snapshot func() Progress) (stop func()) {
	if progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				progress(snapshot())
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// runBound decides how many operations a worker's next batch holds.
type runBound struct {
	start    time.Time
	duration time.Duration // 0: no time bound
	requests int64         // 0: no count bound
	pipeline int
	issued   atomic.Int64 // operations claimed so far, when count-bounded
}

func newRunBound(cfg KVSConfig, start time.Time) *runBound {
	return &runBound{start: start, duration: cfg.Duration, requests: cfg.Requests, pipeline: cfg.Pipeline}
}

// claim returns the size of the next batch; 0 means the run is over.
func (b *runBound) claim(now time.Time) int {
	if b.duration > 0 && now.Sub(b.start) >= b.duration {
		return 0
	}
	if b.requests == 0 {
		return b.pipeline
	}
	end := b.issued.Add(int64(b.pipeline))
	first := end - int64(b.pipeline)
	if first >= b.requests {
		return 0
	}
	return int(min(end, b.requests) - first)
}

// errKinds indexes worker error counters: the wire codes, then errOther.
const (
	errOther = int(wire.CodeFunction) + 1
	errKinds = errOther + 1
)

func errKind(err error) int {
	var we *wire.Error
	if errors.As(err, &we) && we.Code > wire.CodeOK && int(we.Code) < errOther {
		return int(we.Code)
	}
	return errOther
}

func errKindName(k int) string {
	if k == errOther {
		return "other"
	}
	return strings.ReplaceAll(wire.Code(k).String(), " ", "_")
}

// worker is one connection's load loop and everything it records. Only its
// goroutine touches it while it runs, except done and failed, which progress
// reports read.
type worker struct {
	id       int
	c        io.Closer
	b        batch
	rng      *rand.Rand
	zipf     *Zipf // nil for uniform keys
	keys     int64
	getRatio float64
	value    []byte
	arena    []byte // the current batch's keys
	isGet    []bool // the current batch's operation kinds

	hist               Histogram
	gets, sets, misses int64
	errs               [errKinds]int64
	done, failed       atomic.Int64
}

// keyLen is len("key:") + 12 digits.
const keyLen = 16

func newWorker(id int, c target, cfg KVSConfig, zipf *Zipf) *worker {
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(id)))
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = 'a' + byte(rng.IntN(26))
	}
	return &worker{
		id: id, c: c, b: c.Batch(), rng: rng, zipf: zipf, keys: cfg.Keys,
		getRatio: cfg.getRatio(), value: value,
		arena: make([]byte, 0, max(cfg.Pipeline, preloadBatch)*keyLen),
	}
}

func (w *worker) resetCounters() {
	w.hist = Histogram{}
	w.gets, w.sets, w.misses = 0, 0, 0
	w.errs = [errKinds]int64{}
}

// appendKey appends "key:%012d" for k < MaxKeys.
func appendKey(b []byte, k uint64) []byte {
	b = append(b, "key:000000000000"...)
	d := b[len(b)-12:]
	for i := 11; i >= 0 && k > 0; i-- {
		d[i] = byte('0' + k%10)
		k /= 10
	}
	return b
}

// addKey appends k's key to the arena and returns it. The arena has room for
// a whole batch, so earlier keys are never moved.
func (w *worker) addKey(k uint64) []byte {
	off := len(w.arena)
	w.arena = appendKey(w.arena, k)
	return w.arena[off:len(w.arena):len(w.arena)]
}

func (w *worker) nextKey() uint64 {
	if w.zipf != nil {
		return w.zipf.Sample(w.rng)
	}
	return w.rng.Uint64N(uint64(w.keys))
}

// run sends batches until bound says the run is over or ctx ends.
func (w *worker) run(ctx context.Context, bound *runBound) error {
	for ctx.Err() == nil {
		n := bound.claim(time.Now())
		if n == 0 {
			return nil
		}
		w.b.Reset()
		w.arena, w.isGet = w.arena[:0], w.isGet[:0]
		for range n {
			key := w.addKey(w.nextKey())
			get := w.rng.Float64() < w.getRatio
			if get {
				w.b.Get(key)
			} else {
				w.b.Set(key, w.value)
			}
			w.isGet = append(w.isGet, get)
		}
		t0 := time.Now()
		res, err := w.b.Exec(ctx)
		rtt := time.Since(t0)
		if err != nil {
			return fmt.Errorf("connection %d: %w", w.id, err)
		}
		w.hist.RecordN(rtt, uint64(n))
		var failed int64
		for i, r := range res {
			if w.isGet[i] {
				w.gets++
			} else {
				w.sets++
			}
			switch {
			case r.Err == nil:
			case w.isGet[i] && errors.Is(r.Err, client.ErrNotFound):
				w.misses++
			default:
				w.errs[errKind(r.Err)]++
				failed++
			}
		}
		w.done.Add(int64(n))
		if failed > 0 {
			w.failed.Add(failed)
		}
	}
	return ctx.Err()
}

// preloadBatch is the number of sets per batch while preloading.
const preloadBatch = 256

// preload writes chunks of keys [0, keys) claimed from next until none is
// left. Any failed write fails the preload.
func (w *worker) preload(ctx context.Context, keys int64, next *atomic.Int64) error {
	for ctx.Err() == nil {
		first := next.Add(preloadBatch) - preloadBatch
		if first >= keys {
			return nil
		}
		end := min(first+preloadBatch, keys)
		w.b.Reset()
		w.arena = w.arena[:0]
		for k := first; k < end; k++ {
			w.b.Set(w.addKey(uint64(k)), w.value)
		}
		res, err := w.b.Exec(ctx)
		if err != nil {
			return fmt.Errorf("connection %d: %w", w.id, err)
		}
		for i, r := range res {
			if r.Err != nil {
				w.failed.Add(1)
				return fmt.Errorf("set key:%012d: %w", first+int64(i), r.Err)
			}
		}
		w.done.Add(end - first)
	}
	return ctx.Err()
}

// collect merges the workers' figures into r.
func (r *KVSResult) collect(workers []*worker) {
	var errs [errKinds]int64
	for _, w := range workers {
		r.Latency.Merge(&w.hist)
		r.Gets += w.gets
		r.Sets += w.sets
		r.Misses += w.misses
		for k, n := range w.errs {
			errs[k] += n
		}
	}
	r.Ops = r.Gets + r.Sets
	for k, n := range errs {
		if n > 0 {
			if r.ErrorKinds == nil {
				r.ErrorKinds = map[string]int64{}
			}
			r.ErrorKinds[errKindName(k)] = n
			r.Errors += n
		}
	}
	if r.Seconds > 0 {
		r.OpsPerSec = float64(r.Ops) / r.Seconds
	}
	us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
	h := r.Latency
	r.MeanUs = us(h.Mean())
	r.P50us, r.P90us = us(h.Quantile(0.50)), us(h.Quantile(0.90))
	r.P99us, r.P999us = us(h.Quantile(0.99)), us(h.Quantile(0.999))
	r.MaxUs = us(h.Max())
}
