package benchmarks

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Defaults for MemoryConfig.
const (
	DefaultMemoryTarget = "127.0.0.1:7379"
	DefaultMemoryKeys   = 1_000_000
	DefaultSettle       = 2 * time.Second
)

// MemoryConfig configures MeasureMemory. The zero value means "every
// default".
type MemoryConfig struct {
	// Target is the Redis-protocol address of the server to fill (Trellis's
	// RESP port or a redis-server). Default 127.0.0.1:7379.
	Target string
	// PID is the server's process. Default 0: the local process listening on
	// Target's port (ListenerPID).
	PID int
	// Keys is the number of keys written, "key:%012d" over [0, Keys).
	// Default 1000000.
	Keys int
	// ValueSize is the size of each value in bytes. Default 100.
	ValueSize int
	// Settle is how long to wait after the fill before reading the RSS, so
	// that buffers drain and background work (a GC cycle) runs. Default 2 s.
	Settle time.Duration
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c MemoryConfig) WithDefaults() MemoryConfig {
	if c.Target == "" {
		c.Target = DefaultMemoryTarget
	}
	if c.Keys == 0 {
		c.Keys = DefaultMemoryKeys
	}
	if c.ValueSize == 0 {
		c.ValueSize = DefaultValueSize
	}
	if c.Settle == 0 {
		c.Settle = DefaultSettle
	}
	return c
}

// Validate reports whether c, after defaults, is usable. Its errors wrap
// ErrInvalidConfig.
func (c MemoryConfig) Validate() error {
	c = c.WithDefaults()
	if _, _, err := net.SplitHostPort(c.Target); err != nil {
		return fmt.Errorf("%w: target %q: %v", ErrInvalidConfig, c.Target, err)
	}
	switch {
	case c.PID < 0:
		return fmt.Errorf("%w: pid %d", ErrInvalidConfig, c.PID)
	case c.Keys < 1 || c.Keys > MaxKeys:
		return fmt.Errorf("%w: keys must be in [1, %d], got %d", ErrInvalidConfig, int64(MaxKeys), c.Keys)
	case c.ValueSize < 0:
		return fmt.Errorf("%w: value size %d", ErrInvalidConfig, c.ValueSize)
	case c.Settle < 0:
		return fmt.Errorf("%w: settle %v", ErrInvalidConfig, c.Settle)
	}
	return nil
}

// MemoryResult is what MeasureMemory measured. Bytes per key divide the whole
// RSS by the keys written; delta bytes per key divide the growth during the
// fill, which leaves out the empty server's footprint.
type MemoryResult struct {
	Config           MemoryConfig `json:"-"`
	Target           string       `json:"target"`
	PID              int          `json:"pid"`
	Process          string       `json:"process"` // /proc/<pid>/comm
	Keys             int          `json:"keys"`
	ValueSize        int          `json:"value_size"`
	DBSizeBefore     int64        `json:"dbsize_before"` // -1 if DBSIZE failed
	DBSize           int64        `json:"dbsize"`        // after the fill; -1 if DBSIZE failed
	RSSBefore        int64        `json:"rss_before_bytes"`
	RSS              int64        `json:"rss_bytes"`
	RSSMiB           float64      `json:"rss_mib"`
	BytesPerKey      float64      `json:"bytes_per_key"`
	DeltaBytesPerKey float64      `json:"delta_bytes_per_key"`
	FillSeconds      float64      `json:"fill_s"`
	SettleSeconds    float64      `json:"settle_s"`
}

// MeasureMemory reads the RSS of the server at cfg.Target, fills it with
// cfg.Keys keys by FillRESP, waits cfg.Settle, and reads the RSS again.
// It fails before writing anything when the server's process cannot be
// found (wrapping ErrNoPID). progress is FillRESP's.
func MeasureMemory(ctx context.Context, cfg MemoryConfig, progress func(Progress)) (MemoryResult, error) {
	if err := cfg.Validate(); err != nil {
		return MemoryResult{}, err
	}
	cfg = cfg.WithDefaults()
	r := MemoryResult{Config: cfg, Target: cfg.Target, PID: cfg.PID, Keys: cfg.Keys, ValueSize: cfg.ValueSize}
	if r.PID == 0 {
		pid, err := ListenerPID(cfg.Target)
		if err != nil {
			return r, fmt.Errorf("finding the process listening on %s (pass its pid): %w", cfg.Target, err)
		}
		r.PID = pid
	}
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", r.PID)); err == nil {
		r.Process = strings.TrimSpace(string(comm))
	}
	var err error
	if r.RSSBefore, err = ProcessRSS(r.PID); err != nil {
		return r, err
	}
	if r.DBSizeBefore, err = DBSize(ctx, cfg.Target); err != nil {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.DBSizeBefore = -1
	}

	start := time.Now()
	if err := FillRESP(ctx, cfg.Target, cfg.Keys, cfg.ValueSize, progress); err != nil {
		return r, err
	}
	r.FillSeconds = time.Since(start).Seconds()

	start = time.Now()
	settle := time.NewTimer(cfg.Settle)
	select {
	case <-ctx.Done():
		settle.Stop()
		return r, ctx.Err()
	case <-settle.C:
	}
	r.SettleSeconds = time.Since(start).Seconds()

	if r.RSS, err = ProcessRSS(r.PID); err != nil {
		return r, err
	}
	if r.DBSize, err = DBSize(ctx, cfg.Target); err != nil {
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		r.DBSize = -1
	}
	r.RSSMiB = float64(r.RSS) / (1 << 20)
	r.BytesPerKey = float64(r.RSS) / float64(cfg.Keys)
	r.DeltaBytesPerKey = float64(r.RSS-r.RSSBefore) / float64(cfg.Keys)
	return r, nil
}
