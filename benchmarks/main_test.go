package benchmarks

import (
	"testing"

	"github.com/trellisdb/trellis/internal/leakcheck"
)

// TestMain fails the run if a test leaves a goroutine behind.
func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
