package benchmarks

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Zipf samples ranks from the bounded Zipf distribution over [0, n): rank k
// has probability (k+1)^-s / H(n, s), where H(n, s) = sum over i in [1, n]
// of i^-s. Any s > 0 is exact, including the s < 1 that YCSB uses (0.99) and
// math/rand/v2's Zipf refuses. Setup and sampling take constant time and
// memory whatever n is (no table, no harmonic sum).
//
// The method is rejection-inversion (W. Hörmann, G. Derflinger, "Rejection-
// inversion to generate variates from monotone discrete distributions",
// ACM TOMACS 6(3), 1996), as in Apache Commons RNG's
// RejectionInversionZipfSampler: invert the integral of a continuous hat
// function that dominates the probabilities, accept when the drawn point
// lies under the rank's own mass. Fewer than 1.1 draws per sample.
//
// A Zipf is immutable and safe for concurrent use; the randomness comes from
// the *rand.Rand each caller passes to Sample.
type Zipf struct {
	n      float64 // number of ranks
	s      float64 // exponent
	hX1    float64 // hIntegral(1.5) - 1
	hN     float64 // hIntegral(n + 0.5)
	thresh float64 // accept without the test when k - x <= thresh
}

// NewZipf returns a sampler over [0, n) with exponent s. n must be at least
// 1 and s positive and finite.
func NewZipf(n uint64, s float64) (*Zipf, error) {
	if n < 1 {
		return nil, fmt.Errorf("%w: zipf over %d ranks", ErrInvalidConfig, n)
	}
	if !(s > 0) || math.IsInf(s, 1) {
		return nil, fmt.Errorf("%w: zipf exponent %v, want > 0", ErrInvalidConfig, s)
	}
	z := &Zipf{n: float64(n), s: s}
	z.hX1 = z.hIntegral(1.5) - 1
	z.hN = z.hIntegral(z.n + 0.5)
	z.thresh = 2 - z.hIntegralInverse(z.hIntegral(2.5)-z.h(2))
	return z, nil
}

// Sample returns a rank in [0, n), 0 being the most probable.
func (z *Zipf) Sample(r *rand.Rand) uint64 {
	for {
		// u is uniform over (hX1, hN]: the hat's integral over [0.5, n+0.5]
		// shifted so that rank 1's part is exact.
		u := z.hN + r.Float64()*(z.hX1-z.hN)
		x := z.hIntegralInverse(u)
		k := math.Floor(x + 0.5)
		if k < 1 {
			k = 1
		} else if k > z.n {
			k = z.n
		}
		if k-x <= z.thresh || u >= z.hIntegral(k+0.5)-z.h(k) {
			return uint64(k) - 1
		}
	}
}

// Prob returns the exact probability of rank k (0-based). It sums n terms:
// meant for tests and small n.
func (z *Zipf) Prob(k uint64) float64 {
	if float64(k) >= z.n {
		return 0
	}
	var sum float64
	for i := z.n; i >= 1; i-- { // smallest terms first
		sum += math.Pow(i, -z.s)
	}
	return math.Pow(float64(k+1), -z.s) / sum
}

// h is the unnormalised mass, x^-s.
func (z *Zipf) h(x float64) float64 { return math.Exp(-z.s * math.Log(x)) }

// hIntegral is a primitive of h: (x^(1-s) - 1)/(1-s), or log(x) at s = 1,
// computed without cancellation near s = 1.
func (z *Zipf) hIntegral(x float64) float64 {
	logX := math.Log(x)
	return expm1OverX((1-z.s)*logX) * logX
}

// hIntegralInverse inverts hIntegral.
func (z *Zipf) hIntegralInverse(x float64) float64 {
	t := x * (1 - z.s)
	if t < -1 {
		t = -1 // rounding can push it past the pole
	}
	return math.Exp(log1pOverX(t) * x)
}

// log1pOverX is log(1+x)/x, continuous at 0.
func log1pOverX(x float64) float64 {
	if math.Abs(x) > 1e-8 {
		return math.Log1p(x) / x
	}
	return 1 - x*(0.5-x*(1.0/3-0.25*x))
}

// expm1OverX is (e^x - 1)/x, continuous at 0.
func expm1OverX(x float64) float64 {
	if math.Abs(x) > 1e-8 {
		return math.Expm1(x) / x
	}
	return 1 + x*0.5*(1+x*(1.0/3)*(1+0.25*x))
}
