// Package kvs is a Trellis storage node: a Store that holds lattices in
// shards, and a Server that serves it over the native protocol (package
// wire) and the Redis protocol (package resp).
//
// # Store
//
// Keys are spread over shards by a local consistent-hash ring (package ring,
// xxhash64 of the key). Each shard is a pair of maps guarded by one mutex:
// LWW registers without a delete epoch live in their canonical encoding
// (the Redis-string fast path: one allocation per key, replies are copies),
// every other lattice and every tombstone lives decoded in a lattice.Cell.
// An operation locks exactly one shard, once; there is no lock order to
// respect because no operation holds two shard locks.
//
// Writes merge (lattice join). Writing a lattice of one type onto a key
// holding another returns ErrTypeMismatch and changes nothing. The Redis
// commands that replace a value whatever its type (SET, and INCR on a string
// holding an integer) start a new delete epoch, exactly as a DEL followed by
// the write would, so replicas converge on the same outcome.
//
// Deletes record a tombstone (lattice.Cell with a nil value) that wins over
// every write that did not see it. Tombstones and delete epochs older than
// StoreConfig.TombstoneGrace are forgotten by Collect, which Run calls
// periodically.
//
// With a Disk, Run writes changed keys behind the memory tier (a flush every
// StoreConfig.FlushEvery, or at once for a durable write), and NewStore loads
// them. With a StoreConfig.MemoryBudget as well, a flush that finds the store
// over its budget moves cold keys whose state is on disk out of memory, and
// an operation on such a key reads it back first, so every method answers
// as if it had never left (evict.go; docs/decisions.md §6).
//
// # Server
//
// Each listener is a gnet engine. A read on a connection is parsed into as
// many complete requests as it holds; each runs on the event loop that read
// it (lock shard, operate, unlock) and its reply is appended to one output
// buffer, written once per read. docs/decisions.md records why shards are
// locked in place rather than owned by goroutines that receive requests over
// channels. A connection beyond ServerConfig.MaxConns gets an error and is
// closed; a frame or argument beyond the configured limits gets an error
// (and, when the stream cannot be resynchronised, the connection is closed);
// nothing is buffered for a declared length before it is checked.
//
// # Connections to peers
//
// On a cluster member, each event loop (of either port) keeps its own
// connections to the other storage nodes, opened on first use and owned by
// the loop like its client connections (peers.go). A write that the
// Cluster serves on the loop (Cluster.ServeOnLoop, ReplicateOnLoop) sends
// its REPLICATE calls through them (Loop.Send): the frames of one read's
// writes go out in one write per peer, the peers' responses are read and
// matched to their calls on the same loop, and the replies they complete
// keep their connection's order (the reply queue) and go out in one write
// per client. A write thus never leaves the loop that read it. Every call
// has a deadline, swept on the loop a few times per timeout (the ticker
// asks each loop with calls in flight); a connection that fails, times
// out or holds too much fails every call it holds and is opened anew on
// next use.
//
// # Watches
//
// A Subscription (Store.Subscribe) records which of the keys it watches
// were written since it last asked (watch.go); any number of them watch
// independently, and a store in which nothing is watched pays one atomic
// load per write. A Direct (the store to the roles in the node's process)
// holds one for its executor's cache; on the native port, each connection
// that sends WATCH gets one, closed with the connection, bounded by
// ServerConfig.MaxWatchKeys.
//
// # System connections
//
// A native connection whose HELLO presents ServerConfig.SystemToken may
// write the ServerConfig.Reserved namespace, which every other connection,
// and the Redis port, is refused.
//
// Lifecycle: NewStore and NewServer build complete values; Server.Run and
// Store.Run serve until their context is cancelled.
package kvs
