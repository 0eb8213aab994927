package benchmarks

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestKVSConfigDefaults(t *testing.T) {
	c := KVSConfig{}.WithDefaults()
	require.Equal(t, KVSConfig{
		Addr: DefaultAddr, Conns: 50, Pipeline: 16, Duration: 10 * time.Second,
		Keys: 100_000, Distribution: Uniform, ZipfS: 0.99, ValueSize: 100, GetRatio: 0.5,
	}, c)
	require.NoError(t, KVSConfig{}.Validate())

	// A request count replaces the default duration.
	require.Zero(t, KVSConfig{Requests: 10}.WithDefaults().Duration)
	require.Equal(t, time.Second, KVSConfig{Requests: 10, Duration: time.Second}.WithDefaults().Duration)
	require.Zero(t, KVSConfig{GetRatio: NoGets}.getRatio())
}

func TestKVSConfigValidate(t *testing.T) {
	for _, c := range []KVSConfig{
		{Addr: "nohostport"},
		{Conns: -1},
		{Pipeline: -16},
		{Duration: -time.Second},
		{Requests: -1},
		{Keys: -5},
		{Keys: MaxKeys + 1},
		{Distribution: "gaussian"},
		{ZipfS: -0.5},
		{ValueSize: -1},
		{GetRatio: 1.5},
	} {
		err := c.Validate()
		require.ErrorIs(t, err, ErrInvalidConfig, "%+v", c)
	}
	require.NoError(t, KVSConfig{Distribution: Zipfian, ZipfS: 1.2, GetRatio: 1, Keys: MaxKeys}.Validate())
	require.NoError(t, KVSConfig{GetRatio: NoGets, ValueSize: 0}.Validate())
}

func TestKVSConfigJSONIsExplicitAndRoundTrips(t *testing.T) {
	for _, c := range []KVSConfig{
		{},
		{Addr: "10.0.0.1:1", Conns: 3, Pipeline: 1, Duration: 1500 * time.Millisecond, Requests: 7,
			Keys: 9, Distribution: Zipfian, ZipfS: 0.5, ValueSize: 1, GetRatio: NoGets, SkipPreload: true, Seed: 11},
	} {
		b, err := json.Marshal(c)
		require.NoError(t, err)
		var back KVSConfig
		require.NoError(t, json.Unmarshal(b, &back))
		require.Equal(t, c.WithDefaults(), back.WithDefaults(), "%s", b)
	}
	b, err := json.Marshal(KVSConfig{GetRatio: NoGets, SkipPreload: true})
	require.NoError(t, err)
	require.Contains(t, string(b), `"get_ratio":0,`)
	require.Contains(t, string(b), `"preload":false`)
}

func TestAppendKeyMatchesRedisBenchmarkFormat(t *testing.T) {
	for _, k := range []uint64{0, 7, 99_999, 123_456_789_012, MaxKeys - 1} {
		require.Equal(t, fmt.Sprintf("key:%012d", k), string(appendKey(nil, k)))
		require.Len(t, appendKey(nil, k), keyLen)
	}
}

func TestRunBoundIssuesExactlyTheRequestCount(t *testing.T) {
	for _, tc := range []struct{ requests, pipeline int64 }{{1000, 16}, {1001, 16}, {5, 16}, {64, 16}} {
		b := newRunBound(KVSConfig{Requests: tc.requests, Pipeline: int(tc.pipeline)}, time.Now())
		var total int64
		for {
			n := b.claim(time.Now())
			if n == 0 {
				break
			}
			require.LessOrEqual(t, int64(n), tc.pipeline)
			total += int64(n)
		}
		require.Equal(t, tc.requests, total)
	}
	start := time.Unix(100, 0)
	b := newRunBound(KVSConfig{Duration: time.Second, Pipeline: 4}, start)
	require.Equal(t, 4, b.claim(start.Add(999*time.Millisecond)))
	require.Zero(t, b.claim(start.Add(time.Second)))
}
