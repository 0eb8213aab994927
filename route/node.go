package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

var (
	// ErrNotLeader is wrapped by the *NotLeaderError that Propose, AddVoter
	// and RemoveServer return on a node that is not the Raft leader (or
	// stopped being the leader before the change committed).
	ErrNotLeader = errors.New("route: not the leader")
	// ErrClosed: the node was closed.
	ErrClosed = errors.New("route: node closed")
	// ErrDataDirInUse: another node holds Config.DataDir.
	ErrDataDirInUse = errors.New("route: data directory in use")
)

// NotLeaderError is the error of a change asked of a node that is not the
// leader. It names the leader this node knows of, if any, so the caller can
// retry there. errors.Is(err, ErrNotLeader) holds for it.
type NotLeaderError struct {
	LeaderID   string // Raft server id of the known leader, "" if none is known
	LeaderAddr string // its Raft address, "" if none is known
	Err        error  // Raft's error, if it reported one (raft.ErrLeadershipLost, say)
}

func (e *NotLeaderError) Error() string {
	msg := "route: not the leader"
	if e.LeaderID != "" || e.LeaderAddr != "" {
		msg += fmt.Sprintf(" (leader %s at %s)", e.LeaderID, e.LeaderAddr)
	} else {
		msg += " (no known leader)"
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns ErrNotLeader and Raft's error, if any.
func (e *NotLeaderError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNotLeader, e.Err}
	}
	return []error{ErrNotLeader}
}

// Config configures a Node. The zero value of every optional field means its
// default.
type Config struct {
	// ID is the node's Raft server id, unique in the routing group and
	// stable across restarts. Required.
	ID string
	// RaftAddr is the address the default TCP transport listens on, for
	// example "10.0.0.5:7400" or "127.0.0.1:0" (RaftAddr then reports the
	// bound port). Required unless Transport is set.
	RaftAddr string
	// AdvertiseAddr is the address other routing nodes reach this one at,
	// when it differs from the bound address (binding 0.0.0.0, say). Default:
	// the bound address. Ignored with Transport.
	AdvertiseAddr string
	// DataDir holds the node's Raft log and stable store (raft-wal, under
	// DataDir/wal) and its snapshots (DataDir/snapshots, the newest 2
	// kept). Required. Two nodes must never share one.
	DataDir string
	// Bootstrap forms a new cluster of this node alone if DataDir holds no
	// Raft state; with state it is ignored. A node without Bootstrap waits
	// to be added by a leader (AddVoter).
	Bootstrap bool
	// DefaultRF is the DefaultRF a bootstrapping node commits once it leads,
	// in [1, MaxRF]. Default DefaultReplication.
	DefaultRF int
	// Transport carries Raft traffic. Default: a TCP transport on RaftAddr.
	// Tests pass raft.NewInmemTransport. The Node owns it from NewNode on,
	// also when NewNode fails, and closes it.
	Transport raft.Transport
	// Logger receives Raft's logs, one level lower than Raft's own (Raft's
	// Info is Debug). Default: discard.
	Logger *slog.Logger

	// Raft timing (hashicorp/raft's Config has their exact meaning). The
	// defaults suit a LAN; tests use a few tens of milliseconds.
	HeartbeatTimeout   time.Duration // default 500ms
	ElectionTimeout    time.Duration // default HeartbeatTimeout
	LeaderLeaseTimeout time.Duration // default HeartbeatTimeout/2; at most HeartbeatTimeout
	CommitTimeout      time.Duration // default 50ms

	// WALSegmentSize is the size of a raft-wal segment file, preallocated
	// on creation. Default 8 MiB.
	WALSegmentSize int

	// raftConfig, if set, adjusts the Raft configuration last (tests).
	raftConfig func(*raft.Config)
}

