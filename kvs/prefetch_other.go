//go:build !amd64

package kvs

// prefetch is a no-op where no prefetch instruction is wired up.
func prefetch(uintptr) {}
