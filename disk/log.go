package disk

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleLogger adapts a slog.Logger to Pebble's Logger: Infof at Debug,
// Errorf at Error. Fatalf logs at Error and panics: Pebble calls it on
// states it cannot continue from (a failed WAL write, a broken invariant)
// and does not expect it to return.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "pebble", "fatal", true)
	panic("disk: " + msg)
}

// eventListener logs the Pebble events an operator should see and counts
// those Stats reports. Unlike Pebble's default, a corrupt file is logged, not
// fatal: reads that meet it fail with ErrCorrupt, and the store can rebuild
// the keys from replicas.
func (d *DB) eventListener() *pebble.EventListener {
	return &pebble.EventListener{
		BackgroundError: func(err error) {
			d.log.Error("pebble: background error", "err", err)
		},
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			d.corruptions.Add(1)
			d.log.Error("pebble: corrupt data", "path", info.Path, "bounds", info.Bounds.String(), "err", info.Details)
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			d.stalls.Add(1)
			d.log.Warn("pebble: write stall begins", "reason", info.Reason)
		},
		WriteStallEnd: func() {
			d.log.Info("pebble: write stall ends")
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			d.log.Warn("pebble: slow disk operation", "path", info.Path, "op", info.OpType.String(), "duration", info.Duration)
		},
		LowDiskSpace: func(info pebble.LowDiskSpaceInfo) {
			d.log.Warn("pebble: low disk space", "available_bytes", info.AvailBytes, "total_bytes", info.TotalBytes)
		},
	}
}
