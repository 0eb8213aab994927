// Package ring places keys on members by consistent hashing with virtual
// nodes.
//
// Trellis uses two rings of this one kind: the global ring places a key on
// storage nodes (members are node ids), and each storage node's local ring
// places it on one of its shards (NewShards). A key is hashed once, with
// KeyHash; the global ring is looked up with that hash, the local ring with
// ShardHash of it (the hash's halves swapped), which keeps the two
// placements independent.
//
// Placement is part of the wire contract, so clients in any language can
// compute it; docs/placement.md specifies it with worked examples, which
// this package's tests check:
//
//   - the key hash is XXH64 with seed 0 of the key's bytes (KeyHash);
//   - virtual node i of member m sits at XXH64(m || 0x00 || uint32be(i))
//     (Point), for 0 <= i < vnodes;
//   - points are sorted ascending, equal points by member id (bytewise)
//     and then by vnode index;
//   - hash h belongs to the member of the first point >= h, or of the first
//     point when h is beyond the last (Owner);
//   - the replicas of h are the first n distinct members met walking on
//     from there, wrapping around (Replicas).
//
// A Ring is immutable and safe for concurrent use; a membership change
// builds a new Ring. Adding a member moves to it only the keys it now owns,
// about 1/(n+1) of them, and removing one moves only its own keys.
// The package is pure: no I/O, no goroutines, no clock.
package ring
