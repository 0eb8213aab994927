package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// ServiceConfig configures a Service. The zero value of every optional field
// means its default.
type ServiceConfig struct {
	// Node is the routing node served. Required.
	Node *Node
	// DownAfter is how long the leader waits without a heartbeat from a
	// member before it proposes MarkDown. Default 5 s.
	DownAfter time.Duration
	// CheckEvery is the period of Run's liveness check. Default 1 s.
	CheckEvery time.Duration
	// ProposeTimeout bounds the commit of one command (an OpCommand, or a
	// MarkDown of Run's). Default 10 s.
	ProposeTimeout time.Duration
	// Now is the clock liveness is measured with. Default time.Now.
	Now func() time.Time
	// Logger receives members marked down (Info) and failed checks (Warn).
	// Default: discard.
	Logger *slog.Logger
}

// Validate reports a missing or unusable field.
func (c ServiceConfig) Validate() error {
	switch {
	case c.Node == nil:
		return errors.New("route: ServiceConfig.Node is required")
	case c.DownAfter < 0, c.CheckEvery < 0, c.ProposeTimeout < 0:
		return errors.New("route: ServiceConfig durations must not be negative")
	}
	return nil
}

func (c ServiceConfig) withDefaults() ServiceConfig {
	if c.DownAfter == 0 {
		c.DownAfter = 5 * time.Second
	}
	if c.CheckEvery == 0 {
		c.CheckEvery = time.Second
	}
	if c.ProposeTimeout == 0 {
		c.ProposeTimeout = 10 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Service is a routing node's network service: it answers the routing ops
// (wire.OpRing, wire.OpCommand, wire.OpHeartbeat, plus OpHello and OpPing)
// for a Node, and on the leader turns missing heartbeats into MarkDown
// commands. Serve it with a wireserver.Server (it is a wireserver.Handler);
// run Run for the liveness checks. Its methods are safe for concurrent use.
//
//   - OpRing: the node's local State (any routing node answers).
//   - OpCommand: the Command in Value, proposed on this node; the State after
//     it. On a follower: unavailable, naming the leader; the caller tries
//     another routing node. A command the state refuses: not found
//     (ErrUnknownMember) or bad request (ErrBadTransition), committed but
//     without effect.
//   - OpHeartbeat: member Uints[0] is alive. Leader only (unavailable
//     elsewhere); not found for an id that is not a member.
//
// The service never activates members: the storage node proposes Activate
// once it holds its data.
type Service struct {
	cfg  ServiceConfig
	node *Node
	log  *slog.Logger
	enc  atomic.Pointer[encodedState] // the latest State encoding served

	mu   sync.Mutex // guards live and term
	live Liveness
	// term is the Raft term of the leadership live was started in; 0 when
	// this node does not lead. A new term means a new leadership, and a
	// fresh Liveness.
	term uint64
}

type encodedState struct {
	epoch uint64
	b     []byte
}

// NewService returns a Service for cfg.Node.
func NewService(cfg ServiceConfig) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Service{cfg: cfg, node: cfg.Node, log: cfg.Logger}, nil
}

// Serve answers one request (wireserver.Handler).
func (s *Service) Serve(ctx context.Context, _ net.Addr, req *wire.Request, out []byte) []byte {
	switch req.Op {
	case wire.OpRing:
		return s.appendState(out, req.ID, s.node.State())
	case wire.OpCommand:
		return s.command(ctx, req, out)
	case wire.OpHeartbeat:
		return s.heartbeat(req, out)
	case wire.OpJoin:
		return s.join(ctx, req, out)
	case wire.OpHello:
		return s.hello(req, out)
	case wire.OpPing:
		if req.Value != nil {
			return wire.AppendBytesResult(out, req.ID, req.Value)
		}
		return wire.AppendNilResult(out, req.ID)
	}
	return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest,
		"operation %s is not served by a routing node", req.Op))
}

// join adds a routing node (Keys: its Raft id and address) as a voter; only
// the leader can, a follower answers unavailable naming it.
func (s *Service) join(ctx context.Context, req *wire.Request, out []byte) []byte {
	if len(req.Keys) != 2 || len(req.Keys[0]) == 0 || len(req.Keys[1]) == 0 {
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest, "join takes a router id and a raft address"))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProposeTimeout)
	defer cancel()
	if err := s.node.AddVoter(ctx, string(req.Keys[0]), string(req.Keys[1])); err != nil {
		return wire.AppendError(out, req.ID, wireError(err))
	}
	return wire.AppendNilResult(out, req.ID)
}

func (s *Service) hello(req *wire.Request, out []byte) []byte {
	if req.Int != client.ProtocolVersion {
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest,
			"protocol version %d is not supported; this server speaks %d", req.Int, client.ProtocolVersion))
	}
	out, start := wire.BeginResult(out, req.ID)
	out = pack.AppendMapHeader(out, 4)
	out = pack.AppendUint(pack.AppendString(out, "proto"), client.ProtocolVersion)
	out = pack.AppendString(pack.AppendString(out, "server"), "trellis")
	out = pack.AppendString(pack.AppendString(out, "role"), "route")
	out = pack.AppendString(pack.AppendString(out, "route_id"), s.node.cfg.ID)
	return wire.EndFrame(out, start)
}

