package executor

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func views(rs ...*Report) []*execView {
	out := make([]*execView, len(rs))
	for i, r := range rs {
		out[i] = newExecView(r)
	}
	return out
}

func TestPlacePrefersCachedKeysAndSkipsBusyExecutors(t *testing.T) {
	d := Chain("c", "f", "g", "native/h")
	refs := map[string][]string{"f": {"k1", "k2"}, "g": {"k3"}}
	execs := views(
		&Report{Addr: "a", Load: 0.1, Keys: []string{"k1"}},
		&Report{Addr: "b", Load: 0.2, Keys: []string{"k1", "k2"}, Natives: []string{"native/h"}},
		&Report{Addr: "c", Load: 0.95, Keys: []string{"k3"}}, // over the threshold
	)
	rnd := rand.New(rand.NewPCG(1, 2))
	p := Placement{RandomShare: -1}.withDefaults()
	s, err := place(&d, refs, execs, nil, rnd, p)
	require.NoError(t, err)
	assert.Equal(t, map[string]string{"f": "b", "g": "a", "native/h": "b"}, s,
		"f: most keys; g: the executor with k3 is too busy, least loaded of the rest; h: only b runs it")

	// Everyone busy: the threshold is ignored.
	for _, v := range execs {
		v.load = 1
	}
	s, err = place(&d, refs, execs, nil, rnd, p)
	require.NoError(t, err)
	assert.Equal(t, "c", s["g"])

	// Excluded executors are never chosen; no executor for h → unavailable.
	_, err = place(&d, refs, execs, map[string]bool{"b": true}, rnd, p)
	require.ErrorIs(t, err, errNoExecutor)
}

func TestPlaceRandomShareSpreads(t *testing.T) {
	d := Chain("c", "f")
	refs := map[string][]string{"f": {"k"}}
	execs := views(&Report{Addr: "a", Keys: []string{"k"}}, &Report{Addr: "b"}, &Report{Addr: "c"})
	rnd := rand.New(rand.NewPCG(3, 4))
	counts := map[string]int{}
	for range 1000 {
		s, err := place(&d, refs, execs, nil, rnd, Placement{RandomShare: 0.3}.withDefaults())
		require.NoError(t, err)
		counts[s["f"]]++
	}
	// 70% locality + 10% of the random 30%: about 800 on a, 100 each elsewhere.
	assert.InDelta(t, 800, counts["a"], 60)
	assert.InDelta(t, 100, counts["b"], 40)
	assert.InDelta(t, 100, counts["c"], 40)
}
