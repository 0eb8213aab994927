package route

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter is the hclog.Logger that hashicorp/raft, its transport,
// snapshot store and raft-wal log through, writing to a slog.Logger. Raft's
// levels move down one step, because raft's Info is chatty (every election,
// every peer contact): raft Info is slog Debug, raft Debug and Trace are
// below slog Debug; Warn and Error stay.
type hclogAdapter struct {
	base    *slog.Logger // without name and implied args
	l       *slog.Logger // base with name and implied args
	name    string
	implied []any
}

var _ hclog.Logger = (*hclogAdapter)(nil)

func newHclog(l *slog.Logger, name string) hclog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return build(l, name, nil)
}

func build(base *slog.Logger, name string, implied []any) *hclogAdapter {
	return &hclogAdapter{base: base, l: base.With("subsystem", name).With(implied...), name: name, implied: implied}
}

func slogLevel(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace:
		return slog.LevelDebug - 8
	case hclog.Debug:
		return slog.LevelDebug - 4
	case hclog.Warn:
		return slog.LevelWarn
	case hclog.Error:
		return slog.LevelError
	default: // Info, NoLevel
		return slog.LevelDebug
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	if level == hclog.Off {
		return
	}
	ctx := context.Background()
	lv := slogLevel(level)
	if lv == slog.LevelWarn && firstElection(msg, args) {
		lv = slog.LevelDebug // a node that never had a leader: nothing is wrong
	}
	if !a.l.Enabled(ctx, lv) {
		return
	}
	a.l.Log(ctx, lv, msg, plainArgs(args)...)
}

// firstElection reports whether msg is raft's warning that it starts an
// election without ever having heard from a leader: what every new group's
// first node does once, not a sign of trouble.
func firstElection(msg string, args []any) bool {
	if msg != "heartbeat timeout reached, starting election" {
		return false
	}
	for i := 0; i+1 < len(args); i += 2 {
		if k, _ := args[i].(string); k == "last-leader-addr" {
			return fmt.Sprint(args[i+1]) == ""
		}
	}
	return false
}

// plainArgs returns args with hclog's formatting wrappers (hclog.Fmt and
// friends) rendered as strings, copying args only if it has one.
func plainArgs(args []any) []any {
	out := args
	for i, v := range args {
		var s string
		switch v := v.(type) {
		case hclog.Format:
			if len(v) == 0 {
				continue
			}
			f, _ := v[0].(string)
			s = fmt.Sprintf(f, v[1:]...)
		case hclog.Hex:
			s = fmt.Sprintf("0x%x", int(v))
		case hclog.Octal:
			s = fmt.Sprintf("0%o", int(v))
		case hclog.Binary:
			s = fmt.Sprintf("0b%b", int(v))
		case hclog.Quote:
			s = strconv.Quote(string(v))
		default:
			continue
		}
		if &out[0] == &args[0] {
			out = slices.Clone(args)
		}
		out[i] = s
	}
	return out
}

func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }

func (a *hclogAdapter) enabled(level hclog.Level) bool {
	return a.l.Enabled(context.Background(), slogLevel(level))
}

func (a *hclogAdapter) IsTrace() bool { return a.enabled(hclog.Trace) }
func (a *hclogAdapter) IsDebug() bool { return a.enabled(hclog.Debug) }
func (a *hclogAdapter) IsInfo() bool  { return a.enabled(hclog.Info) }
func (a *hclogAdapter) IsWarn() bool  { return a.enabled(hclog.Warn) }
func (a *hclogAdapter) IsError() bool { return a.enabled(hclog.Error) }

func (a *hclogAdapter) ImpliedArgs() []any { return a.implied }

func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return build(a.base, a.name, append(a.implied[:len(a.implied):len(a.implied)], plainArgs(args)...))
}

func (a *hclogAdapter) Name() string { return a.name }

func (a *hclogAdapter) Named(name string) hclog.Logger {
	if a.name != "" {
		name = a.name + "." + name
	}
	return a.ResetNamed(name)
}

func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return build(a.base, name, a.implied)
}

// SetLevel does nothing: the slog handler decides what is written.
func (a *hclogAdapter) SetLevel(hclog.Level) {}

func (a *hclogAdapter) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if a.enabled(lv) {
			return lv
		}
	}
	return hclog.Off
}

func (a *hclogAdapter) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(opts), "", 0)
}

func (a *hclogAdapter) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	level := hclog.Info
	if opts != nil && opts.ForceLevel != hclog.NoLevel {
		level = opts.ForceLevel
	}
	return stdWriter{a: a, level: level}
}

// stdWriter logs each write as one message, with a leading "[LEVEL]" tag
// (as the standard logger of hclog writes it) turned into the level.
type stdWriter struct {
	a     *hclogAdapter
	level hclog.Level
}

func (w stdWriter) Write(p []byte) (int, error) {
	msg := string(bytes.TrimRight(p, "\n"))
	level := w.level
	for _, t := range []struct {
		tag   string
		level hclog.Level
	}{{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info}, {"[WARN]", hclog.Warn}, {"[ERR]", hclog.Error}, {"[ERROR]", hclog.Error}} {
		if rest, ok := strings.CutPrefix(msg, t.tag); ok {
			msg, level = strings.TrimSpace(rest), t.level
			break
		}
	}
	w.a.Log(level, msg)
	return len(p), nil
}
