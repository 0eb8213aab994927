package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/trellisdb/trellis/route"
)

// Router is the routing tier as a storage node sees it (route.Client).
type Router interface {
	State(ctx context.Context) (route.State, error)
	Propose(ctx context.Context, c route.Command) (route.State, error)
	Heartbeat(ctx context.Context, id uint64) error
}

// StateSource is where a Node fetches the routing state.
type StateSource interface {
	State(ctx context.Context) (route.State, error)
}

// MemberConfig configures a Member.
type MemberConfig struct {
	Node     *Node
	Router   Router
	Self     route.Member  // this node's id and addresses (its state is ignored)
	Every    time.Duration // heartbeat and state refresh period; default 500 ms
	Activate time.Duration // how long a joining node may spend syncing before it activates anyway; default 30 s
	Logger   *slog.Logger
}

// Member keeps a storage node in its cluster: it registers the node with
// the routing tier, heartbeats, follows the routing state, and, while the
// node is joining, pulls its keys from the current holders (anti-entropy)
// before asking to be activated, so that it serves nothing it does not
// hold.
type Member struct{ cfg MemberConfig }

// NewMember returns a member driver; Run starts it.
func NewMember(cfg MemberConfig) (*Member, error) {
	switch {
	case cfg.Node == nil || cfg.Router == nil:
		return nil, errors.New("cluster: member needs a node and a router")
	case cfg.Self.ID == 0 || cfg.Self.Addr == "":
		return nil, errors.New("cluster: member needs its id and address")
	}
	if cfg.Every == 0 {
		cfg.Every = 500 * time.Millisecond
	}
	if cfg.Activate == 0 {
		cfg.Activate = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Member{cfg: cfg}, nil
}

// Run registers the node and keeps it in the cluster until ctx ends or the
// node has left it. It returns ErrRemoved once a node that was asked to
// leave (route.OpLeave) has handed its keys to the remaining members and
// been removed, nil when ctx ends, and another error only if the node
// cannot be registered before ctx ends.
func (m *Member) Run(ctx context.Context) error {
	c := m.cfg
	// leaving: this node was seen leaving; once removed, it stops.
	st, leaving, err := m.resumeLeave(ctx)
	if err != nil {
		return err
	}
	if leaving {
		c.Logger.Info("this node was leaving when it stopped: marked down, finishing the leave", "node", c.Self.ID, "epoch", st.Epoch)
	} else {
		if st, err = m.register(ctx); err != nil {
			return err
		}
		c.Logger.Info("registered with the routing tier", "node", c.Self.ID, "epoch", st.Epoch)
	}
	_ = c.Node.SetState(st)
	joinedAt := time.Now()
	// Heartbeats go on their own: a joining or leaving node's sync rounds
	// may take longer than the routing tier waits for a heartbeat.
	hctx, stopHeartbeats := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.heartbeats(hctx)
	}()
	defer func() {
		stopHeartbeats()
		wg.Wait()
	}()
	t := time.NewTicker(c.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		st, err := c.Router.State(ctx)
		if err != nil {
			if ctx.Err() == nil {
				c.Logger.Debug("fetching the routing state failed", "err", err)
			}
			continue
		}
		_ = c.Node.SetState(st)
		me, ok := st.Member(c.Self.ID)
		switch {
		case !ok && leaving:
			c.Logger.Info("removed from the cluster", "node", c.Self.ID, "epoch", st.Epoch)
			return ErrRemoved
		case me.State == route.Leaving || (leaving && me.State == route.Down):
			// Down while leaving: restarted (see resumeLeave) or marked
			// down by the routing tier; the leave goes on either way.
			leaving = true
			if m.leave(ctx) {
				return ErrRemoved
			}
		case !ok || me.State == route.Down:
			// Marked down (we were unreachable) or removed: come back.
			if st, err = m.register(ctx); err == nil {
				_ = c.Node.SetState(st)
				joinedAt = time.Now()
			}
		case me.State == route.Joining:
			m.join(ctx, joinedAt)
		}
	}
}

