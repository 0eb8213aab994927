// Package disk is a storage node's disk tier: one Pebble (v2) database that
// holds, for every key, the key's cell (package lattice) as the join of
// everything written to it. The store (package kvs) writes changed cells
// behind its memory tier in batches and reads them back on restart.
//
// # What it owns
//
// A DB owns one Pebble directory (the node's <data-dir>/kvs). User key k is
// stored under the Pebble key 0x01 k: the prefix keeps Pebble keys non-empty
// (Pebble v2.1.7 panics flushing a table whose only key is the empty key) and
// leaves other prefixes free for data that is not a key's cell. A value is a
// cell encoding, lattice.Cell.AppendBinary's canonical bytes.
//
// # The merge operator
//
// Write stores each cell as a Pebble merge operand; the merge operator,
// named trellis.cell.v1, joins a key's operands with lattice.Cell.Merge.
// The join is associative, commutative and idempotent, so it does not matter
// how Pebble groups operands (at read time, during flushes, or during
// compactions of a partial stack without the key's oldest operand) or in
// which order they arrive; a partial join is itself a cell. Hence the store
// may write a key's whole current cell every time (rewriting a cell changes
// nothing) and writes may be replayed. While every operand of a key is a
// plain LWW register (the Redis-string case), the operator compares the
// encodings in place and keeps the greatest, allocating nothing; otherwise it
// decodes the operands, joins them, and encodes the result once.
//
// A Change with a nil Cell deletes the key outright (a Pebble delete, not a
// lattice tombstone: the store uses it to forget tombstones past their
// grace period). Operands merged after a delete start from nothing.
//
// An operand that does not decode as a cell (a bug, or a lattice format this
// binary does not know) must not fail the flushes and compactions that merge
// it: that would stall every write. The operator instead stores a poisoned
// value (a 0xff byte, which no cell encoding starts with, then a message);
// poison absorbs later merges, reads of the key return an error wrapping
// ErrCorrupt until the key is deleted, and other keys are unaffected.
//
// # Format and versioning
//
// Three things version what is on disk. Pebble records the merge operator's
// name and refuses to open a store written with another one: a change to
// what a stored value means that older binaries cannot read gets a new name
// (trellis.cell.v2). Every value carries the lattice format version in its
// second byte; a value of an unknown version reads as ErrCorrupt. And the
// Pebble format major version is pinned to the newest Pebble v2.1.7 knows
// (a test fails when an upgraded Pebble knows a newer one, so that moving to
// it, which old binaries cannot read, is a decision).
//
// Bloom filters (10 bits per key) are on for every level, L0 included, so
// Gets of absent keys rarely read a data block; memtables are 64 MiB.
//
// # Durability
//
// Write applies its changes atomically, as one Pebble batch. With sync it
// returns once the batch, and every write before it, is in the fsynced WAL;
// Write with no changes and sync is a barrier that makes every earlier write
// durable. Synced Writes from many goroutines share fsyncs: Pebble's WAL
// writer syncs once for all the commits queued while the previous fsync ran
// (group commit; a test holds one fsync and shows 31 writers durable after
// one more). Close syncs the WAL too.
//
// # Concurrency
//
// Every method is safe for concurrent use. Close waits for the calls in
// progress, and calls made once Close has begun return ErrClosed (so a Scan
// callback that calls the DB cannot deadlock with Close). Scan reads a
// consistent snapshot taken when it starts.
//
// # How the store uses it
//
// The store's flusher collects the keys changed since its last flush and
// writes their current cells (or, for tombstones collected after their grace,
// deletes) in one Write; a durable client write waits for a synced Write (or
// a sync barrier) that covers it. On start the store loads every key with
// Scan (with a memory budget, only until memory holds the budget); ReadCell
// reads back a key the memory budget evicted, and Scan finds the evicted keys
// for the store's Each. Stats gives numbers for INFO.
//
// Pebble's log lines go to Options.Logger (info at Debug, errors at Error);
// write stalls, slow disks and low disk space are logged at Warn, corrupt
// files at Error (not fatal, unlike Pebble's default: reads that meet them
// fail with ErrCorrupt, and the keys can be rebuilt from replicas).
package disk
