package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBenchCluster runs every scenario of `trellis bench cluster` small:
// the figures are not checked (benchmarks measure, tests do not time), but
// what each scenario verifies is: no client errors during the hand-off,
// every key readable afterwards, a restarted node holding its keys.
func TestBenchCluster(t *testing.T) {
	clearEnv(t)
	code, out, errOut := runMain(t, "", "bench", "cluster", "--scenario", "latency,gossip,handoff,restart",
		"--ops", "40", "--keys", "2000", "--traffic", "2", "--ae-every", "200ms", "--gossip-every", "20ms",
		"--data-dir", t.TempDir(), "--json")
	require.Equal(t, exitOK, code, errOut)
	var res clusterBenchResult
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.NotNil(t, res.Latency)
	assert.Equal(t, 40, res.Latency.Ops)
	assert.Positive(t, res.Latency.QuorumP50us)
	assert.Positive(t, res.Latency.ClusterQuorumP50us)
	assert.EqualValues(t, 40+40, res.Latency.FanOuts, "every quorum SET of the cluster client (warm-up included) fanned out")
	require.NotNil(t, res.Gossip)
	assert.Positive(t, res.Gossip.P99ms)
	require.NotNil(t, res.Handoff)
	assert.Zero(t, res.Handoff.ClientErrors, res.Handoff.FirstErrors)
	assert.Zero(t, res.Handoff.FinalCheckMismatches)
	assert.Positive(t, res.Handoff.ClientOps)
	require.NotNil(t, res.Restart)
	assert.Equal(t, 2000, res.Restart.VictimKeys)
	assert.Equal(t, res.Restart.VictimKeys, res.Restart.HeldKeys)
}
