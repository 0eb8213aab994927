package route

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/wire"
)

// ErrClientClosed: the Client was closed.
var ErrClientClosed = errors.New("route: client closed")

// Client talks to the routing tier through the Services of its nodes (their
// native-protocol addresses). It connects to each address on first use and
// keeps the connection. It is safe for concurrent use; Close releases it.
//
// Every call tries the addresses in turn, starting with the one that last
// answered, and moves on when an address cannot be reached or answers
// unavailable (a follower asked for a change, a node shutting down) or
// timeout. After a round in which every address failed so, it waits (20 ms,
// doubling up to 1 s) and tries again, until ctx ends: pass a context with a
// deadline. Commands are idempotent, so a retry of one whose outcome was
// lost is safe.
type Client struct {
	opts client.Options
	eps  []*endpoint
	pref atomic.Int64 // index of the address that last answered

	mu     sync.Mutex // guards closed; taken after an endpoint's mu, never before
	closed bool
}

type endpoint struct {
	addr string
	mu   sync.Mutex
	c    *client.Client // nil until dialled
}

// Retry pacing of a Client after a round of failures.
const (
	retryMin = 20 * time.Millisecond
	retryMax = time.Second
)

// NewClient returns a Client of the routing nodes at addrs. It does not
// connect yet. opts configures each connection pool (default 1 connection
// per address).
func NewClient(addrs []string, opts client.Options) *Client {
	if opts.Conns == 0 {
		opts.Conns = 1
	}
	c := &Client{opts: opts}
	for _, a := range addrs {
		c.eps = append(c.eps, &endpoint{addr: a})
	}
	return c
}

// State returns the routing state from a reachable routing node. A follower
// answers from its copy, which may lag the leader's by the commands in
// flight.
func (c *Client) State(ctx context.Context) (State, error) {
	resp, addr, err := c.call(ctx, "ring", &wire.Request{Op: wire.OpRing})
	if err != nil {
		return State{}, err
	}
	return decodeStateResponse(resp, addr)
}

// Propose commits cmd on the routing leader and returns the state right
// after it applied. An invalid command is refused without a call
// (ErrInvalid). A command the state refuses (see Apply) is committed
// without effect and returns an error: one wrapping ErrUnknownMember for an
// unknown member, one wrapping wire.ErrBadRequest for a bad transition.
func (c *Client) Propose(ctx context.Context, cmd Command) (State, error) {
	b, err := cmd.AppendBinary(nil)
	if err != nil {
		return State{}, err
	}
	resp, addr, err := c.call(ctx, "command "+cmd.Op.String(), &wire.Request{Op: wire.OpCommand, Value: b})
	if err != nil {
		return State{}, err
	}
	return decodeStateResponse(resp, addr)
}

// Heartbeat tells the routing leader that member id is alive. An id that is
// not a member returns an error wrapping ErrUnknownMember.
func (c *Client) Heartbeat(ctx context.Context, id uint64) error {
	_, _, err := c.call(ctx, "heartbeat", &wire.Request{Op: wire.OpHeartbeat, Uints: []uint64{id}})
	return err
}

// Close closes every connection. Calls in flight fail; later calls return
// ErrClientClosed. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	var errs []error
	for _, ep := range c.eps {
		ep.mu.Lock()
		if ep.c != nil {
			errs = append(errs, ep.c.Close())
			ep.c = nil
		}
		ep.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func decodeStateResponse(resp *wire.Response, addr string) (State, error) {
	b, err := resp.Bytes()
	if err != nil {
		return State{}, fmt.Errorf("route: state from %s: %w", addr, err)
	}
	s, err := DecodeState(b)
	if err != nil {
		return State{}, fmt.Errorf("route: state from %s: %w", addr, err)
	}
	return s, nil
}

// call sends req to the routing nodes in turn until one answers it with
// success or a final error (see Client), and returns the successful response
// and the address that gave it.
func (c *Client) call(ctx context.Context, what string, req *wire.Request) (*wire.Response, string, error) {
	if len(c.eps) == 0 {
		return nil, "", fmt.Errorf("route: %s: no routing node addresses", what)
	}
	var last error
	backoff := retryMin
	for {
		start := int(c.pref.Load())
		for k := range c.eps {
			i := (start + k) % len(c.eps)
			ep := c.eps[i]
			resp, err := c.try(ctx, ep, req)
			switch {
			case errors.Is(err, ErrClientClosed):
				return nil, "", err
			case err == nil && resp.Code == wire.CodeOK:
				c.pref.Store(int64(i))
				return resp, ep.addr, nil
			case err == nil && resp.Code != wire.CodeUnavailable && resp.Code != wire.CodeTimeout:
				return nil, ep.addr, finalError(what, ep.addr, resp.Err())
			case err == nil:
				err = resp.Err()
			}
			if ctx.Err() != nil { // err is likely the context's end: keep the previous one
				return nil, "", ctxError(ctx, what, last)
			}
			last = fmt.Errorf("%s: %w", ep.addr, err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, "", ctxError(ctx, what, last)
		case <-t.C:
		}
		backoff = min(2*backoff, retryMax)
	}
}

// ctxError is a call's error when ctx ends before a routing node answered:
// the context's error and the last failure before it, both for errors.Is.
func ctxError(ctx context.Context, what string, last error) error {
	if last == nil {
		return fmt.Errorf("route: %s: %w", what, ctx.Err())
	}
	return fmt.Errorf("route: %s: %w (last failure: %w)", what, ctx.Err(), last)
}

// finalError wraps a server error that retrying elsewhere will not change.
func finalError(what, addr string, err error) error {
	if wire.CodeOf(err) == wire.CodeNotFound {
		return fmt.Errorf("route: %s at %s: %w: %w", what, addr, ErrUnknownMember, err)
	}
	return fmt.Errorf("route: %s at %s: %w", what, addr, err)
}

// try sends req to one routing node, connecting first if needed.
func (c *Client) try(ctx context.Context, ep *endpoint, req *wire.Request) (*wire.Response, error) {
	cl, err := c.conn(ctx, ep)
	if err != nil {
		return nil, err
	}
	resp, err := cl.Do(ctx, req)
	if errors.Is(err, client.ErrClosed) && c.isClosed() {
		return nil, ErrClientClosed
	}
	return resp, err
}

// conn returns ep's connection pool, dialling it if it has none.
func (c *Client) conn(ctx context.Context, ep *endpoint) (*client.Client, error) {
	ep.mu.Lock()
	cl := ep.c
	ep.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	if c.isClosed() {
		return nil, ErrClientClosed
	}
	cl, err := client.Dial(ctx, ep.addr, c.opts)
	if err != nil {
		return nil, err
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	// Close sets closed before it visits the endpoints: either it has not
	// reached ep yet and will close cl, or closed is already visible here.
	if c.isClosed() {
		_ = cl.Close()
		return nil, ErrClientClosed
	}
	if ep.c != nil { // a concurrent call dialled first
		_ = cl.Close()
		return ep.c, nil
	}
	ep.c = cl
	return cl, nil
}

// Join asks the routing tier's leader to add the routing node with Raft id
// id at raftAddr as a voter.
func (c *Client) Join(ctx context.Context, id, raftAddr string) error {
	_, _, err := c.call(ctx, "join", &wire.Request{Op: wire.OpJoin, Keys: [][]byte{[]byte(id), []byte(raftAddr)}})
	return err
}
