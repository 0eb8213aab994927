package benchmarks

import (
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestHistogramBuckets(t *testing.T) {
	require.Equal(t, histMaxBits, bits.Len64(histMaxNs))
	require.Less(t, bucketOf(histMaxNs), histBuckets, "HistogramMax has a bucket")
	require.Equal(t, histBuckets-1, bucketOf(1<<histMaxBits-1), "no bucket is wasted")
	next := uint64(0)
	for i := range histBuckets {
		lo, w := bucketRange(i)
		require.Equal(t, next, lo, "bucket %d starts where %d ends", i, i-1)
		require.Equal(t, i, bucketOf(lo))
		require.Equal(t, i, bucketOf(lo+w-1))
		require.LessOrEqual(t, float64(w-1), float64(lo)/subCount, "bucket %d too wide", i)
		next = lo + w
	}
}

func TestHistogramQuantilesWithinOnePercent(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, spread := range []float64{1e3, 6e7} { // 1 µs..1 ms, 1 µs..60 s
		var h Histogram
		vals := make([]time.Duration, 100_000)
		for i := range vals {
			// log-uniform over [1 µs, spread µs]
			vals[i] = time.Duration(1e3 * math.Pow(spread, r.Float64()))
			h.Record(vals[i])
		}
		slices.Sort(vals)
		for _, q := range []float64{0, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
			rank := max(int(math.Ceil(q*float64(len(vals)))), 1)
			exact := vals[rank-1]
			got := h.Quantile(q)
			require.InEpsilon(t, float64(exact), float64(got), 0.01, "q=%v spread=%v", q, spread)
		}
		require.Equal(t, vals[0], h.Min())
		require.Equal(t, vals[len(vals)-1], h.Max())
		require.Equal(t, uint64(len(vals)), h.Count())
	}
}

func TestHistogramMergeEqualsOneHistogram(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	var all Histogram
	parts := make([]Histogram, 4)
	for i := range 40_000 {
		d := time.Duration(r.ExpFloat64() * 200e3)
		all.Record(d)
		parts[i%len(parts)].Record(d)
	}
	var merged Histogram
	merged.Merge(&Histogram{}) // merging an empty one changes nothing
	for i := range parts {
		merged.Merge(&parts[i])
	}
	require.Equal(t, all.counts, merged.counts)
	require.Equal(t, all.Count(), merged.Count())
	require.Equal(t, all.Min(), merged.Min())
	require.Equal(t, all.Max(), merged.Max())
	require.InEpsilon(t, float64(all.Mean()), float64(merged.Mean()), 1e-9)
	for _, q := range []float64{0.5, 0.99, 0.999} {
		require.Equal(t, all.Quantile(q), merged.Quantile(q))
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	require.Zero(t, h.Quantile(0.5))
	require.Zero(t, h.Mean())
	h.RecordN(-time.Second, 1)
	h.RecordN(time.Hour, 1)
	h.RecordN(time.Millisecond, 0)
	require.Equal(t, uint64(2), h.Count())
	require.Equal(t, time.Duration(0), h.Min())
	require.Equal(t, HistogramMax, h.Max())
	h.RecordN(250*time.Nanosecond, 98)
	require.Equal(t, 250*time.Nanosecond, h.Quantile(0.5), "exact below 256 ns")
}
