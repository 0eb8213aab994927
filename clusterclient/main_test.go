package clusterclient

import (
	"testing"

	"github.com/trellisdb/trellis/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }
