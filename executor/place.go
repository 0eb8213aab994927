package executor

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/trellisdb/trellis/wire"
)

// execView is what the scheduler knows of one executor: its last report.
type execView struct {
	addr    string
	load    float64
	keys    map[string]struct{}
	natives map[string]bool
}

func newExecView(r *Report) *execView {
	v := &execView{addr: r.Addr, load: r.Load, keys: make(map[string]struct{}, len(r.Keys)), natives: make(map[string]bool, len(r.Natives))}
	for _, k := range r.Keys {
		v.keys[k] = struct{}{}
	}
	for _, n := range r.Natives {
		v.natives[n] = true
	}
	return v
}

// runs reports whether the executor can run function ref: every executor
// runs registered (WebAssembly) functions, native ones only if it has them.
func (v *execView) runs(ref string) bool {
	return !strings.HasPrefix(ref, NativePrefix) || v.natives[ref]
}

// Placement tunes the scheduler.
type Placement struct {
	// MaxLoad skips executors whose load is above it, unless all are.
	// Default 0.9.
	MaxLoad float64
	// RandomShare is the probability of placing a function on a random
	// eligible executor instead of the one with the most of its keys, to
	// spread load and warm other caches. Default 0.1; negative: never.
	RandomShare float64
}

func (p Placement) withDefaults() Placement {
	if p.MaxLoad == 0 {
		p.MaxLoad = 0.9
	}
	if p.RandomShare == 0 {
		p.RandomShare = 0.1
	}
	return p
}

// place chooses an executor for every function of d: among the executors
// not excluded that run it and are not over the load threshold (all that
// run it, if every one is), the one whose cache holds most of the keys the
// call references for the function (ties: the least loaded, then the first
// in execs' order); with probability RandomShare a random one instead. It
// is a function of its inputs: execs' order and rnd decide every tie.
func place(d *DAG, refs map[string][]string, execs []*execView, exclude map[string]bool, rnd *rand.Rand, p Placement) (map[string]string, error) {
	sched := make(map[string]string, len(d.Functions))
	var cands, cool []*execView
	for _, f := range d.Functions {
		cands, cool = cands[:0], cool[:0]
		for _, v := range execs {
			if exclude[v.addr] || !v.runs(f) {
				continue
			}
			cands = append(cands, v)
			if v.load <= p.MaxLoad {
				cool = append(cool, v)
			}
		}
		if len(cool) > 0 {
			cands = cool
		}
		if len(cands) == 0 {
			return nil, fmt.Errorf("%w: %w runs %s", wire.ErrUnavailable, errNoExecutor, f)
		}
		if p.RandomShare > 0 && len(cands) > 1 && rnd.Float64() < p.RandomShare {
			sched[f] = cands[rnd.IntN(len(cands))].addr
			continue
		}
		best, bestHits := cands[0], -1
		for _, v := range cands {
			hits := 0
			for _, k := range refs[f] {
				if _, ok := v.keys[k]; ok {
					hits++
				}
			}
			if hits > bestHits || hits == bestHits && v.load < best.load {
				best, bestHits = v, hits
			}
		}
		sched[f] = best.addr
	}
	return sched, nil
}