// withDefaults returns c with every zero optional field set.
func (c Config) withDefaults() Config {
	if c.DefaultRF == 0 {
		c.DefaultRF = DefaultReplication
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 500 * time.Millisecond
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = c.HeartbeatTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = c.HeartbeatTimeout / 2
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = 50 * time.Millisecond
	}
	if c.WALSegmentSize == 0 {
		c.WALSegmentSize = 8 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports a missing required field or an unusable value.
func (c Config) Validate() error {
	switch {
	case c.ID == "":
		return errors.New("route: Config.ID is required")
	case c.DataDir == "":
		return errors.New("route: Config.DataDir is required")
	case c.Transport == nil && c.RaftAddr == "":
		return errors.New("route: Config.RaftAddr is required without a Transport")
	case c.DefaultRF < 0 || c.DefaultRF > MaxRF:
		return fmt.Errorf("route: Config.DefaultRF %d not in [1, %d]", c.DefaultRF, MaxRF)
	case c.WALSegmentSize < 0:
		return fmt.Errorf("route: Config.WALSegmentSize %d is negative", c.WALSegmentSize)
	}
	d := c.withDefaults()
	switch {
	case d.HeartbeatTimeout < 5*time.Millisecond, d.ElectionTimeout < 5*time.Millisecond,
		d.LeaderLeaseTimeout < 5*time.Millisecond:
		return errors.New("route: Raft timeouts must be at least 5ms")
	case d.CommitTimeout < time.Millisecond:
		return errors.New("route: Config.CommitTimeout must be at least 1ms")
	case d.LeaderLeaseTimeout > d.HeartbeatTimeout:
		return errors.New("route: Config.LeaderLeaseTimeout exceeds HeartbeatTimeout")
	case d.ElectionTimeout < d.HeartbeatTimeout:
		return errors.New("route: Config.ElectionTimeout is below HeartbeatTimeout")
	}
	return nil
}

// Node is one member of the routing tier's Raft group: it replicates the
// State by applying Commands in log order. Any node answers State, Watch
// and Leader from its local copy; Propose, AddVoter and RemoveServer work on
// the leader only. All methods are safe for concurrent use.
//
// hashicorp/raft runs its own goroutines (the Raft loop, the FSM, snapshots,
// replication to each follower, the transport's listener and connections);
// the Node starts two more (leadership watch, and on a bootstrapping node
// the DefaultRF initialiser) and one per waiting Propose, AddVoter or
// RemoveServer. Close stops them all.
type Node struct {
	cfg    Config
	log    *slog.Logger
	raft   *raft.Raft
	fsm    *fsm
	stores stores
	trans  raft.Transport
	obs    *raft.Observer

	// leaderChanged is closed and replaced when the leader or this node's
	// Raft role changes.
	leaderChanged atomic.Pointer[chan struct{}]

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu     sync.Mutex // guards closed, and wg.Add against Close's wg.Wait
	closed bool
	wg     sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// NewNode opens the node's stores under cfg.DataDir, starts Raft and, with
// cfg.Bootstrap on an empty DataDir, forms a single-voter cluster. It
// returns once Raft runs; leadership comes later (see WatchLeader). A node
// restarted on its DataDir restores its newest snapshot before NewNode
// returns, then catches up with the log once it knows the commit index.
func NewNode(cfg Config) (n *Node, err error) {
	if err := cfg.Validate(); err != nil {
		if cfg.Transport != nil {
			closeTransport(cfg.Transport)
		}
		return nil, err
	}
	cfg = cfg.withDefaults()
	trans := cfg.Transport
	var st stores
	started := false // from then on, Close cleans up
	defer func() {
		if err != nil && !started {
			if trans != nil {
				closeTransport(trans)
			}
			_ = st.close()
		}
	}()

	walDir := filepath.Join(cfg.DataDir, "wal")
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	if st.lock, err = lockDir(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("route: lock data directory: %w", err)
	}
	// raft-wal's Close leaves the metadata store open (and its file
	// locked), so the node opens and closes it.
	st.meta = &metadb.BoltMetaDB{}
	st.wal, err = raftwal.Open(walDir, raftwal.WithLogger(newHclog(cfg.Logger, "raft-wal")),
		raftwal.WithSegmentSize(cfg.WALSegmentSize), raftwal.WithMetaStore(st.meta))
	if err != nil {
		return nil, fmt.Errorf("route: open raft log: %w", err)
	}
	wal := st.wal
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 2, newHclog(cfg.Logger, "raft-snapshots"))
	if err != nil {
		return nil, fmt.Errorf("route: open snapshots: %w", err)
	}
	if trans == nil {
		var adv net.Addr
		if cfg.AdvertiseAddr != "" {
			if adv, err = net.ResolveTCPAddr("tcp", cfg.AdvertiseAddr); err != nil {
				return nil, fmt.Errorf("route: advertise address: %w", err)
			}
		}
		trans, err = raft.NewTCPTransportWithLogger(cfg.RaftAddr, adv, 3, 10*time.Second, newHclog(cfg.Logger, "raft-net"))
		if err != nil {
			return nil, fmt.Errorf("route: raft transport: %w", err)
		}
	}
	existing, err := raft.HasExistingState(wal, wal, snaps)
	if err != nil {
		return nil, fmt.Errorf("route: read raft state: %w", err)
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.Logger = newHclog(cfg.Logger, "raft")
	if cfg.raftConfig != nil {
		cfg.raftConfig(rc)
	}
	f := newFSM()
	r, err := raft.NewRaft(rc, f, wal, wal, snaps, trans)
	if err != nil {
		return nil, fmt.Errorf("route: start raft: %w", err)
	}

	started = true
	n = &Node{cfg: cfg, log: cfg.Logger, raft: r, fsm: f, stores: st, trans: trans}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	ch := make(chan struct{})
	n.leaderChanged.Store(&ch)
	obs := make(chan raft.Observation, 16)
	n.obs = raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.RegisterObserver(n.obs)
	n.goTracked(func() { n.watchLeadership(obs) })

	if cfg.Bootstrap && !existing {
		conf := raft.Configuration{Servers: []raft.Server{{
			Suffrage: raft.Voter, ID: rc.LocalID, Address: trans.LocalAddr(),
		}}}
		if err := r.BootstrapCluster(conf).Error(); err != nil {
			_ = n.Close()
			return nil, fmt.Errorf("route: bootstrap: %w", err)
		}
	}
	if cfg.Bootstrap {
		n.goTracked(n.initDefaultRF)
	}
	return n, nil
}

// stores are a node's files: the raft-wal log (also the stable store), its
// metadata store, and the DataDir lock. Raft's snapshot store needs no
// closing.
type stores struct {
	lock *os.File
	meta *metadb.BoltMetaDB
	wal  *raftwal.WAL
}

// close closes what is open, the lock last.
func (s *stores) close() error {
	var errs []error
	if s.wal != nil {
		errs = append(errs, s.wal.Close())
	}
	if s.meta != nil {
		errs = append(errs, s.meta.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	*s = stores{}
	return errors.Join(errs...)
}

func closeTransport(t raft.Transport) {
	if c, ok := t.(raft.WithClose); ok {
		_ = c.Close()
	}
	if nt, ok := t.(*raft.NetworkTransport); ok {
		nt.CloseStreams()
	}
}

// goTracked runs fn on a goroutine that Close waits for. It reports false,
// and does not run fn, once Close has begun.
func (n *Node) goTracked(fn func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return false
	}
	n.wg.Go(fn)
	return true
}

// watchLeadership turns Raft's leader and role observations into
// WatchLeader's channel closes.
func (n *Node) watchLeadership(obs <-chan raft.Observation) {
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-obs:
			ch := make(chan struct{})
			close(*n.leaderChanged.Swap(&ch))
		}
	}
}

// initDefaultRF commits the configured DefaultRF once this bootstrapping
// node leads a cluster whose state has none. It returns when the state has
// a DefaultRF, or on Close.
func (n *Node) initDefaultRF() {
	for {
		leaderCh, stateCh := n.WatchLeader(), n.Watch()
		if n.State().DefaultRF != 0 {
			return
		}
		var retry *time.Timer
		if n.IsLeader() {
			ctx, cancel := context.WithTimeout(n.ctx, 4*n.cfg.ElectionTimeout)
			err := n.setDefaultRFLeader(ctx)
			cancel()
			switch {
			case err == nil:
				return
			case n.ctx.Err() != nil || errors.Is(err, ErrClosed):
				return
			}
			n.log.Warn("route: cannot commit the default replication factor", "err", err)
			retry = time.NewTimer(n.cfg.ElectionTimeout)
		}
		var retryC <-chan time.Time
		if retry != nil {
			retryC = retry.C
		}
		select {
		case <-n.ctx.Done():
		case <-leaderCh:
		case <-stateCh:
		case <-retryC:
		}
		if retry != nil {
			retry.Stop()
		}
		if n.ctx.Err() != nil {
			return
		}
	}
}

// setDefaultRFLeader commits the configured DefaultRF if the state, with
// every entry of the log applied, has none. A new leader may not have
// applied its log yet (a restarted node replays it once it leads), hence
// the barrier: without it the node could overwrite a DefaultRF set since.
func (n *Node) setDefaultRFLeader(ctx context.Context) error {
	if err := n.leaderCheck(ctx); err != nil {
		return err
	}
	if err := n.wait(ctx, n.raft.Barrier(enqueueTimeout(ctx))); err != nil {
		return err
	}
	if n.State().DefaultRF != 0 {
		return nil
	}
	_, err := n.Propose(ctx, Command{Op: OpSetDefaultRF, RF: n.cfg.DefaultRF})
	return err
}

// Close shuts Raft down, stops every goroutine the node and Raft started,
// and closes the transport and the stores. Calls waiting on the node return
// ErrClosed. It is idempotent and returns the first call's error.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.cancel()
		n.raft.DeregisterObserver(n.obs)
		err := n.raft.Shutdown().Error() // closes the transport too
		if nt, ok := n.trans.(*raft.NetworkTransport); ok {
			nt.CloseStreams() // pooled connections, which Close leaves open
		}
		n.wg.Wait()
		n.closeErr = errors.Join(err, n.stores.close())
	})
	return n.closeErr
}

