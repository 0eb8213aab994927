package route

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHclogAdapter(t *testing.T) {
	var buf bytes.Buffer
	l := newHclog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), "raft")
	lines := func() []string {
		defer buf.Reset()
		return strings.Split(strings.TrimSpace(buf.String()), "\n")
	}

	l.Info("elected", "term", 2)
	l.Debug("chatter")
	l.Trace("more chatter")
	if got := lines(); len(got) != 1 || !strings.Contains(got[0], "level=DEBUG") || !strings.Contains(got[0], `msg=elected subsystem=raft term=2`) {
		t.Fatalf("raft Info at slog Debug, raft Debug dropped: %q", got)
	}
	if !l.IsInfo() || l.IsDebug() || l.GetLevel() != hclog.Info {
		t.Fatalf("levels: IsInfo %v IsDebug %v GetLevel %v", l.IsInfo(), l.IsDebug(), l.GetLevel())
	}

	w := l.Named("net").With("peer", "n2")
	w.Warn("slow", "pct", hclog.Fmt("%0.1f%%", 12.5), "x", hclog.Hex(255))
	got := lines()
	if len(got) != 1 || !strings.Contains(got[0], `level=WARN msg=slow subsystem=raft.net peer=n2 pct=12.5% x=0xff`) {
		t.Fatalf("named, with, formatted: %q", got)
	}
	if w.Name() != "raft.net" || len(w.ImpliedArgs()) != 2 {
		t.Fatalf("name %q implied %v", w.Name(), w.ImpliedArgs())
	}

	std := l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	std.Print("[ERR] broken pipe")
	std.Print("plain")
	if got := lines(); len(got) != 2 || !strings.Contains(got[0], `level=ERROR msg="broken pipe"`) || !strings.Contains(got[1], "level=DEBUG msg=plain") {
		t.Fatalf("standard logger: %q", got)
	}
}

// A new group's first election is not a warning; a lost leader is.
func TestFirstElectionIsNotAWarning(t *testing.T) {
	var buf bytes.Buffer
	l := newHclog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})), "raft")
	type serverAddress string // as raft passes it
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", serverAddress(""), "last-leader-id", "")
	if buf.Len() != 0 {
		t.Fatalf("first election logged at Info or above: %q", buf.String())
	}
	l.Warn("heartbeat timeout reached, starting election", "last-leader-addr", serverAddress("10.0.0.1:7810"), "last-leader-id", "r1")
	if !strings.Contains(buf.String(), "level=WARN") {
		t.Fatalf("a lost leader must warn: %q", buf.String())
	}
}
