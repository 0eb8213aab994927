package route

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/trellisdb/trellis/ring"
)

// Errors returned by Apply, the decoders and Node. Errors wrap one of these
// with %w; check them with errors.Is.
var (
	// ErrUnknownMember: the command names a member id the state does not
	// hold.
	ErrUnknownMember = errors.New("route: unknown member")
	// ErrBadTransition: the member's current state does not allow the
	// command (Leave of a joining member, Remove of an active one, ...).
	ErrBadTransition = errors.New("route: bad member transition")
	// ErrInvalid: the command is malformed whatever the state (unknown op,
	// member id 0, empty address, replication factor out of range, ...).
	ErrInvalid = errors.New("route: invalid command")
	// ErrMalformed: bytes given to DecodeState or DecodeCommand are not a
	// canonical encoding of a valid value.
	ErrMalformed = errors.New("route: malformed encoding")
	// ErrUnsupportedVersion: an encoding carries a format version this
	// package does not read.
	ErrUnsupportedVersion = errors.New("route: unsupported format version")
)

// DefaultReplication is the replication factor RF reports when the state
// has no DefaultRF yet (a cluster whose bootstrap SetDefaultRF has not
// committed), and the DefaultRF a bootstrapping Node proposes unless
// configured otherwise.
const DefaultReplication = 3

// MaxRF is the largest replication factor SetRF and SetDefaultRF accept.
const MaxRF = 1024

// DefaultVnodes is the number of virtual nodes per member of the global ring
// (docs/cluster-design.md, "Placement"). Every participant must build the
// ring with the same count.
const DefaultVnodes = 128

// MemberState is where a storage node is in its membership life cycle.
// The numeric values are part of the encoding and never change.
type MemberState uint8

// Member states.
const (
	// Joining: registered, receiving the keys it will own; on the pending
	// ring only.
	Joining MemberState = 1
	// Active: on the ring, serving its keys.
	Active MemberState = 2
	// Leaving: still on the ring while it hands its keys over; off the
	// pending ring.
	Leaving MemberState = 3
	// Down: declared failed (no heartbeat); on neither ring.
	Down MemberState = 4
)

func (s MemberState) String() string {
	switch s {
	case Joining:
		return "joining"
	case Active:
		return "active"
	case Leaving:
		return "leaving"
	case Down:
		return "down"
	}
	return "MemberState(" + strconv.Itoa(int(s)) + ")"
}

func (s MemberState) valid() bool { return s >= Joining && s <= Down }

// Member is a storage node as the routing tier knows it.
type Member struct {
	ID       uint64      // node id, non-zero; its ring member id is the id in decimal
	Addr     string      // native-protocol address, non-empty
	RESPAddr string      // Redis-protocol address, empty if the node serves none
	State    MemberState // set by Apply; ignored in a Register command
}

// State is the cluster state the routing tier replicates: the storage
// members, the replication factors, and the epoch that numbers its versions.
//
// A State is a value, but its Members slice and KeyRF map may be shared with
// other States (Apply copies only what it changes, and Node.State hands out
// its current State without copying). Treat every State as immutable; use
// Clone to get one that may be modified.
type State struct {
	// Epoch counts the commands that changed the state: Apply adds one
	// exactly when the returned state differs from its input.
	Epoch uint64
	// Members holds the storage members, sorted by ID, ids unique.
	Members []Member
	// DefaultRF is the replication factor of keys without an override; 0
	// only before a cluster's first SetDefaultRF (RF then reports
	// DefaultReplication).
	DefaultRF int
	// KeyRF holds per-key replication factors, each in [1, MaxRF].
	KeyRF map[string]int
}

// Clone returns a deep copy of s.
func (s State) Clone() State {
	s.Members = slices.Clone(s.Members)
	s.KeyRF = maps.Clone(s.KeyRF)
	return s
}

// Equal reports whether s and t hold the same state, including the epoch.
// A nil and an empty Members or KeyRF are equal.
func (s State) Equal(t State) bool {
	return s.Epoch == t.Epoch && s.DefaultRF == t.DefaultRF &&
		slices.Equal(s.Members, t.Members) && maps.Equal(s.KeyRF, t.KeyRF)
}

// Member returns the member with the given id.
func (s State) Member(id uint64) (Member, bool) {
	i, ok := s.find(id)
	if !ok {
		return Member{}, false
	}
	return s.Members[i], true
}

func (s State) find(id uint64) (int, bool) {
	return slices.BinarySearchFunc(s.Members, id, func(m Member, id uint64) int {
		switch {
		case m.ID < id:
			return -1
		case m.ID > id:
			return 1
		}
		return 0
	})
}