// State returns the latest State this node applied. It does not block and
// does not copy: the result must not be modified (see State.Clone). A
// follower's State may lag the leader's by the commands in flight.
func (n *Node) State() State { return n.fsm.state() }

// Watch returns a channel closed on the next change of State after the
// call. To wait for a condition without polling:
//
//	for {
//		ch := n.Watch()
//		if cond(n.State()) { break }
//		select { case <-ch: case <-ctx.Done(): return ctx.Err() }
//	}
func (n *Node) Watch() <-chan struct{} { return n.fsm.watch() }

// WatchLeader returns a channel closed on the next change, after the call,
// of the leader this node knows of or of this node's Raft role. Use it like
// Watch, with IsLeader or Leader as the condition.
func (n *Node) WatchLeader() <-chan struct{} { return *n.leaderChanged.Load() }

// IsLeader reports whether this node is the Raft leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Leader returns the Raft server id and address of the leader this node
// knows of; both are empty when it knows none.
func (n *Node) Leader() (id, raftAddr string) {
	addr, sid := n.raft.LeaderWithID()
	return string(sid), string(addr)
}

// RaftAddr returns the address this node's Raft transport is reachable at:
// with the default transport on port 0, the port it bound.
func (n *Node) RaftAddr() string { return string(n.trans.LocalAddr()) }