// appendState appends a response carrying st's encoding. Encodings are
// cached by epoch: two States of one cluster with one epoch are equal.
func (s *Service) appendState(out []byte, id uint64, st State) []byte {
	e := s.enc.Load()
	if e == nil || e.epoch != st.Epoch {
		b, err := st.AppendBinary(nil)
		if err != nil {
			return wire.AppendError(out, id, wire.Errorf(wire.CodeInternal, "encode state: %v", err))
		}
		e = &encodedState{epoch: st.Epoch, b: b}
		s.enc.Store(e)
	}
	return wire.AppendBytesResult(out, id, e.b)
}

func (s *Service) command(ctx context.Context, req *wire.Request, out []byte) []byte {
	c, err := DecodeCommand(req.Value)
	if err != nil {
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest, "%v", err))
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ProposeTimeout)
	defer cancel()
	st, err := s.node.Propose(ctx, c)
	if err != nil {
		return wire.AppendError(out, req.ID, wireError(err))
	}
	return s.appendState(out, req.ID, st)
}

func (s *Service) heartbeat(req *wire.Request, out []byte) []byte {
	if len(req.Uints) != 1 { // a decoded request has exactly one
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest, "heartbeat takes one member id"))
	}
	id := req.Uints[0]
	now := s.cfg.Now()
	s.mu.Lock()
	leading := s.leadingLocked(now)
	_, member := s.node.State().Member(id)
	if leading && member {
		s.live.Heartbeat(id, now)
	}
	s.mu.Unlock()
	switch {
	case !leading:
		return wire.AppendError(out, req.ID, wireError(s.node.notLeader(nil)))
	case !member:
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeNotFound, "%v %d", ErrUnknownMember, id))
	}
	return wire.AppendNilResult(out, req.ID)
}

// wireError maps a Propose error to the error response a client can act on.
func wireError(err error) *wire.Error {
	var code wire.Code
	switch {
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrClosed), errors.Is(err, context.Canceled):
		code = wire.CodeUnavailable // another routing node may serve it
	case errors.Is(err, context.DeadlineExceeded):
		code = wire.CodeTimeout
	case errors.Is(err, ErrUnknownMember):
		code = wire.CodeNotFound
	case errors.Is(err, ErrBadTransition), errors.Is(err, ErrInvalid):
		code = wire.CodeBadRequest
	default:
		code = wire.CodeInternal
	}
	return &wire.Error{Code: code, Msg: err.Error()}
}

// leadingLocked reports whether this node leads, and starts a fresh
// Liveness, with every member Seen at now, when it leads in a term it did
// not lead in before: a new leader knows nothing of the heartbeats its
// predecessor received, so it gives every member a full DownAfter.
func (s *Service) leadingLocked(now time.Time) bool {
	if !s.node.IsLeader() {
		s.term, s.live = 0, Liveness{}
		return false
	}
	if term := s.node.raft.CurrentTerm(); term != s.term {
		s.term, s.live = term, Liveness{}
		for _, m := range s.node.State().Members {
			s.live.Seen(m.ID, now)
		}
	}
	return true
}

// CheckOnce runs one liveness check: if this node leads, it proposes
// MarkDown for every member without a heartbeat for DownAfter (by
// ServiceConfig.Now). It does nothing on a follower. It returns the errors of
// the proposals that failed; the next check retries them. Run calls it every
// CheckEvery; tests call it directly.
func (s *Service) CheckOnce(ctx context.Context) error {
	now := s.cfg.Now()
	s.mu.Lock()
	if !s.leadingLocked(now) {
		s.mu.Unlock()
		return nil
	}
	expired := s.live.Expired(now, s.cfg.DownAfter, s.node.State().Members)
	s.mu.Unlock()

	var errs []error
	for _, id := range expired {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.ProposeTimeout)
		_, err := s.node.Propose(pctx, Command{Op: OpMarkDown, ID: id})
		cancel()
		switch {
		case err == nil:
			s.log.Info("route: member marked down", "member", id, "down_after", s.cfg.DownAfter)
		case errors.Is(err, ErrUnknownMember):
			// Removed meanwhile: nothing to mark.
		default:
			errs = append(errs, fmt.Errorf("route: mark member %d down: %w", id, err))
			if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
				return errors.Join(errs...)
			}
		}
	}
	return errors.Join(errs...)
}

// Run runs the leader's liveness loop until ctx ends, then returns nil:
// every CheckEvery it calls CheckOnce, and when this node becomes leader it
// starts the grace period of every member at once (see CheckOnce). It runs
// on every routing node, doing nothing while the node follows.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.CheckEvery)
	defer t.Stop()
	for {
		leaderCh := s.node.WatchLeader()
		s.mu.Lock()
		s.leadingLocked(s.cfg.Now())
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil
		case <-leaderCh:
		case <-t.C:
			if err := s.CheckOnce(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("route: liveness check", "err", err)
			}
		}
	}
}