// Quorum is the number of a key's replicas that must hold a write
// acknowledged by a quorum: a majority of the r members of the set that
// counts (the storage nodes' rule; a client sending a quorum write to the
// replicas itself uses it too).
func Quorum(r int) int { return r/2 + 1 }

// RF returns the replication factor of key: its override in KeyRF, else
// DefaultRF, else DefaultReplication.
func (s State) RF(key []byte) int {
	if n, ok := s.KeyRF[string(key)]; ok {
		return n
	}
	if s.DefaultRF > 0 {
		return s.DefaultRF
	}
	return DefaultReplication
}

// Ring returns the global ring: the members in state Active or Leaving, in
// ID order, each with member id strconv.FormatUint(ID, 10) and vnodes
// virtual nodes. It returns a nil ring and no error when there are no such
// members. Keys are served by their responsible set on this ring.
func (s State) Ring(vnodes int) (*ring.Ring, error) {
	return s.ring(vnodes, func(st MemberState) bool { return st == Active || st == Leaving })
}

// PendingRing returns the ring as it will be once the pending hand-offs
// finish: the members in state Active or Joining (Leaving ones excluded),
// built like Ring. When no member is Joining or Leaving it has the same
// members as Ring. During a hand-off, writes go to the union of a key's
// responsible sets on both rings.
func (s State) PendingRing(vnodes int) (*ring.Ring, error) {
	return s.ring(vnodes, func(st MemberState) bool { return st == Active || st == Joining })
}

