package lattice

import (
	"errors"
	"fmt"
	"strconv"
)

// Type identifies a lattice type. Its value is the first byte of every
// encoding and is fixed forever: a new type gets a new number.
type Type uint8

// Lattice types. The numbers are part of the wire format. They also order
// the types for MergeValues: when two replicas hold values of different
// types, the value whose Type is larger wins.
const (
	TypeLWW          Type = 1  // last-writer-wins register
	TypeGSet         Type = 2  // grow-only set of byte strings
	TypeORSet        Type = 3  // observed-remove set, add-wins
	TypeOrderedSet   Type = 4  // grow-only set kept in byte order
	TypeMap          Type = 5  // map from keys to lattices
	TypeMax          Type = 6  // int64, merge = max
	TypeMinPriority  Type = 7  // (priority, value), merge keeps the lowest
	TypeBoolOr       Type = 8  // bool, merge = or
	TypeCounter      Type = 9  // PN-counter
	TypeVClock       Type = 10 // vector clock
	TypeSingleCausal Type = 11 // single-key causal value
	TypeMultiCausal  Type = 12 // multi-key causal value

	// TypeCell tags the encoding of a Cell that carries a delete epoch. It is
	// not a lattice type: Decode refuses it; DecodeCell reads it.
	TypeCell Type = 0x40
)

// String returns the type's lower-case name ("lww", "gset", ...), or
// "Type(N)" for a number that names no type.
func (t Type) String() string {
	switch t {
	case TypeLWW:
		return "lww"
	case TypeGSet:
		return "gset"
	case TypeORSet:
		return "orset"
	case TypeOrderedSet:
		return "orderedset"
	case TypeMap:
		return "map"
	case TypeMax:
		return "max"
	case TypeMinPriority:
		return "minpriority"
	case TypeBoolOr:
		return "boolor"
	case TypeCounter:
		return "counter"
	case TypeVClock:
		return "vclock"
	case TypeSingleCausal:
		return "singlecausal"
	case TypeMultiCausal:
		return "multicausal"
	case TypeCell:
		return "cell"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// isLattice reports whether t names a lattice type that Decode understands.
func (t Type) isLattice() bool { return t >= TypeLWW && t <= TypeMultiCausal }

// Lattice is a value whose Merge is associative, commutative and idempotent.
// Every value the store holds is one.
//
// The package's implementations are the pointer types *LWW, *GSet, *ORSet,
// *OrderedSet, *Map, *Max, *MinPriority, *BoolOr, *Counter, *VClock,
// *SingleCausal and *MultiCausal. Their zero values are ready to use. None is
// safe for concurrent use: a value has one owner (a shard), and concurrent
// readers need the owner's lock or a Clone.
type Lattice interface {
	// Type returns the value's type tag.
	Type() Type
	// Merge merges other into the receiver in place; afterwards the receiver
	// is the least upper bound of its old value and other. other is neither
	// modified nor retained: what the receiver keeps is copied, so other's
	// byte slices may point into a buffer that is reused afterwards.
	// changed reports whether the receiver's value changed. If other is nil
	// or not of the receiver's type, Merge returns an error wrapping
	// ErrTypeMismatch and leaves the receiver unchanged.
	Merge(other Lattice) (changed bool, err error)
	// Clone returns a deep copy that shares no memory with the receiver.
	Clone() Lattice
	// Equal reports semantic equality of the full lattice state (including
	// causal metadata such as an ORSet's context). nil and empty byte
	// slices are equal. A value of another type is never equal.
	Equal(other Lattice) bool
	// AppendBinary appends the value's canonical encoding (type tag, format
	// version, msgpack payload) to b. Equal values append identical bytes.
	// It fails only with ErrTooLarge, leaving b's contents unchanged.
	AppendBinary(b []byte) ([]byte, error)
	// Size returns the approximate number of bytes the value holds in
	// memory, for statistics and memory budgets.
	Size() int
}

// Errors. Functions wrap them with detail; test with errors.Is.
var (
	// ErrTypeMismatch: a merge or write of one lattice type onto another.
	ErrTypeMismatch = errors.New("lattice: type mismatch")
	// ErrMalformed: bytes that are not a canonical encoding of a value.
	ErrMalformed = errors.New("lattice: malformed encoding")
	// ErrUnknownType: an encoding whose type tag this package does not know.
	ErrUnknownType = errors.New("lattice: unknown type")
	// ErrUnsupportedVersion: an encoding whose format version this package
	// does not know.
	ErrUnsupportedVersion = errors.New("lattice: unsupported format version")
	// ErrOverflow: a counter operation whose result would leave int64 (or
	// an actor's count would leave uint64).
	ErrOverflow = errors.New("lattice: counter overflow")
	// ErrTooLarge: a value beyond the encoding's limits: a byte string or
	// collection longer than 2^32-1, or values nested deeper than MaxDepth.
	ErrTooLarge = errors.New("lattice: value too large to encode")
)

// mismatch builds the error a Merge returns for an other it cannot merge.
func mismatch(want Type, other Lattice) error {
	if other == nil {
		return fmt.Errorf("%w: cannot merge nil into %s", ErrTypeMismatch, want)
	}
	return fmt.Errorf("%w: cannot merge %s (%T) into %s", ErrTypeMismatch, other.Type(), other, want)
}

// MergeValues returns the join of a and b in the ordinal sum of all lattice
// types, so it never fails and replicas holding different types converge:
//
//   - same Type: b is merged into a, and a (mutated) is returned;
//   - different Types: the value with the larger Type wins: a itself if its
//     Type is larger, otherwise a clone of b;
//   - nil is the bottom: MergeValues(nil, b) is a clone of b, and
//     MergeValues(a, nil) is a.
//
// b is never modified or retained. a and b must be values of this package
// (a foreign Lattice with a known Type tag makes it panic).
func MergeValues(a, b Lattice) Lattice {
	v, _ := mergeValues(a, b)
	return v
}

// mergeValues is MergeValues that also reports whether the result differs
// from a.
func mergeValues(a, b Lattice) (Lattice, bool) {
	switch {
	case b == nil:
		return a, false
	case a == nil:
		return b.Clone(), true
	}
	ta, tb := a.Type(), b.Type()
	switch {
	case ta < tb:
		return b.Clone(), true
	case ta > tb:
		return a, false
	}
	changed, err := a.Merge(b)
	if err != nil {
		panic(fmt.Sprintf("lattice: MergeValues: %v", err))
	}
	return a, changed
}