// heartbeats tells the routing tier this node is alive every Every, until
// ctx ends.
func (m *Member) heartbeats(ctx context.Context) {
	c := m.cfg
	t := time.NewTicker(c.Every)
	defer t.Stop()
	for {
		if err := c.Router.Heartbeat(ctx, c.Self.ID); err != nil && ctx.Err() == nil {
			c.Logger.Debug("heartbeat failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// resumeLeave looks at the routing state before the node registers: if it
// has this node leaving (it stopped, or crashed, during a leave), it marks
// it down, since it may have missed writes and must not serve reads again,
// and reports leaving: Run then finishes the leave from the down state (a
// down member can be removed). Otherwise it changes nothing.
func (m *Member) resumeLeave(ctx context.Context) (st route.State, leaving bool, err error) {
	c := m.cfg
	err = m.retry(ctx, "reading the routing state", func() error {
		st, err = c.Router.State(ctx)
		if err != nil {
			return err
		}
		me, ok := st.Member(c.Self.ID)
		if leaving = ok && me.State == route.Leaving; leaving {
			st, err = c.Router.Propose(ctx, route.Command{Op: route.OpMarkDown, ID: c.Self.ID})
		}
		return err
	})
	return st, leaving, err
}

// retry runs step until it succeeds, every Every, logging failures, or
// until ctx ends: then it returns step's last error.
func (m *Member) retry(ctx context.Context, what string, step func() error) error {
	for {
		err := step()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("cluster: node %d: %s: %w", m.cfg.Self.ID, what, err)
		}
		m.cfg.Logger.Warn(what+" failed; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(m.cfg.Every):
		}
	}
}

// register registers the node as joining. A node that starts while the
// routing tier still has it active (it crashed and came back before being
// marked down) is marked down first: it may have missed writes, so it must
// not serve reads before it has caught up, which is what joining does.
func (m *Member) register(ctx context.Context) (st route.State, err error) {
	self := m.cfg.Self
	self.State = 0
	err = m.retry(ctx, "registering with the routing tier", func() error {
		st, err = m.cfg.Router.Propose(ctx, route.Command{Op: route.OpRegister, Member: self})
		if err == nil {
			if me, ok := st.Member(self.ID); ok && me.State != route.Joining {
				_, err = m.cfg.Router.Propose(ctx, route.Command{Op: route.OpMarkDown, ID: self.ID})
				if err == nil {
					st, err = m.cfg.Router.Propose(ctx, route.Command{Op: route.OpRegister, Member: self})
				}
			}
		}
		return err
	})
	return st, err
}

// join pulls the joining node's keys from its peers and, once a round finds
// nothing new to take (or the time allowed has passed), asks to be
// activated. A round may fetch keys this node already holds (a peer's
// digests are reused for an anti-entropy period, and writes keep arriving
// by replication meanwhile): what counts is whether a merge changed
// anything.
func (m *Member) join(ctx context.Context, since time.Time) {
	c := m.cfg
	sum := c.Node.AntiEntropyOnce(ctx)
	if (sum.Errors > 0 || sum.Changed > 0) && time.Since(since) < c.Activate {
		c.Logger.Info("joining: syncing", "fetched", sum.Fetched, "errors", sum.Errors)
		return
	}
	st, err := c.Router.Propose(ctx, route.Command{Op: route.OpActivate, ID: c.Self.ID})
	if err != nil {
		c.Logger.Warn("activation failed; will retry", "err", err)
		return
	}
	_ = c.Node.SetState(st)
	c.Logger.Info("active", "node", c.Self.ID, "epoch", st.Epoch)
}

// leave hands a leaving node's keys to the members that replicate them once
// it is gone (anti-entropy with every member, on the current and the pending
// ring) and, once a round finds every one of them up to date, asks to be
// removed. It reports whether the node was removed.
func (m *Member) leave(ctx context.Context) bool {
	c := m.cfg
	if me, ok := c.Node.State().Member(c.Self.ID); ok && me.State == route.Down {
		// Restarted while leaving: on no ring, it pushes every copy it
		// holds to the keys' replicas, and goes once they all confirmed.
		if s := c.Node.HandoffAll(ctx); s.Kept > 0 || s.Errors > 0 {
			c.Logger.Info("leaving: handing off", "keys", s.Orphans, "dropped", s.Dropped, "kept", s.Kept, "errors", s.Errors)
			return false
		}
	}
	sum := c.Node.AntiEntropyOnce(ctx)
	if sum.Errors > 0 || sum.Pushed > 0 || sum.Fetched > 0 {
		c.Logger.Info("leaving: handing off", "pushed", sum.Pushed, "fetched", sum.Fetched, "errors", sum.Errors)
		return false
	}
	st, err := c.Router.Propose(ctx, route.Command{Op: route.OpRemove, ID: c.Self.ID})
	if err != nil {
		// A retried removal whose first attempt was committed fails as an
		// unknown member: what counts is whether the node is still there.
		if st, serr := c.Router.State(ctx); serr == nil {
			if _, ok := st.Member(c.Self.ID); !ok {
				_ = c.Node.SetState(st)
				return true
			}
		}
		c.Logger.Warn("removal failed; will retry", "err", err)
		return false
	}
	_ = c.Node.SetState(st)
	c.Logger.Info("handed off every key; removed from the cluster", "node", c.Self.ID, "epoch", st.Epoch)
	return true
}