func (s State) ring(vnodes int, on func(MemberState) bool) (*ring.Ring, error) {
	var ids []string
	for _, m := range s.Members {
		if on(m.State) {
			ids = append(ids, strconv.FormatUint(m.ID, 10))
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	return ring.New(ids, vnodes)
}

// Responsible appends to dst the members responsible for key on r, which
// must have been built from s (by s.Ring or s.PendingRing): the first
// RF(key) distinct members clockwise from the key's hash, or all members of
// r if there are fewer. A nil r appends nothing.
func (s State) Responsible(r *ring.Ring, key []byte, dst []Member) []Member {
	if r == nil {
		return dst
	}
	var buf [8]int
	for _, i := range r.Replicas(ring.KeyHash(key), s.RF(key), buf[:0]) {
		id, err := strconv.ParseUint(r.Member(i), 10, 64)
		if err != nil {
			continue // not a ring of this state
		}
		if m, ok := s.Member(id); ok {
			dst = append(dst, m)
		}
	}
	return dst
}

// CommandOp names a command. The numeric values are part of the encoding
// and never change.
type CommandOp uint8

// Commands. Each uses the Command fields named in its comment.
const (
	OpRegister     CommandOp = 1 // Member (ID, Addr, RESPAddr)
	OpActivate     CommandOp = 2 // ID
	OpLeave        CommandOp = 3 // ID
	OpRemove       CommandOp = 4 // ID
	OpMarkDown     CommandOp = 5 // ID
	OpSetRF        CommandOp = 6 // Key, RF
	OpSetDefaultRF CommandOp = 7 // RF
)

func (op CommandOp) String() string {
	switch op {
	case OpRegister:
		return "register"
	case OpActivate:
		return "activate"
	case OpLeave:
		return "leave"
	case OpRemove:
		return "remove"
	case OpMarkDown:
		return "mark-down"
	case OpSetRF:
		return "set-rf"
	case OpSetDefaultRF:
		return "set-default-rf"
	}
	return "CommandOp(" + strconv.Itoa(int(op)) + ")"
}

// Command is one change to the State: an entry of the routing tier's Raft
// log. Only the fields its Op uses (see the Op constants) are meaningful;
// the encoding carries only those.
type Command struct {
	Op     CommandOp
	Member Member // OpRegister; Member.State is ignored
	ID     uint64 // OpActivate, OpLeave, OpRemove, OpMarkDown
	Key    string // OpSetRF
	RF     int    // OpSetRF (0 removes the override), OpSetDefaultRF
}

// Validate reports the errors of c that do not depend on the state it is
// applied to, wrapping ErrInvalid: an unknown op, a member id of 0, an
// empty address, an empty key, a factor out of range.
func (c Command) Validate() error {
	switch c.Op {
	case OpRegister:
		if c.Member.ID == 0 {
			return fmt.Errorf("%w: register: member id 0", ErrInvalid)
		}
		if c.Member.Addr == "" {
			return fmt.Errorf("%w: register %d: empty address", ErrInvalid, c.Member.ID)
		}
	case OpActivate, OpLeave, OpRemove, OpMarkDown:
		if c.ID == 0 {
			return fmt.Errorf("%w: %s: member id 0", ErrInvalid, c.Op)
		}
	case OpSetRF:
		if c.Key == "" {
			return fmt.Errorf("%w: set-rf: empty key", ErrInvalid)
		}
		if c.RF < 0 || c.RF > MaxRF {
			return fmt.Errorf("%w: set-rf %q: factor %d not in [0, %d]", ErrInvalid, c.Key, c.RF, MaxRF)
		}
	case OpSetDefaultRF:
		if c.RF < 1 || c.RF > MaxRF {
			return fmt.Errorf("%w: set-default-rf: factor %d not in [1, %d]", ErrInvalid, c.RF, MaxRF)
		}
	default:
		return fmt.Errorf("%w: unknown op %d", ErrInvalid, c.Op)
	}
	return nil
}

// Apply returns the state after command c. It never modifies s: the result
// shares with s whatever c does not change. On error (ErrInvalid,
// ErrUnknownMember, ErrBadTransition) it returns s itself. The result's
// Epoch is s.Epoch+1 exactly when the result differs from s; a command that
// changes nothing (re-activating an active member, say) is not an error.
//
// Member transitions (absent means the id is not in Members):
//
//	op        absent          Joining     Active      Leaving     Down
//	Register  Joining         Joining*    Active*     Joining*    Joining*
//	Activate  unknown         Active      no change   bad         bad
//	Leave     unknown         bad         Leaving     no change   bad
//	Remove    unknown         bad         bad         removed     removed
//	MarkDown  unknown         Down        Down        Down        no change
//
// * with the command's addresses. A Register of a Joining or Active member
// with the addresses it already has changes nothing. "unknown" is
// ErrUnknownMember, "bad" ErrBadTransition.
//
// SetRF(key, n) sets key's override to n, or removes it when n is 0;
// SetDefaultRF(n) sets DefaultRF. Factors are in [1, MaxRF].
func Apply(s State, c Command) (State, error) {
	if err := c.Validate(); err != nil {
		return s, err
	}
	switch c.Op {
	case OpSetRF:
		old, had := s.KeyRF[c.Key]
		if (c.RF == 0 && !had) || (had && old == c.RF) {
			return s, nil
		}
		next := s
		next.KeyRF = maps.Clone(s.KeyRF)
		if c.RF == 0 {
			delete(next.KeyRF, c.Key)
		} else {
			if next.KeyRF == nil {
				next.KeyRF = make(map[string]int, 1)
			}
			next.KeyRF[c.Key] = c.RF
		}
		next.Epoch++
		return next, nil
	case OpSetDefaultRF:
		if s.DefaultRF == c.RF {
			return s, nil
		}
		next := s
		next.DefaultRF = c.RF
		next.Epoch++
		return next, nil
	case OpRegister:
		return register(s, c.Member)
	}

	i, ok := s.find(c.ID)
	if !ok {
		return s, fmt.Errorf("%w: %s %d", ErrUnknownMember, c.Op, c.ID)
	}
	cur := s.Members[i].State
	var to MemberState
	switch c.Op {
	case OpActivate:
		to = transition(cur, Active, Joining)
	case OpLeave:
		to = transition(cur, Leaving, Active)
	case OpMarkDown:
		to = transition(cur, Down, Joining, Active, Leaving)
	case OpRemove:
		if cur != Leaving && cur != Down {
			return s, fmt.Errorf("%w: remove %d: member is %s", ErrBadTransition, c.ID, cur)
		}
		next := s
		next.Members = slices.Delete(slices.Clone(s.Members), i, i+1)
		next.Epoch++
		return next, nil
	}
	switch to {
	case 0:
		return s, fmt.Errorf("%w: %s %d: member is %s", ErrBadTransition, c.Op, c.ID, cur)
	case cur:
		return s, nil
	}
	next := s
	next.Members = slices.Clone(s.Members)
	next.Members[i].State = to
	next.Epoch++
	return next, nil
}

// transition returns to if cur is to (no change) or one of from, else 0.
func transition(cur, to MemberState, from ...MemberState) MemberState {
	if cur == to || slices.Contains(from, cur) {
		return to
	}
	return 0
}

func register(s State, m Member) (State, error) {
	m.State = Joining
	i, ok := s.find(m.ID)
	next := s
	if !ok {
		next.Members = slices.Insert(slices.Clone(s.Members), i, m)
		next.Epoch++
		return next, nil
	}
	cur := s.Members[i]
	if cur.State == Active {
		m.State = Active
	}
	if cur == m {
		return s, nil
	}
	next.Members = slices.Clone(s.Members)
	next.Members[i] = m
	next.Epoch++
	return next, nil
}
