package clusterclient

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/wire"
)

func TestClassify(t *testing.T) {
	const epoch = 10
	wrongOwner := func(e uint64) error {
		return fmt.Errorf("set: %w", &wire.Error{Code: wire.CodeWrongOwner, Msg: "not mine", Epoch: e})
	}
	for _, tc := range []struct {
		name          string
		err           error
		idem, nonIdem verdict
	}{
		{"success", nil, done, done},
		{"not found", &wire.Error{Code: wire.CodeNotFound}, done, done},
		{"type mismatch", &wire.Error{Code: wire.CodeTypeMismatch}, done, done},
		{"too large", &wire.Error{Code: wire.CodeTooLarge}, done, done},
		{"bad request", &wire.Error{Code: wire.CodeBadRequest}, done, done},
		{"unauthorized", &wire.Error{Code: wire.CodeUnauthorized}, done, done},
		{"internal", &wire.Error{Code: wire.CodeInternal}, done, done},
		{"type mismatch found by the client", fmt.Errorf("%w: key holds a set", client.ErrTypeMismatch), done, done},
		{"undecodable value", errors.New("lattice: bad encoding"), done, done},

		{"wrong owner, newer epoch", wrongOwner(epoch + 1), refresh, refresh},
		{"wrong owner, same epoch", wrongOwner(epoch), next, next},
		{"wrong owner, older epoch", wrongOwner(epoch - 3), next, next},
		{"wrong owner without epoch", wrongOwner(0), next, next},

		// The node answered, but the write may have been applied.
		{"quorum not reached", fmt.Errorf("%w: 0 of 1 acks", &wire.Error{Code: wire.CodeUnavailable}), next, done},
		{"server timeout", &wire.Error{Code: wire.CodeTimeout}, next, done},
		// The request may have reached the node.
		{"connection lost", fmt.Errorf("%w: EOF", client.ErrConnLost), unreachable, done},
		{"attempt timed out", fmt.Errorf("%w: %w", client.ErrTimeout, context.DeadlineExceeded), unreachable, done},
		// Nothing was sent.
		{"dial refused", fmt.Errorf("trellis: dial x: %w: refused", client.ErrUnavailable), unreachable, unreachable},
		{"pool dial failed", &unsentError{fmt.Errorf("%w: connection lost during hello", client.ErrConnLost)}, unreachable, unreachable},
	} {
		require.Equal(t, tc.idem, classify(tc.err, epoch, true), "%s (idempotent)", tc.name)
		require.Equal(t, tc.nonIdem, classify(tc.err, epoch, false), "%s (not idempotent)", tc.name)
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 5*time.Millisecond, 250*time.Millisecond
	var got []time.Duration
	for round := range 8 {
		got = append(got, backoff(round, lo, hi))
	}
	ms := time.Millisecond
	require.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 250 * ms, 250 * ms}, got)
	require.Equal(t, hi, backoff(63, lo, hi), "no overflow")
	require.Equal(t, hi, backoff(1000, lo, hi))
}

func TestCtxErr(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	last := &wire.Error{Code: wire.CodeUnavailable, Msg: "0 of 1 acks"}
	err := ctxErr(ctx, "set", last)
	require.ErrorIs(t, err, client.ErrTimeout)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, client.ErrUnavailable, "the last failure is in the chain")

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	err = ctxErr(ctx, "get", nil)
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, client.ErrTimeout)
}

func TestOptions(t *testing.T) {
	require.Error(t, Options{}.Validate(), "Route is required")
	require.Error(t, Options{Route: []string{""}}.Validate())
	require.Error(t, Options{Route: []string{"r:1"}, Ack: 4}.Validate())
	require.Error(t, Options{Route: []string{"r:1"}, Timeout: -1}.Validate())
	require.Error(t, Options{Route: []string{"r:1"}, MinBackoff: time.Second, MaxBackoff: time.Millisecond}.Validate())
	require.Error(t, Options{Route: []string{"r:1"}, Vnodes: 1 << 20}.Validate())
	require.NoError(t, Options{Route: []string{"r:1"}, RefreshEvery: -1}.Validate(), "negative RefreshEvery: no background refresh")

	d := Options{Route: []string{"r:1"}}.withDefaults()
	require.Equal(t, wire.AckQuorum, d.Ack, "quorum is the cluster default")
	require.Equal(t, DefaultTimeout, d.Timeout)
	require.Equal(t, DefaultRefreshEvery, d.RefreshEvery)
	require.Equal(t, DefaultMinBackoff, d.MinBackoff)
	require.Equal(t, DefaultMaxBackoff, d.MaxBackoff)
	require.Equal(t, DefaultSuspectFor, d.SuspectFor)
	require.Zero(t, d.AttemptTimeout)

	d = Options{Route: []string{"r:1"}, MaxBackoff: time.Millisecond}.withDefaults()
	require.Equal(t, time.Millisecond, d.MinBackoff, "MinBackoff never exceeds MaxBackoff")
	d = Options{Route: []string{"r:1"}, MinBackoff: time.Second}.withDefaults()
	require.Equal(t, time.Second, d.MaxBackoff)
}