// Propose commits c through the Raft log and returns the State right after
// it was applied. On a node that is not the leader it returns a
// *NotLeaderError (errors.Is ErrNotLeader). An invalid command is refused
// before it reaches the log (ErrInvalid); a command the state refuses
// (ErrUnknownMember, ErrBadTransition) is committed, changes nothing, and
// returns its error with the state it was refused against.
//
// ctx bounds the whole call. When it ends first, or when the leader loses
// its leadership before the entry commits (NotLeaderError wrapping
// raft.ErrLeadershipLost), the command may still commit. Every command is
// idempotent (applied twice, the second changes nothing), so retrying, on
// the new leader, is safe.
func (n *Node) Propose(ctx context.Context, c Command) (State, error) {
	b, err := c.AppendBinary(nil)
	if err != nil {
		return State{}, err
	}
	if err := n.leaderCheck(ctx); err != nil {
		return State{}, err
	}
	f := n.raft.Apply(b, enqueueTimeout(ctx))
	if err := n.wait(ctx, f); err != nil {
		return State{}, err
	}
	res, ok := f.Response().(applyResult)
	if !ok {
		return State{}, fmt.Errorf("route: unexpected FSM response %T", f.Response())
	}
	return res.state, res.err
}

// AddVoter adds the routing node with Raft server id and address to the
// group as a voter, or updates its address; adding a voter that is already
// one at that address succeeds. Leader only. The new node then receives the
// log (or a snapshot) and applies the State.
func (n *Node) AddVoter(ctx context.Context, id, raftAddr string) error {
	if err := n.leaderCheck(ctx); err != nil {
		return err
	}
	return n.wait(ctx, n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, enqueueTimeout(ctx)))
}

// RemoveServer removes the routing node with the given Raft server id from
// the group. Leader only. The removed node shuts its Raft down (it must
// still be Closed); a leader removing itself steps down.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if err := n.leaderCheck(ctx); err != nil {
		return err
	}
	return n.wait(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, enqueueTimeout(ctx)))
}

func (n *Node) leaderCheck(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	closed := n.closed
	n.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if !n.IsLeader() {
		return n.notLeader(nil)
	}
	return nil
}

func (n *Node) notLeader(cause error) error {
	id, addr := n.Leader()
	return &NotLeaderError{LeaderID: id, LeaderAddr: addr, Err: cause}
}

// enqueueTimeout is Raft's timeout for accepting a request: the time left
// before ctx's deadline, or none (0) without one.
func enqueueTimeout(ctx context.Context) time.Duration {
	d, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	return max(time.Until(d), time.Millisecond)
}

// wait waits for a Raft future within ctx and maps Raft's errors to this
// package's.
func (n *Node) wait(ctx context.Context, f raft.Future) error {
	var err error
	if ctx.Done() == nil {
		err = f.Error()
	} else {
		done := make(chan error, 1)
		if !n.goTracked(func() { done <- f.Error() }) {
			return ErrClosed
		}
		select {
		case err = <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost),
		errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeader(err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("route: %w: %w", context.DeadlineExceeded, err)
	}
	return fmt.Errorf("route: raft: %w", err)
}
