package benchmarks

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records durations in log-linear buckets (the HDR histogram
// layout): exact below 256 ns, then 128 buckets per power of two, so a
// bucket's width is at most 1/128 of its lower bound and a reported quantile
// (a bucket's midpoint) is within 0.4% of the recorded value it stands for.
// It covers 0 to HistogramMax; longer durations count as HistogramMax.
//
// The zero value is empty and ready. A Histogram is not safe for concurrent
// use: give each goroutine its own and Merge them afterwards.
type Histogram struct {
	counts [histBuckets]uint64
	total  uint64
	min    uint64 // ns; meaningful when total > 0
	max    uint64 // ns
	sum    float64
}

// HistogramMax is the longest duration a Histogram tells apart.
const HistogramMax = 64 * time.Second

const (
	subBits     = 7
	subCount    = 1 << subBits // buckets per power of two
	histMaxNs   = uint64(HistogramMax)
	histMaxBits = 36 // bits.Len64(histMaxNs), checked by a test
	histBuckets = (histMaxBits - subBits + 1) * subCount
)

// bucketOf returns v's bucket index.
func bucketOf(v uint64) int {
	if v < 2*subCount {
		return int(v)
	}
	shift := bits.Len64(v) - (subBits + 1) // v>>shift is in [128, 256)
	return (shift+1)*subCount + int(v>>shift) - subCount
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (lo, width uint64) {
	if i < 2*subCount {
		return uint64(i), 1
	}
	shift := i/subCount - 1
	m := uint64(i%subCount + subCount)
	return m << shift, 1 << shift
}

// Record adds one duration. Negative durations count as 0.
func (h *Histogram) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds n occurrences of d.
func (h *Histogram) RecordN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	v := uint64(max(d, 0))
	if v > histMaxNs {
		v = histMaxNs
	}
	h.counts[bucketOf(v)] += n
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total += n
	h.sum += float64(v) * float64(n)
}

// Merge adds every recording of o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

// Count returns the number of recordings.
func (h *Histogram) Count() uint64 { return h.total }

// Min returns the smallest recording (0 when empty), exactly.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest recording (0 when empty), exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean recording (0 when empty).
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the q-quantile, q in [0, 1]: the recording of rank
// ceil(q*Count()) in increasing order, to within 0.4% (exact for the
// minimum, the maximum and below 256 ns). 0 when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	if rank == h.total {
		return time.Duration(h.max)
	}
	if rank == 1 {
		return time.Duration(h.min)
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, w := bucketRange(i)
			v := lo + (w-1)/2
			return time.Duration(min(max(v, h.min), h.max))
		}
	}
	return time.Duration(h.max) // not reached
}
