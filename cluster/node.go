package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/ring"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// Transport carries a node's calls to its peers. Call returns the peer's
// response (which may carry a server error) or a transport error. It must be
// safe for concurrent use.
type Transport interface {
	Call(ctx context.Context, to string, req *wire.Request) (*wire.Response, error)
}

// AsyncTransport is a Transport that can also start a call without
// waiting for it (TCPTransport). A node replicates its writes with Start
// when its transport has it: from the writing goroutine, with no goroutine
// per replica.
type AsyncTransport interface {
	Transport
	// Start sends req to the node at to and returns. It calls done once,
	// with the response (which may carry a server error) or a transport
	// error, possibly before it returns, else from a goroutine of the
	// transport's, which done must not block. It fails the call if no
	// response came within timeout. Start does not keep req, and the
	// response is valid until done returns.
	Start(to string, req *wire.Request, timeout time.Duration, done func(*wire.Response, error))
}

// Config configures a Node. Store, Transport and ID are required; every
// other field's zero value means its default.
type Config struct {
	ID        uint64     // this node's member id (its store's node id)
	Store     *kvs.Store // the node's data
	Transport Transport  // how peers are reached
	// DefaultAck is the acknowledgement of writes that ask for none.
	// Default AckQuorum.
	DefaultAck wire.Ack
	// Vnodes is the number of points per member on the global ring.
	// Default route.DefaultVnodes.
	Vnodes int
	// GossipEvery is how often Run sends the writes not yet replicated
	// everywhere. Default 50 ms.
	GossipEvery time.Duration
	// AntiEntropyEvery is how often Run compares digests with every peer.
	// Default 10 s.
	AntiEntropyEvery time.Duration
	// BucketBits sets the number of anti-entropy buckets (2^BucketBits).
	// Default 10.
	BucketBits uint
	// DigestReuse is how long the anti-entropy digests of one pass over
	// the store may be reused, for later rounds and for peers' digest
	// requests, while the store keeps changing: a difference that is newer
	// than the pass waits for a later round. Default 0: reused only while
	// the store does not change.
	DigestReuse time.Duration
	// ReplicaTimeout bounds one call to a peer. Default 2 s.
	ReplicaTimeout time.Duration
	// Logger receives the node's logs. Default slog.Default().
	Logger *slog.Logger
	// Router, when set, is where the node fetches the routing state when it
	// learns its own is out of date (a peer or client used a newer epoch,
	// a replica refused a write for an older one). Default none: the state
	// changes only through SetState.
	Router StateSource
}

// Defaults for Config.
const (
	DefaultGossipEvery      = 50 * time.Millisecond
	DefaultAntiEntropyEvery = 10 * time.Second
	DefaultBucketBits       = 10
	DefaultReplicaTimeout   = 2 * time.Second
)

