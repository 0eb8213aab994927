package kvs

// prefetch asks the CPU to bring the cache line holding addr into the cache
// (PREFETCHT0). It reads nothing, so it cannot race with writers, and it
// never faults, so addr may be any value.
//
//go:noescape
func prefetch(addr uintptr)
