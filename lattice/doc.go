// Package lattice holds Trellis's value types: lattices, whose Merge is
// associative, commutative and idempotent (ACI), so replicas that apply the
// same updates in any order, any number of times, converge without
// coordination. Every value the store holds is a Lattice, wrapped in a Cell
// that carries deletes. The package also owns the hybrid logical clock
// (Clock) that stamps LWW writes and deletes, and the values' byte encoding.
//
// The package is pure: standard library and pack only, no goroutines, no
// I/O, no clock reads (Clock is given wall time as a function).
//
// # Types
//
// LWW (last-writer-wins register), GSet (grow-only set), ORSet
// (observed-remove set, add-wins), OrderedSet (grow-only set with range
// reads), Map (keys to lattices), Max, MinPriority, BoolOr, Counter
// (PN-counter), VClock (vector clock), SingleCausal and MultiCausal (causal
// values: antichains of versions, concurrent versions kept as siblings).
// Each is a pointer type whose zero value is ready to use. docs/lattices.md
// gives every type's merge rule and exact encoding.
//
// # Invariants
//
//   - Merge(other) makes the receiver the least upper bound of itself and
//     other, reports exactly whether it changed, and neither modifies nor
//     retains other (it copies what it keeps, so other may alias a network
//     buffer). Merging another type is an error wrapping ErrTypeMismatch and
//     leaves the receiver unchanged. The ACI laws, Merge's changed flag and
//     its copying are property-tested for every type.
//   - Ties never depend on arrival order: LWW orders by (timestamp, writer,
//     value bytes); causal values keep versions with equal clocks and
//     different payloads as siblings.
//   - Mixed types: MergeValues never fails. Two values of the same type
//     merge; of different types, the one with the larger Type wins (the
//     ordinal sum of the lattices), so replica merges are total. Writes by
//     clients must not change a key's type: Cell.Write returns
//     ErrTypeMismatch and leaves the stored value untouched.
//   - Encoding: byte 0 is the Type tag, byte 1 the format version
//     (FormatVersion, 1 for every type), then exactly one msgpack value.
//     Encodings are canonical: equal values encode to identical bytes.
//     Decode accepts only canonical encodings (for every b it accepts,
//     Encode(Decode(b)) == b), refuses unknown tags (ErrUnknownType) and
//     versions (ErrUnsupportedVersion), and reports everything else,
//     including unsorted or duplicate elements, keys and actors and states
//     that break a type's invariants, as ErrMalformed. It validates the
//     payload with pack.Validate before building anything, so what it
//     allocates is bounded by the input's length, and Map values nest at
//     most MaxDepth deep. Decoding is fuzzed.
//
// # Deletion
//
// A Cell is a value plus the Stamp (HLC timestamp, node id) of the key's
// last delete, its epoch. Cells merge lexicographically: the larger epoch
// wins outright; equal epochs merge their values (nil is the bottom). A
// delete at a replica starts a new epoch with no value (Cell.Delete), so it
// wins over every write of an older epoch, including writes concurrent with
// it: delete wins over concurrent writes. A write that reaches a replica
// after the delete merges into the tombstone's epoch (Cell.Write) and
// survives. An empty value is not a missing key: a Cell with an empty set is
// present. Tombstones are garbage-collected by the store after a grace
// period longer than gossip and anti-entropy take to spread them.
//
// # Use
//
// A storage shard keeps a Cell per key and is the values' only owner (no
// value is safe for concurrent use; Clock is). A client write is decoded
// with Decode and applied with Cell.Write; gossip and hand-off carry cells,
// decoded with DecodeCell and applied with Cell.Merge; a delete is
// c.Delete(Stamp{clock.Observe(c.Epoch.TS), nodeID}). The LWW hot path
// needs no decoding: AppendLWW writes an encoding whose timestamp and writer
// sit at fixed offsets, and ParseLWW reads it without allocating.
//
// Work is bounded by input size: Decode and Merge are linear in their
// inputs, except that causal values compare every pair of versions
// (quadratic in the number of siblings) and Map values are validated once
// per nesting level. Callers bound value sizes at the protocol layer.
package lattice