func (c Config) withDefaults() Config {
	if c.DefaultAck == wire.AckDefault {
		c.DefaultAck = wire.AckQuorum
	}
	if c.Vnodes == 0 {
		c.Vnodes = route.DefaultVnodes
	}
	if c.GossipEvery == 0 {
		c.GossipEvery = DefaultGossipEvery
	}
	if c.AntiEntropyEvery == 0 {
		c.AntiEntropyEvery = DefaultAntiEntropyEvery
	}
	if c.BucketBits == 0 {
		c.BucketBits = DefaultBucketBits
	}
	if c.ReplicaTimeout == 0 {
		c.ReplicaTimeout = DefaultReplicaTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports whether c is usable.
func (c Config) Validate() error {
	switch {
	case c.ID == 0:
		return errors.New("cluster: node id is required")
	case c.Store == nil:
		return errors.New("cluster: store is required")
	case c.Transport == nil:
		return errors.New("cluster: transport is required")
	case c.BucketBits > 20:
		return fmt.Errorf("cluster: bucket bits %d > 20", c.BucketBits)
	}
	return nil
}

// view is a routing state with its rings, immutable once built.
type view struct {
	state   route.State
	ring    *ring.Ring     // active + leaving members; nil with none
	members []route.Member // members[i] is ring member i
	pending *ring.Ring     // active + joining members (hand-offs under way)
	pmember []route.Member
}

func newView(st route.State, vnodes int) (*view, error) {
	v := &view{state: st}
	var err error
	if v.ring, err = st.Ring(vnodes); err != nil {
		return nil, err
	}
	if v.pending, err = st.PendingRing(vnodes); err != nil {
		return nil, err
	}
	v.members, v.pmember = membersOf(st, v.ring), membersOf(st, v.pending)
	return v, nil
}

func membersOf(st route.State, r *ring.Ring) []route.Member {
	if r == nil {
		return nil
	}
	out := make([]route.Member, r.Len())
	for i := range out {
		id, _ := strconv.ParseUint(r.Member(i), 10, 64)
		out[i], _ = st.Member(id)
	}
	return out
}

// replicas appends key's responsible members on the current ring to dst.
func (v *view) replicas(key []byte, dst []route.Member) []route.Member {
	return v.appendReplicas(v.ring, v.members, key, dst)
}

// allReplicas appends key's responsible members on the current and the
// pending ring (each once) to dst: where its writes must go during a
// hand-off.
func (v *view) allReplicas(key []byte, dst []route.Member) []route.Member {
	return v.allReplicasOfHash(key, ring.KeyHash(key), dst)
}

// allReplicasOfHash is allReplicas with the key's hash (ring.KeyHash)
// already computed.
func (v *view) allReplicasOfHash(key []byte, h uint64, dst []route.Member) []route.Member {
	rf := v.state.RF(key)
	dst = v.appendReplicasOfHash(v.ring, v.members, h, rf, dst)
	n := len(dst)
	if v.pending == nil {
		return dst
	}
	var buf [16]int
	for _, i := range v.pending.Replicas(h, rf, buf[:0]) {
		if m := v.pmember[i]; !containsMember(dst[:n], m.ID) {
			dst = append(dst, m)
		}
	}
	return dst
}

func (v *view) appendReplicas(r *ring.Ring, members []route.Member, key []byte, dst []route.Member) []route.Member {
	return v.appendReplicasOfHash(r, members, ring.KeyHash(key), v.state.RF(key), dst)
}

func (v *view) appendReplicasOfHash(r *ring.Ring, members []route.Member, h uint64, rf int, dst []route.Member) []route.Member {
	if r == nil {
		return dst
	}
	var buf [16]int
	for _, i := range r.Replicas(h, rf, buf[:0]) {
		dst = append(dst, members[i])
	}
	return dst
}

func containsMember(ms []route.Member, id uint64) bool {
	for _, m := range ms {
		if m.ID == id {
			return true
		}
	}
	return false
}

// Node is a storage node's cluster membership. It is safe for concurrent
// use. Close (or the end of Run's context) stops its background calls.
type Node struct {
	cfg   Config
	store *kvs.Store
	log   *slog.Logger

	view atomic.Pointer[view]

	mu      sync.Mutex          // guards pending
	pending map[string]struct{} // keys whose cell some replica may lack

	bg     inflight // replication calls and goroutines that outlive their request
	closed atomic.Bool
	resp   respPool // connections for forwarding Redis commands

	refreshing atomic.Bool   // a background refresh is running
	loopWrites atomic.Uint64 // writes replicated from an event loop (loop.go)

	aeIndex aeIndex // the last anti-entropy index: digests and keys by bucket (aeindex.go)

	// moved receives (without blocking) when SetState installs a new
	// epoch: Run hands off at once the copies the new ring moved away.
	moved chan struct{}
}

// New returns a node with an empty routing state: until SetState it is
// responsible for every key and has no peers.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, store: cfg.Store, log: cfg.Logger, pending: map[string]struct{}{}, moved: make(chan struct{}, 1)}
	v, _ := newView(route.State{}, cfg.Vnodes)
	n.view.Store(v)
	return n, nil
}

// SetState makes st the node's routing state, if it is newer (by epoch)
// than the one it has. It returns an error only for a state whose rings
// cannot be built.
func (n *Node) SetState(st route.State) error {
	for {
		cur := n.view.Load()
		if st.Epoch <= cur.state.Epoch && cur.state.Epoch != 0 {
			return nil
		}
		v, err := newView(st, n.cfg.Vnodes)
		if err != nil {
			return err
		}
		if n.view.CompareAndSwap(cur, v) {
			select {
			case n.moved <- struct{}{}:
			default:
			}
			return nil
		}
	}
}

// Status returns this node's state as its routing state has it: "joining",
// "active", "leaving", "down", or "unknown" before it is registered.
func (n *Node) Status() string {
	if m, ok := n.view.Load().state.Member(n.cfg.ID); ok {
		return m.State.String()
	}
	return "unknown"
}

// State returns the node's routing state.
func (n *Node) State() route.State { return n.view.Load().state }

// Epoch returns the epoch of the node's routing state.
func (n *Node) Epoch() uint64 { return n.view.Load().state.Epoch }

// Replicas appends key's responsible members to dst.
func (n *Node) Replicas(key []byte, dst []route.Member) []route.Member {
	return n.view.Load().replicas(key, dst)
}

// Responsible reports whether this node replicates key. With no members at
// all (a node outside any cluster), it is responsible for everything.
func (n *Node) Responsible(key []byte) bool {
	v := n.view.Load()
	if v.ring == nil {
		return true
	}
	var buf [8]route.Member
	return containsMember(v.replicas(key, buf[:0]), n.cfg.ID)
}

// ErrQuorum is wrapped by a write that could not reach enough replicas in
// time. The write may still have been applied at some of them; retrying it
// is safe (merges are idempotent).
var ErrQuorum = fmt.Errorf("%w: write not acknowledged by enough replicas", wire.ErrUnavailable)

// Replicate sends key's cell, after a local write of it, to the key's other
// replicas, and returns once ack is satisfied: AckLocal at once (the other
// replicas get it by gossip), AckQuorum once a majority of the replicas
// (this node included) hold it, AckDurable once a majority hold it synced to
// disk. Replicas it could not reach in time get the key by gossip. A
// replica that routes by a newer epoch refuses to count: the node then
// refreshes its routing state and tries again (a few rounds) with the replicas the new
// state names, so a node with an out-of-date view does not acknowledge a
// write the current replicas do not hold.
func (n *Node) Replicate(ctx context.Context, key []byte, ack wire.Ack) error {
	if ack == wire.AckDefault {
		ack = n.cfg.DefaultAck
	}
	if ack == wire.AckDurable && n.Responsible(key) {
		if err := n.waitDurable(ctx); err != nil {
			n.enqueue(key)
			return err
		}
	}
	used, newer, err := n.replicateOnce(ctx, key, ack)
	return n.replicateRounds(ctx, key, ack, used, newer, err)
}

// maxReplicateRounds bounds Replicate's rounds after refusals for an
// out-of-date epoch.
const maxReplicateRounds = 4

// replicateRounds continues Replicate after its first round, which used
// the epoch used, saw refusals up to epoch newer and ended with err: while
// a replica refused for a newer epoch and the node's own epoch moves on (a
// refresh), it runs another round, maxReplicateRounds in all.
func (n *Node) replicateRounds(ctx context.Context, key []byte, ack wire.Ack, used, newer uint64, err error) error {
	// Epochs move in quick succession while a member joins or leaves
	// (register, activate, ...): a few rounds, each after a refresh that
	// moved this node's epoch.
	for round := 1; ; round++ {
		if err == nil || newer <= used {
			return err
		}
		// The node's epoch may have moved on since this round started (a
		// background refresh): then go again with it, without asking.
		if n.Epoch() <= used && !n.refresh(ctx) {
			return err
		}
		if round == maxReplicateRounds {
			return err
		}
		used, newer, err = n.replicateOnce(ctx, key, ack)
	}
}

// round is one round of a write's replication with one routing view: the
// peers it sends the key's cell to, and the count of their answers toward
// the acknowledgements the write needs. Replicate runs rounds on its
// goroutine, ServeOnLoop on an event loop; both count with record.
type round struct {
	epoch   uint64         // the view's
	peers   []route.Member // every replica but this node (both rings)
	counted []route.Member // the members whose copies count
	need    int            // acknowledgements needed from peers (0: none)

	acked, answered int
	newer           uint64 // the newest epoch a peer refused for
	last            error  // the last refusal, for the error message
}

// newRound plans a round of replicating key with ack under v.
func (n *Node) newRound(v *view, key []byte, ack wire.Ack) *round {
	r := &round{epoch: v.state.Epoch}
	var buf [8]route.Member
	targets := v.allReplicas(key, buf[:0])
	var current [8]route.Member
	replicas := v.replicas(key, current[:0])
	// The quorum is over the key's current replicas, unless the current
	// ring has fewer than the key's replication factor (members still
	// joining): then over the current and pending replicas together, so
	// that a cluster still forming does not acknowledge a write held by one
	// node alone.
	counted := replicas
	if len(replicas) < v.state.RF(key) {
		counted = targets
	}
	if ack != wire.AckLocal {
		r.need = route.Quorum(len(counted))
		if containsMember(counted, n.cfg.ID) {
			r.need-- // this node's own copy counts
		}
	}
	for _, m := range targets {
		if m.ID != n.cfg.ID {
			r.peers = append(r.peers, m)
		}
	}
	r.counted = slices.Clone(counted)
	return r
}

// counts reports whether p's copy counts toward the round's quorum.
func (r *round) counts(p route.Member) bool { return containsMember(r.counted, p.ID) }

// record takes the answer of a peer (err: its refusal or a transport
// error; counts: r.counts of the peer) and reports whether the round is
// decided: enough acknowledgements, or every peer answered.
func (r *round) record(counts bool, err error) (decided bool) {
	r.answered++
	r.newer = max(r.newer, newerEpoch(err, r.epoch))
	if err != nil {
		r.last = err
	} else if counts {
		r.acked++
	}
	return r.acked >= r.need || r.answered == len(r.peers)
}

// err returns the round's outcome once decided: nil if enough peers
// acknowledged, else the reason.
func (r *round) err() error {
	switch {
	case r.acked >= r.need:
		return nil
	case r.last != nil:
		return fmt.Errorf("%w: %d of %d replica acknowledgements (%d replicas in epoch %d; last refusal: %v)",
			ErrQuorum, r.acked, r.need, len(r.counted), r.epoch, r.last)
	}
	return fmt.Errorf("%w: %d of %d replica acknowledgements (%d replicas in epoch %d)", ErrQuorum, r.acked, r.need, len(r.counted), r.epoch)
}

// replicateOnce does one round of Replicate with the current view. used is
// the view's epoch, newer the newest epoch a replica refused for (0 if
// none).
func (n *Node) replicateOnce(ctx context.Context, key []byte, ack wire.Ack) (used, newer uint64, err error) {
	r := n.newRound(n.view.Load(), key, ack)
	cell, send := n.startRound(r, key)
	if !send {
		return r.epoch, 0, nil
	}
	// Send to every peer at once. The calls outlive this request (the other
	// replicas get the write too), bounded by ReplicaTimeout; a call that
	// fails queues the key for gossip itself, so nobody has to wait for the
	// stragglers. The channel holds every result, so no sender blocks.
	type result struct {
		counts bool
		err    error
	}
	results := make(chan result, len(r.peers))
	for _, p := range r.peers {
		counts := r.counts(p)
		n.replicateTo(n.start, p, key, cell, ack, r.epoch, func(err error) { results <- result{counts, err} })
	}
	for {
		select {
		case res := <-results:
			if r.record(res.counts, res.err) {
				return r.epoch, r.newer, r.err()
			}
		case <-ctx.Done():
			return r.epoch, r.newer, fmt.Errorf("%w: %d of %d replica acknowledgements: %w", ErrQuorum, r.acked, r.need, ctx.Err())
		}
	}
}

// startRound returns key's cell and whether the round must send it and
// wait: not when the key has no other replica, no longer has a cell (a
// tombstone already collected), or needs no acknowledgement from its peers
// (then it is queued for gossip).
func (n *Node) startRound(r *round, key []byte) (cell []byte, send bool) {
	if len(r.peers) == 0 {
		return nil, false
	}
	cell, ok := n.store.Cell(key, nil)
	if !ok {
		return nil, false
	}
	if r.need == 0 {
		n.enqueue(key)
		return nil, false
	}
	return cell, true
}

// newerEpoch returns the epoch of a wrong-owner error if it is newer than
// epoch, else 0.
func newerEpoch(err error, epoch uint64) uint64 {
	var we *wire.Error
	if errors.As(err, &we) && we.Code == wire.CodeWrongOwner && we.Epoch > epoch {
		return we.Epoch
	}
	return 0
}

// refresh fetches the routing state now and reports whether the node's
// epoch moved. Without a Router it does nothing.
func (n *Node) refresh(ctx context.Context) bool {
	if n.cfg.Router == nil {
		return false
	}
	before := n.Epoch()
	// Bounded: the router retries until its context ends, and the callers'
	// contexts may not end before the node shuts down.
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReplicaTimeout)
	defer cancel()
	st, err := n.cfg.Router.State(ctx)
	if err != nil {
		n.log.Debug("refreshing the routing state failed", "err", err)
		return false
	}
	_ = n.SetState(st)
	return n.Epoch() > before
}

