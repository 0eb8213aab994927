package disk

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

// A WAL fsync that fails is fatal: the synced Write panics in its goroutine
// (Pebble cannot go on), Close reports the failure, and a restart recovers
// what was durable before.
func TestWALSyncFailureIsFatal(t *testing.T) {
	var failing atomic.Bool
	fs := errorfs.Wrap(vfs.NewMem(), errorfs.InjectorFunc(func(op errorfs.Op) error {
		if failing.Load() && strings.HasSuffix(op.Path, ".log") &&
			(op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData) {
			return errorfs.ErrInjected
		}
		return nil
	}))
	d := mustOpen(t, fs, "db")
	want := lattice.Cell{Value: &lattice.Max{Value: 1}}
	mustWrite(t, d, true, Change{Key: []byte("a"), Cell: enc(t, want)})

	failing.Store(true)
	require.Panics(t, func() { _ = d.Write([]Change{{Key: []byte("b"), Cell: enc(t, want)}}, true) })
	failing.Store(false)
	require.Error(t, d.Close())

	d = mustOpen(t, fs, "db")
	defer d.Close()
	got, ok := getCell(t, d, "a")
	require.True(t, ok)
	require.True(t, got.Equal(want))
}

// Pebble's chatter stays at Debug; its errors are errors.
func TestPebbleLogLevels(t *testing.T) {
	var rec recordingHandler
	l := pebbleLogger{slog.New(&rec)}
	l.Infof("flushed %d", 1)
	l.Errorf("background error: %s", "boom")
	require.Panics(t, func() { l.Fatalf("fatal %s", "x") })
	require.Equal(t, []slog.Level{slog.LevelDebug, slog.LevelError, slog.LevelError}, rec.levels)
	require.Equal(t, []string{"flushed 1", "background error: boom", "fatal x"}, rec.msgs)
}

type recordingHandler struct {
	levels []slog.Level
	msgs   []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.levels, h.msgs = append(h.levels, r.Level), append(h.msgs, r.Message)
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }
