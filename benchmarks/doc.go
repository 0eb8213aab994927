// Package benchmarks measures Trellis: a native-protocol load generator
// (RunKVS) with its latency histogram and key samplers, and the memory
// comparison against Redis (MeasureMemory, built of FillRESP, DBSize,
// ProcessRSS and ListenerPID). The `trellis bench` command is a thin shell
// over it; memory_vs_redis.sh in this directory runs the memory comparison
// end to end.
//
// # Load generation
//
// RunKVS opens one connection per worker (KVSConfig.Conns). Each worker loops
// over: build a batch of KVSConfig.Pipeline operations (gets and sets over
// keys drawn from a uniform or Zipfian distribution), send it in one write,
// wait for every response, record. An operation's latency is its batch's
// round trip, from the write to the last response: every operation of a
// pipelined batch records the same figure, which is how redis-benchmark
// counts pipelined latency. With Pipeline 1 it is the plain request latency.
//
// Workers own their state (generator, histogram, counters); nothing is
// shared on the hot path except one atomic counter per worker that progress
// reports read, and, when a request count bounds the run, one atomic ticket
// counter claimed once per batch. Results are merged after the workers stop.
//
// # Determinism
//
// Randomness comes from KVSConfig.Seed: worker i draws from a PCG generator
// seeded with (Seed, i), so a run's sequence of operations per worker is
// reproducible; which worker runs which share of a request-bounded run is
// not (workers claim batches as they go).
//
// # Keys and values
//
// Keys are "key:%012d" over [0, Keys), the format redis-benchmark uses with
// -r, so the native and the Redis-protocol figures exercise the same
// keyspace. Values are ValueSize bytes, written as LWW registers (SET).
//
// # Memory
//
// MeasureMemory reads a server's VmRSS, writes Keys keys over the Redis
// protocol (so Trellis and redis-server get byte-identical commands), waits
// for things to settle and reads VmRSS again. The process is found from the
// listening port through /proc, so the figures are for local servers.
package benchmarks
