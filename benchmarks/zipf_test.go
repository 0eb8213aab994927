package benchmarks

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestZipfStaysInRange(t *testing.T) {
	for _, tc := range []struct {
		n uint64
		s float64
	}{{1, 0.99}, {2, 0.99}, {1000, 0.5}, {1000, 0.99}, {1000, 1}, {1000, 1.5}, {MaxKeys, 0.99}, {MaxKeys, 3}} {
		z, err := NewZipf(tc.n, tc.s)
		require.NoError(t, err)
		r := rand.New(rand.NewPCG(1, 2))
		for range 20_000 {
			if k := z.Sample(r); k >= tc.n {
				t.Fatalf("n=%d s=%v: sampled %d", tc.n, tc.s, k)
			}
		}
	}
}

func TestZipfRejectsBadParameters(t *testing.T) {
	for _, s := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		_, err := NewZipf(10, s)
		require.ErrorIs(t, err, ErrInvalidConfig, "s=%v", s)
	}
	_, err := NewZipf(0, 0.99)
	require.ErrorIs(t, err, ErrInvalidConfig)
}

// TestZipfMatchesTheory draws from n=1000 and checks the rank-1 frequency
// against 1/H(n, s) within 4 standard deviations, and the whole histogram
// with a chi-square test (999 degrees of freedom: mean 999, sd 44.7; the
// bound is 5 sd above the mean). Seeds are fixed, so the test is
// deterministic; the bounds are what a correct sampler passes for almost
// every seed.
func TestZipfMatchesTheory(t *testing.T) {
	const n, draws = 1000, 500_000
	for _, s := range []float64{0.99, 0.5, 1, 1.5} {
		z, err := NewZipf(n, s)
		require.NoError(t, err)
		r := rand.New(rand.NewPCG(42, 7))
		counts := make([]float64, n)
		for range draws {
			counts[z.Sample(r)]++
		}
		h := harmonic(n, s)
		p0 := z.Prob(0)
		require.InDelta(t, 1/h, p0, 1e-12)
		sd := math.Sqrt(draws * p0 * (1 - p0))
		require.InDelta(t, draws*p0, counts[0], 4*sd, "s=%v rank 1: %v draws, expected %.0f", s, counts[0], draws*p0)

		var chi2 float64
		for k := range n {
			e := draws * math.Pow(float64(k+1), -s) / h
			chi2 += (counts[k] - e) * (counts[k] - e) / e
		}
		df := float64(n - 1)
		require.Less(t, chi2, df+5*math.Sqrt(2*df), "s=%v: chi-square %.0f over %v degrees of freedom", s, chi2, df)
		t.Logf("s=%v rank 1: %.0f (expected %.0f), chi-square %.0f (df %v)", s, counts[0], draws*p0, chi2, df)
	}
}

func TestZipfIsDeterministicUnderASeed(t *testing.T) {
	z, err := NewZipf(100_000, 0.99)
	require.NoError(t, err)
	draw := func(seed uint64) []uint64 {
		r := rand.New(rand.NewPCG(seed, 0))
		out := make([]uint64, 1000)
		for i := range out {
			out[i] = z.Sample(r)
		}
		return out
	}
	require.Equal(t, draw(3), draw(3))
	require.NotEqual(t, draw(3), draw(4))
}

func harmonic(n int, s float64) float64 {
	var h float64
	for i := n; i >= 1; i-- {
		h += math.Pow(float64(i), -s)
	}
	return h
}
