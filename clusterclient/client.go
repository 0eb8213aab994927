package clusterclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// Errors a call can return, for errors.Is; they are package client's (and
// so the protocol's) sentinels.
var (
	ErrNotFound     = client.ErrNotFound
	ErrWrongOwner   = client.ErrWrongOwner
	ErrTypeMismatch = client.ErrTypeMismatch
	ErrTooLarge     = client.ErrTooLarge
	ErrBadRequest   = client.ErrBadRequest
	ErrUnauthorized = client.ErrUnauthorized
	ErrUnavailable  = client.ErrUnavailable
	ErrTimeout      = client.ErrTimeout
	ErrInternal     = client.ErrInternal
	ErrClosed       = client.ErrClosed
	ErrConnLost     = client.ErrConnLost
)

// errNoReplica: the routing state names no storage node for the key (the
// cluster has no active member yet).
var errNoReplica = fmt.Errorf("%w: the routing state has no active storage node", client.ErrUnavailable)

// refreshGap is the least time between two fetches of the routing state
// that no known newer epoch asks for (failed rounds ask for one each).
const refreshGap = 20 * time.Millisecond

// Client is a client of a Trellis cluster: it sends each key's requests to
// a storage node that replicates it, and retries (see the package doc) until
// the call's deadline. It is safe for concurrent use. Close releases it.
type Client struct {
	*shared          // shared by every view (WithAck)
	ack     wire.Ack // what this view's writes ask for
}

// shared is the state a Client and its views share.
type shared struct {
	opts   Options
	router *route.Client
	now    func() time.Time

	table atomic.Pointer[table] // the address cache; replaced, never modified

	mu     sync.Mutex             // guards nodes and closed
	nodes  map[nodeKey]*nodeConns // pools of ring members, dialled on first use
	closed bool

	suspects sync.Map // node id → time.Time until which it is tried last

	fmu       sync.Mutex // guards fetching, lastFetch and stopping; never held with mu
	fetching  *fetch     // the fetch of the routing state in flight
	lastFetch time.Time
	stopping  bool // Close has begun: no new goroutine may start

	bg     sync.WaitGroup // fetches and the refresh loop
	ctx    context.Context
	cancel context.CancelFunc

	stats struct {
		refreshes, wrongOwner, failovers, retries atomic.Uint64
		fanOuts, fanOutFailed                     atomic.Uint64
	}

	deadlines deadlines // bound the calls whose context has no deadline

	clock  *lattice.Clock // stamps the Sets written by fan-out
	writer uint64         // this client's writer id in those stamps
}

type nodeKey struct {
	id   uint64
	addr string
}

// nodeConns is the connection pool to one storage node.
type nodeConns struct {
	key    nodeKey
	mu     sync.Mutex
	c      *client.Client // nil until dialled
	closed bool
}

// fetch is one fetch of the routing state; done closes when it finished.
type fetch struct {
	done chan struct{}
	err  error
}

// Dial fetches the routing state from the routing nodes in opts.Route and
// returns a Client routing by it. It connects to a storage node only when a
// request first goes there. ctx bounds the fetch (Options.Timeout does if
// it has no deadline). The cluster may have no active storage node yet;
// calls then wait for one within their deadline.
func Dial(ctx context.Context, opts Options) (*Client, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	ropts := opts.Client
	ropts.Conns = 1
	s := &shared{
		opts:      opts,
		router:    route.NewClient(opts.Route, ropts),
		now:       time.Now,
		nodes:     map[nodeKey]*nodeConns{},
		deadlines: deadlines{timeout: opts.Timeout},
		clock:     lattice.NewClock(func() int64 { return time.Now().UnixMilli() }),
		writer:    rand.Uint64() | 1, // (never 0)
	}
	ctx, cancel := bound(ctx, opts.Timeout)
	defer cancel()
	st, err := s.router.State(ctx)
	if err == nil {
		err = s.setState(st)
	}
	if err != nil {
		_ = s.router.Close()
		return nil, fmt.Errorf("clusterclient: fetching the routing state: %w", err)
	}
	s.lastFetch = s.now()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if opts.RefreshEvery > 0 {
		s.bg.Add(1)
		go s.refreshLoop()
	}
	return &Client{shared: s, ack: opts.Ack}, nil
}

