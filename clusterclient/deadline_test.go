package clusterclient

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

// A call's context without a deadline gets one Timeout (plus at most the
// slack) away, shared by the calls of a slack period; the caller's
// cancellation and values still reach the call.
func TestDeadlines(t *testing.T) {
	d := deadlines{timeout: time.Hour}
	defer d.close()

	with, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got, done := d.bound(with)
	require.Equal(t, with, got, "a deadline of the caller's own is kept")
	done()

	before := time.Now()
	bg := context.WithValue(context.Background(), ctxKey{}, "v")
	a, doneA := d.bound(bg)
	defer doneA()
	dl, ok := a.Deadline()
	require.True(t, ok)
	require.False(t, dl.Before(before.Add(time.Hour)))
	require.False(t, dl.After(time.Now().Add(time.Hour+deadlineSlack)))
	require.Equal(t, "v", a.Value(ctxKey{}))
	b, doneB := d.bound(context.Background())
	defer doneB()
	dlB, _ := b.Deadline()
	require.Equal(t, dl, dlB, "calls of the same period share a deadline")

	caller, stop := context.WithCancel(bg)
	c, doneC := d.bound(caller)
	defer doneC()
	require.Equal(t, "v", c.Value(ctxKey{}))
	require.NoError(t, c.Err())
	stop()
	<-c.Done()
	require.ErrorIs(t, c.Err(), context.Canceled)
	require.NoError(t, a.Err(), "one caller's cancellation ends only its call")

	// A later period gets a new context; the shared one ends at its
	// deadline.
	first := d.current(time.Now())
	later := d.current(time.Now().Add(deadlineSlack))
	require.NotSame(t, first, later)
	require.NoError(t, first.Err(), "the replaced context still bounds its calls")
	short := deadlines{timeout: time.Millisecond}
	defer short.close()
	s, doneS := short.bound(context.Background())
	defer doneS()
	<-s.Done()
	require.ErrorIs(t, s.Err(), context.DeadlineExceeded)
}
