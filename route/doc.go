// Package route is the routing tier's cluster state and its replication
// with Raft: which storage nodes exist and in what state, the replication
// factors, and the epoch that numbers every version of that state
// (docs/cluster-design.md, "Cluster state" and "Placement").
//
// The package has a pure core and a Raft edge. The core (State, Command,
// Apply, the encodings, Liveness) does no I/O, starts no goroutines and
// reads no clock. Node wires Apply into hashicorp/raft as its FSM, with
// raft-wal as the log and stable store and file snapshots.
//
// # State and commands
//
// A State holds the storage Members (sorted by id), DefaultRF, per-key
// overrides in KeyRF, and Epoch. Apply(s, c) returns the next state and
// never modifies s; the result shares unchanged slices and maps with s, so
// every State is treated as immutable (Clone gives a private copy). Epoch
// grows by exactly one for each command that changes the state, so two
// States of one cluster with equal epochs are equal, and a larger epoch is a
// later state.
//
// Member life cycle (absent: the id is not a member; "unknown" is
// ErrUnknownMember, "bad" ErrBadTransition; both leave the state as it was):
//
//	op        absent    Joining     Active      Leaving     Down
//	Register  Joining   Joining*    Active*     Joining*    Joining*
//	Activate  unknown   Active      no change   bad         bad
//	Leave     unknown   bad         Leaving     no change   bad
//	Remove    unknown   bad         bad         removed     removed
//	MarkDown  unknown   Down        Down        Down        no change
//
// (* with the command's addresses; re-registering a Joining or Active member
// with the addresses it has is no change.) A storage node registers
// (Joining), receives the keys it will own, and is activated when the
// hand-off is done; it leaves (Leaving), hands its keys on and is removed. A
// node without heartbeats is marked Down and removed; if it comes back it
// registers again. Commands that target a state the member is already in
// change nothing and are not errors, so every command is idempotent and a
// client may retry one whose outcome it did not learn.
//
// SetRF(key, n) overrides a key's replication factor (n in [1, MaxRF]; 0
// removes the override); SetDefaultRF(n) sets the default. Commands invalid
// whatever the state (member id 0, empty address, factor out of range, an
// unknown op) are ErrInvalid; Command.Validate finds them without a state.
//
// # Placement
//
// Ring builds the global ring (package ring, DefaultVnodes per member) of
// the Active and Leaving members, member id = the node id in decimal;
// PendingRing builds the ring that will hold once the hand-offs in progress
// finish: Active and Joining members. A key's responsible set on a ring is
// the first RF(key) distinct members from its hash (State.Responsible).
//
// A client fetches the State from any routing node, builds Ring once per
// epoch, and sends each request to a member of the key's responsible set
// with the epoch it used. A storage node keeps the newest State it has seen
// and both rings: it serves a key if it is in the key's responsible set on
// either ring, and otherwise answers wrong owner with its epoch; gossip for
// a key goes to the union of both sets. Whoever sees a larger epoch than its
// own refreshes from the routing tier.
//
// # Encodings
//
// State and Command encode (AppendBinary) as msgpack arrays whose first
// element is a format version (StateFormatVersion, CommandFormatVersion);
// they are the Raft log entries and snapshots, so they outlive binaries.
// DecodeState and DecodeCommand check the bytes with pack.Validate first,
// allocate in proportion to the input, refuse other versions
// (ErrUnsupportedVersion), and accept only the canonical encoding of a valid
// value (ErrMalformed otherwise). Both are fuzzed.
//
// # Node
//
// NewNode opens DataDir (raft-wal log under wal/, snapshots under
// snapshots/, a lock file) and starts Raft. With Config.Bootstrap on an
// empty DataDir it forms a cluster of itself alone and, once it leads,
// commits SetDefaultRF(Config.DefaultRF); other nodes start without
// Bootstrap and wait until the leader adds them (AddVoter). A restarted node
// restores its newest snapshot before NewNode returns and replays the rest
// of its log once it learns the commit index.
//
// Every node serves State, Watch, Leader and WatchLeader from memory,
// without blocking: State is an atomically published immutable value, and
// Watch and WatchLeader return channels closed on the next change, for
// waiting without polling. Propose, AddVoter and RemoveServer work on the
// leader only; elsewhere they return a *NotLeaderError (ErrNotLeader) naming
// the leader, where the caller retries. Propose returns the state right
// after its command applied.
//
// Raft starts its own goroutines (its main loop, the FSM and snapshot
// loops, replication to each follower, the transport's listener and
// connection handlers); the Node adds a leadership watcher, the DefaultRF
// initialiser of a bootstrapping node, and one goroutine per call waiting on
// Raft with a context. Close stops all of them, closes the transport and the
// stores, and is idempotent.
//
// # Liveness
//
// Liveness is not replicated. The leader feeds storage nodes' heartbeats to
// a Liveness with the time they arrived, asks it periodically which members
// are Expired (no heartbeat for down-after, default 5 s), and proposes
// MarkDown for each. A new leader starts with an empty Liveness, which gives
// every member a full down-after before it can be marked down.
//
// # Service and Client
//
// Service is a routing node's network face, a wireserver.Handler for the
// native protocol's routing ops: wire.OpRing (the local State's encoding,
// from any node), wire.OpCommand (a Command encoding, proposed; the State
// after it; on a follower "unavailable", naming the leader) and
// wire.OpHeartbeat (a member id; leader only). Its Run is the leader's
// liveness loop: it feeds a Liveness with the heartbeats and, every
// CheckEvery, proposes MarkDown for the members Expired after DownAfter (by
// ServiceConfig.Now, an input). A node that starts leading, in a Raft term
// it did not lead before, starts a fresh Liveness with every member Seen at
// that moment. The service never activates members; storage nodes propose
// Activate when their hand-off is done.
//
// Client is the other end, for storage nodes and tools: it holds the
// addresses of several routing nodes and tries them in turn, within the
// caller's context, until one answers (a follower's "unavailable" or an
// unreachable node moves it to the next).
package route