// WithAck returns a view of c whose writes ask for the acknowledgement ack
// (client.AckLocal, AckQuorum, AckDurable; AckDefault: the storage node's
// default). The view shares c's connections and address cache: closing
// either closes both.
func (c *Client) WithAck(ack wire.Ack) *Client { return &Client{shared: c.shared, ack: ack} }

// State returns the routing state the client routes by: the members, their
// addresses and states, the replication factors and the epoch.
func (c *Client) State() route.State { return c.table.Load().state }

// Epoch returns the epoch of the routing state the client routes by; every
// request carries it.
func (c *Client) Epoch() uint64 { return c.table.Load().epoch() }

// Replicas returns the storage nodes responsible for key under the client's
// routing state, in the order requests try them.
func (c *Client) Replicas(key string) []route.Member {
	reps := c.table.Load().replicas([]byte(key), nil)
	preferReachable(reps, c.suspect)
	return reps
}

// Refresh fetches the routing state now (joining a fetch already in
// flight) and routes by it if it is newer.
func (c *Client) Refresh(ctx context.Context) error {
	f := c.startFetch(false)
	if f == nil {
		return ErrClosed
	}
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctxErr(ctx, "refresh", nil)
	}
}

// Stats counts what the client's retry machinery has done since Dial.
type Stats struct {
	Refreshes  uint64 // fetches of the routing state that returned one
	WrongOwner uint64 // wrong-owner answers received
	Failovers  uint64 // attempts that moved on to another replica (node unreachable or unable to serve)
	Retries    uint64 // rounds begun again after every replica of a key failed or the state moved
	FanOuts    uint64 // writes acknowledged by fan-out (a quorum of replicas at once)
	// FanOutFailed counts fan-outs that a target did not acknowledge: the
	// write was then sent the usual way.
	FanOutFailed uint64
}

// Stats returns the client's counters.
func (c *Client) Stats() Stats {
	return Stats{
		Refreshes:    c.stats.refreshes.Load(),
		WrongOwner:   c.stats.wrongOwner.Load(),
		Failovers:    c.stats.failovers.Load(),
		Retries:      c.stats.retries.Load(),
		FanOuts:      c.stats.fanOuts.Load(),
		FanOutFailed: c.stats.fanOutFailed.Load(),
	}
}

// Close stops the background refresh and closes every connection. Calls in
// flight fail with ErrClosed; later calls return ErrClosed. It is
// idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	nodes := c.nodes
	c.nodes = map[nodeKey]*nodeConns{}
	c.mu.Unlock()

	c.fmu.Lock()
	c.stopping = true
	c.fmu.Unlock()
	c.cancel()
	c.bg.Wait()
	for _, n := range nodes {
		n.close()
	}
	c.deadlines.close()
	return c.router.Close()
}

func (s *shared) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// bound returns ctx, or ctx with timeout d if it has no deadline.
func bound(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}

// refreshLoop fetches the routing state every RefreshEvery until Close.
func (s *shared) refreshLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.RefreshEvery)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		if f := s.startFetch(false); f != nil {
			select {
			case <-f.done:
			case <-s.ctx.Done():
				return
			}
		}
	}
}

// refresh makes the client route by a state of epoch want or newer (0: by
// whatever state the routing tier has now) and reports whether the state
// it routes by changed since it was from. At most one fetch is in flight:
// concurrent callers wait for the same one. A fetch that no known epoch
// asks for (want 0) is skipped if one finished less than refreshGap ago.
func (s *shared) refresh(ctx context.Context, from *table, want uint64) bool {
	if cur := s.table.Load(); cur != from || (want > 0 && cur.epoch() >= want) {
		return cur != from
	}
	f := s.startFetch(want == 0)
	if f == nil {
		return false
	}
	select {
	case <-f.done:
	case <-ctx.Done():
	}
	return s.table.Load() != from
}

