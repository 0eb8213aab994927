// Package leakcheck runs a package's tests and then fails if any goroutine
// is left behind, ignoring the ones that are not Trellis's to stop.
package leakcheck

import (
	"testing"

	"go.uber.org/goleak"
)

// ignored are goroutines that live as long as the process by design:
// gnet's package-level worker pool (ants), started when gnet is initialised
// and shared by every engine, and its idle workers (gnet dials a
// connection registered on an event loop, a storage node's to its peers,
// on one; it idles 10 s before it exits).
var ignored = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
	goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"),
	goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*goWorker).run.func1"),
}

// Find reports the goroutines left behind (nil if none), ignoring the same
// ones as VerifyTestMain: for a TestMain with work of its own after the
// tests.
func Find(opts ...goleak.Option) error { return goleak.Find(append(ignored, opts...)...) }

// VerifyTestMain runs m's tests, then checks for leaked goroutines; call it
// from TestMain.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(m, append(ignored, opts...)...)
}