// refreshSoon refreshes the routing state in the background (once at a
// time), after a peer or client showed a newer epoch.
func (n *Node) refreshSoon() {
	if n.cfg.Router == nil || !n.refreshing.CompareAndSwap(false, true) {
		return
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		defer n.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ReplicaTimeout)
		defer cancel()
		n.refresh(ctx)
	}()
}

// startFunc starts a call to a peer and reports its outcome to done, once,
// within timeout (AsyncTransport.Start's contract; kvs.Loop.Send's).
type startFunc func(to string, req *wire.Request, timeout time.Duration, done func(*wire.Response, error))

// start starts a call through the node's transport: with Start if it is an
// AsyncTransport, else with Call on a goroutine of its own.
func (n *Node) start(to string, req *wire.Request, timeout time.Duration, done func(*wire.Response, error)) {
	if at, ok := n.cfg.Transport.(AsyncTransport); ok {
		at.Start(to, req, timeout, done)
		return
	}
	r := *req // Start does not keep req; the goroutine outlives it
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done(n.cfg.Transport.Call(ctx, to, &r))
	}()
}

// replicateTo sends one REPLICATE call with start, bounded by
// ReplicaTimeout, and reports its outcome to done, once, possibly before it
// returns; a call that failed has queued the key for gossip by then. Wait
// waits for the call.
func (n *Node) replicateTo(start startFunc, p route.Member, key, cell []byte, ack wire.Ack, epoch uint64, done func(error)) {
	req := wire.Request{Op: wire.OpReplicate, Key: key, Value: cell, Opts: wire.Options{Ack: ack, Epoch: epoch}}
	n.bg.Add(1)
	start(p.Addr, &req, n.cfg.ReplicaTimeout, func(resp *wire.Response, err error) {
		defer n.bg.Done()
		if err == nil {
			err = resp.Err()
		}
		if err != nil {
			n.enqueue(key)
		}
		done(err)
	})
}