// startFetch returns the fetch in flight, or starts one. It returns nil once
// Close has begun, or when limited and a fetch finished less than refreshGap
// ago.
func (s *shared) startFetch(limited bool) *fetch {
	s.fmu.Lock()
	defer s.fmu.Unlock()
	if s.stopping {
		return nil
	}
	if s.fetching != nil {
		return s.fetching
	}
	if limited && s.now().Sub(s.lastFetch) < refreshGap {
		return nil
	}
	f := &fetch{done: make(chan struct{})}
	s.fetching = f
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.Timeout)
		st, err := s.router.State(ctx)
		cancel()
		if err == nil {
			s.stats.refreshes.Add(1)
			err = s.setState(st)
		}
		s.fmu.Lock()
		s.fetching, s.lastFetch = nil, s.now()
		s.fmu.Unlock()
		f.err = err
		close(f.done)
	}()
	return f
}

// setState routes by st if it is newer than the current state, and closes
// the pools of nodes that are no longer on the ring.
func (s *shared) setState(st route.State) error {
	t, err := newTable(st, s.opts.Vnodes)
	if err != nil {
		return fmt.Errorf("clusterclient: routing state of epoch %d: %w", st.Epoch, err)
	}
	var gone []*nodeConns
	s.mu.Lock()
	if cur := s.table.Load(); cur != nil && st.Epoch <= cur.epoch() {
		s.mu.Unlock()
		return nil
	}
	s.table.Store(t)
	for k, n := range s.nodes {
		if !t.serves(k.id, k.addr) {
			delete(s.nodes, k)
			gone = append(gone, n)
		}
	}
	s.mu.Unlock()
	for _, n := range gone {
		n.close()
	}
	return nil
}

// suspect reports whether node id failed to answer less than SuspectFor
// ago.
func (s *shared) suspect(id uint64) bool {
	v, ok := s.suspects.Load(id)
	if !ok {
		return false
	}
	if s.now().Before(v.(time.Time)) {
		return true
	}
	s.suspects.CompareAndDelete(id, v)
	return false
}

func (s *shared) markSuspect(id uint64) {
	s.suspects.Store(id, s.now().Add(s.opts.SuspectFor))
}

// node returns the connection pool of member m of ring t, dialling it if
// needed. A failure is an *unsentError: nothing was sent.
func (s *shared) node(ctx context.Context, t *table, m route.Member) (*client.Client, error) {
	k := nodeKey{m.ID, m.Addr}
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, ErrClosed
	case s.table.Load() != t && !s.table.Load().serves(m.ID, m.Addr):
		s.mu.Unlock()
		return nil, &unsentError{fmt.Errorf("%w: node %d at %s left the routing state", ErrUnavailable, m.ID, m.Addr)}
	}
	n := s.nodes[k]
	if n == nil {
		n = &nodeConns{key: k}
		s.nodes[k] = n
	}
	s.mu.Unlock()
	c, err := n.get(ctx, s.opts.Client)
	if err != nil {
		if errors.Is(err, ErrClosed) && s.isClosed() {
			return nil, ErrClosed
		}
		return nil, &unsentError{fmt.Errorf("node %d: %w", m.ID, err)}
	}
	return c, nil
}

// get returns the pool, dialling it on first use.
func (n *nodeConns) get(ctx context.Context, opts client.Options) (*client.Client, error) {
	n.mu.Lock()
	c, closed := n.c, n.closed
	n.mu.Unlock()
	switch {
	case closed:
		return nil, ErrClosed
	case c != nil:
		return c, nil
	}
	c, err := client.Dial(ctx, n.key.addr, opts) // outside the lock: it may take a while
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	switch {
	case n.closed:
		_ = c.Close()
		return nil, ErrClosed
	case n.c != nil: // a concurrent call dialled first
		_ = c.Close()
		return n.c, nil
	}
	n.c = c
	return c, nil
}