// waitDurable waits until the store has synced every write made so far.
func (n *Node) waitDurable(ctx context.Context) error {
	err := n.store.WaitDurable(ctx)
	if err != nil && !errors.Is(err, kvs.ErrNoDisk) {
		err = fmt.Errorf("%w: %w", wire.ErrUnavailable, err)
	}
	return err
}

// enqueue marks key for the next gossip round.
func (n *Node) enqueue(key []byte) {
	n.mu.Lock()
	n.pending[string(key)] = struct{}{}
	n.mu.Unlock()
}

// Pending returns how many keys wait for gossip.
func (n *Node) Pending() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.pending)
}

// Wait waits for the replication calls still in flight (those that outlive
// the writes that started them). Tests use it to make each step finish
// before the next.
func (n *Node) Wait() { n.bg.Wait() }

// Close waits for replication calls still in flight. The node must not be
// used afterwards.
func (n *Node) Close() {
	n.closed.Store(true)
	n.bg.Wait()
	n.resp.close()
}

var _ kvs.Cluster = (*Node)(nil)

// inflight counts work under way, like a sync.WaitGroup, except that work
// may start while Wait waits (event loops start replication calls whenever
// writes come): Wait returns once the count has dropped to zero.
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to zero; nil when nobody waits
}

// Add adds d (negative: work done) to the count.
func (f *inflight) Add(d int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n += d
	if f.n < 0 {
		panic("cluster: negative in-flight count")
	}
	if f.n == 0 && f.zero != nil {
		close(f.zero)
		f.zero = nil
	}
}

// Done marks one piece of work done.
func (f *inflight) Done() { f.Add(-1) }

// Wait waits until the count is zero.
func (f *inflight) Wait() {
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	if f.zero == nil {
		f.zero = make(chan struct{})
	}
	zero := f.zero
	f.mu.Unlock()
	<-zero
}