func (n *nodeConns) close() {
	n.mu.Lock()
	c := n.c
	n.c, n.closed = nil, true
	n.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// attempt runs op on member m of t through its pool, as a view carrying
// t's epoch and c's acknowledgement.
func (c *Client) attempt(ctx context.Context, t *table, m route.Member, op func(context.Context, *client.Client) error) error {
	if c.opts.AttemptTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.AttemptTimeout)
		defer cancel()
	}
	nc, err := c.node(ctx, t, m)
	if err != nil {
		return err
	}
	return c.lostIfClosed(op(ctx, nc.WithEpoch(t.epoch()).WithAck(c.ack)), m)
}

// lostIfClosed turns the ErrClosed of a call whose pool was closed under it
// (its node left the ring) into ErrConnLost: the request may have been sent.
// Once the Client is closed, it is ErrClosed.
func (c *Client) lostIfClosed(err error, m route.Member) error {
	if !errors.Is(err, ErrClosed) || errors.Is(err, ErrConnLost) {
		return err
	}
	if c.isClosed() {
		return ErrClosed
	}
	return fmt.Errorf("%w: node %d left the routing state (%v)", ErrConnLost, m.ID, err)
}

// note counts an attempt's verdict and marks an unreachable node.
func (s *shared) note(v verdict, err error, m route.Member) {
	if errors.Is(err, ErrWrongOwner) {
		s.stats.wrongOwner.Add(1)
	}
	switch v {
	case unreachable:
		s.markSuspect(m.ID)
		s.stats.failovers.Add(1)
	case next:
		if !errors.Is(err, ErrWrongOwner) {
			s.stats.failovers.Add(1)
		}
	}
}

// do runs op on a replica of key until it gives a final outcome or the
// call's deadline passes (see the package doc). what names the call in
// errors; idempotent says whether an attempt whose outcome is unknown may
// be repeated.
func (c *Client) do(ctx context.Context, what, key string, idempotent bool, op func(context.Context, *client.Client) error) error {
	if c.isClosed() {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return ctxErr(ctx, what, nil)
	}
	ctx, cancel := c.deadlines.bound(ctx)
	defer cancel()
	k := []byte(key)
	var last error
	var buf [8]route.Member
	for round := 0; ; {
		t := c.table.Load()
		reps := t.replicas(k, buf[:0])
		preferReachable(reps, c.suspect)
		if len(reps) == 0 {
			last = errNoReplica
		}
		var want uint64
	replicas:
		for _, m := range reps {
			err := c.attempt(ctx, t, m, op)
			if errors.Is(err, ErrClosed) && !errors.Is(err, ErrConnLost) {
				return err
			}
			if err != nil && ended(ctx) {
				return ctxErr(ctx, what, last)
			}
			v := classify(err, t.epoch(), idempotent)
			c.note(v, err, m)
			switch v {
			case done:
				return err
			case refresh:
				var we *wire.Error
				errors.As(err, &we)
				want, last = we.Epoch, err
				break replicas
			}
			last = err
		}
		// No replica served the request: route by a newer state if there
		// is one, else pause first.
		if !c.refresh(ctx, t, want) {
			if !c.pause(ctx, round) {
				if c.isClosed() {
					return ErrClosed
				}
				return ctxErr(ctx, what, last)
			}
			round++
		}
		if c.isClosed() {
			return ErrClosed
		}
		c.stats.retries.Add(1)
	}
}

// pause waits the backoff after the round-th failed round, and reports
// whether it passed before ctx ended or the client closed.
func (c *Client) pause(ctx context.Context, round int) bool {
	return sleep(ctx, c.ctx.Done(), backoff(round, c.opts.MinBackoff, c.opts.MaxBackoff))
}
