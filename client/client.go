package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// ProtocolVersion is the native protocol version this client speaks.
const ProtocolVersion = 1

// Options configure a Client. The zero value is valid.
type Options struct {
	// Conns is the number of connections in the pool. Default 2.
	Conns int
	// Name identifies the client to the server (HELLO). Default "trellis-go".
	Name string
	// Token is presented on every connection's HELLO (wire.Options.Token):
	// the cluster's system token, which lets the cluster's own roles write
	// the reserved namespace of function and DAG definitions. A server
	// whose system token differs (or that has none) refuses it: Dial fails
	// with ErrUnauthorized. Default none: an ordinary client.
	Token string
	// MaxFrame bounds a response frame's body. Default 16 MiB.
	MaxFrame int
	// WriteTimeout bounds one write to a connection when the call's context
	// has no earlier deadline. Default 10 s.
	WriteTimeout time.Duration
	// Dial opens a connection. Default: a net.Dialer's DialContext. Tests
	// pass an in-memory network here.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (o Options) withDefaults() Options {
	if o.Conns <= 0 {
		o.Conns = 2
	}
	if o.Name == "" {
		o.Name = "trellis-go"
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = wire.DefaultMaxFrame
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Dial == nil {
		var d net.Dialer
		o.Dial = d.DialContext
	}
	return o
}

// ServerInfo is what a server says about itself when a connection opens.
type ServerInfo struct {
	Version  string // server version
	NodeID   uint64
	MaxFrame int
	MaxKey   int
	MaxValue int
}

// Client is a connection pool to one Trellis node. It is safe for concurrent
// use. Close it to release its connections.
type Client struct {
	*pool          // shared by every view of the client (see WithAck, WithEpoch)
	ack   wire.Ack // acknowledgement asked for by writes; 0: the server's default
	epoch uint64   // routing epoch sent with every request; 0: none
}

// pool is the state a Client and its views share.
type pool struct {
	addr string
	opts Options
	info ServerInfo

	mu     sync.Mutex // guards conns replacement and closed
	conns  []*conn
	closed bool
	next   atomic.Uint64
}

// Acknowledgement levels a write can ask for (see WithAck).
const (
	AckDefault = wire.AckDefault // the server's default
	AckLocal   = wire.AckLocal   // merged at one replica
	AckQuorum  = wire.AckQuorum  // merged at a majority of the key's replicas
	AckDurable = wire.AckDurable // merged and synced to disk (a node without a data directory refuses it)
)

// WithAck returns a view of c whose writes ask for the acknowledgement ack.
// The view shares c's connections: closing either closes both. It keeps c's
// routing epoch (WithEpoch).
func (c *Client) WithAck(ack wire.Ack) *Client {
	v := *c
	v.ack = ack
	return &v
}

// WithEpoch returns a view of c whose requests carry the routing epoch
// epoch (wire.Options.Epoch): the ring epoch the caller chose this node by.
// A cluster's storage node that routes by an older epoch refreshes its
// routing state before it answers; one that is not responsible for the key
// answers ErrWrongOwner with its own epoch (docs/cluster-design.md,
// "Requests"). 0 sends no epoch, as c does. The view shares c's
// connections: closing either closes both. It keeps c's acknowledgement
// (WithAck).
func (c *Client) WithEpoch(epoch uint64) *Client {
	v := *c
	v.epoch = epoch
	return &v
}

// Dial connects to the node at addr and checks that it speaks this client's
// protocol version.
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	opts = opts.withDefaults()
	c := &Client{pool: &pool{addr: addr, opts: opts, conns: make([]*conn, opts.Conns)}}
	for i := range c.conns {
		cn, info, err := c.connect(ctx)
		if err != nil {
			for _, done := range c.conns[:i] {
				done.close()
			}
			return nil, err
		}
		c.conns[i], c.info = cn, info
	}
	return c, nil
}

// Info returns what the server reported when the client connected.
func (c *Client) Info() ServerInfo { return c.info }

// connect opens one connection and runs the HELLO handshake on it.
func (c *Client) connect(ctx context.Context) (*conn, ServerInfo, error) {
	nc, err := c.opts.Dial(ctx, "tcp", c.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ServerInfo{}, fmt.Errorf("trellis: dial %s: %w", c.addr, ctxErr(ctx))
		}
		return nil, ServerInfo{}, fmt.Errorf("trellis: dial %s: %w: %w", c.addr, ErrUnavailable, err)
	}
	cn := newConn(nc, wire.Limits{MaxFrame: c.opts.MaxFrame}, c.opts.WriteTimeout)
	req := wire.Request{Op: wire.OpHello, Int: ProtocolVersion, Value: []byte(c.opts.Name)}
	if c.opts.Token != "" {
		req.Opts.Token = []byte(c.opts.Token)
	}
	cl, err := c.roundTrip(ctx, cn, &req)
	if err != nil {
		cn.close()
		return nil, ServerInfo{}, fmt.Errorf("trellis: hello to %s: %w", c.addr, err)
	}
	defer cl.release()
	if err := cl.resp.Err(); err != nil {
		cn.close()
		return nil, ServerInfo{}, fmt.Errorf("trellis: hello to %s: %w", c.addr, err)
	}
	info, err := decodeHello(cl.resp.Result)
	if err != nil {
		cn.close()
		return nil, ServerInfo{}, fmt.Errorf("trellis: hello to %s: %w", c.addr, err)
	}
	return cn, info, nil
}

func decodeHello(b []byte) (ServerInfo, error) {
	var info ServerInfo
	rd := pack.NewReader(b)
	n, err := rd.MapLen()
	if err != nil {
		return info, err
	}
	for range n {
		k, err := rd.String()
		if err != nil {
			return info, err
		}
		switch k {
		case "version":
			info.Version, err = rd.String()
		case "node":
			info.NodeID, err = rd.Uint()
		case "max_frame", "max_key", "max_value":
			var v uint64
			v, err = rd.Uint()
			switch k {
			case "max_frame":
				info.MaxFrame = int(v)
			case "max_key":
				info.MaxKey = int(v)
			default:
				info.MaxValue = int(v)
			}
		default:
			err = rd.Skip()
		}
		if err != nil {
			return info, err
		}
	}
	return info, nil
}

// Close closes every connection. Calls in flight fail with ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conns := c.conns
	c.mu.Unlock()
	for _, cn := range conns {
		cn.close()
	}
	return nil
}

// pick returns a usable connection, replacing a broken one.
func (c *Client) pick(ctx context.Context) (*conn, error) {
	i := int(c.next.Add(1) % uint64(len(c.conns)))
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	cn := c.conns[i]
	c.mu.Unlock()
	if !cn.broken() {
		return cn, nil
	}
	fresh, _, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		fresh.close()
		return nil, ErrClosed
	}
	if c.conns[i] == cn {
		c.conns[i] = fresh
		go cn.close() // already failed; just wait for its reader
		return fresh, nil
	}
	fresh.close() // another caller replaced it first
	return c.conns[i], nil
}

// roundTrip sends one request on cn and waits for its response. The caller
// must release the returned call.
func (c *Client) roundTrip(ctx context.Context, cn *conn, req *wire.Request) (*call, error) {
	g := newGroup(1)
	err := cn.sendReq(ctx, g.calls, req)
	if err != nil {
		g.release()
		return nil, err
	}
	abandoned, err := g.wait(ctx)
	if abandoned {
		return nil, err
	}
	cl := g.calls[0]
	if cl.err != nil {
		err := cl.err
		g.release()
		return nil, err
	}
	return cl, nil
}

// do sends req on a pooled connection and returns its response, or the
// server's error.
func (c *Client) do(ctx context.Context, req *wire.Request) (*call, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxErr(ctx)
	}
	if c.ack != wire.AckDefault && req.Op.IsWrite() {
		req.Opts.Ack = c.ack
	}
	if c.epoch != 0 {
		req.Opts.Epoch = c.epoch
	}
	cn, err := c.pick(ctx)
	if err != nil {
		return nil, err
	}
	cl, err := c.roundTrip(ctx, cn, req)
	if err != nil {
		return nil, err
	}
	if err := cl.resp.Err(); err != nil {
		cl.release()
		return nil, err
	}
	return cl, nil
}

// Do is the raw call, for tools and for roles that speak operations this
// package has no method for (the routing tier's, say): it sends req and
// returns the server's response whatever its code. A server error is in the
// response (Code, Msg, see Response.Err), not in err; err reports a call
// that got no response: the context ended, the connection failed
// (ErrConnLost: the request may have been applied), or the client is
// closed. The response's Result is a copy owned by the caller, and its ID is
// req.ID.
//
// The client picks the wire id of the request, so req.ID is not sent, and
// req is not modified; req.Opts are sent as they are (a WithAck or WithEpoch
// view does not change them).
func (c *Client) Do(ctx context.Context, req *wire.Request) (*wire.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, ctxErr(ctx)
	}
	cn, err := c.pick(ctx)
	if err != nil {
		return nil, err
	}
	r := *req // roundTrip sets the wire id
	cl, err := c.roundTrip(ctx, cn, &r)
	if err != nil {
		return nil, err
	}
	defer cl.release()
	resp := cl.resp
	resp.ID = req.ID
	resp.Result = bytes.Clone(resp.Result)
	return &resp, nil
}

// DoAll sends req to every node in nodes at once, one connection of each,
// and waits for all their answers (the caller wakes once, when the last one
// is in): a write that must reach several replicas costs one round trip,
// not one per replica. It returns each node's outcome, errs[i] for
// nodes[i]: nil, the server's error (as Do's callers get it from
// Response.Err), or the transport's (the context ended, the connection
// failed: the request may have been applied). The responses' results are
// not returned: it is for writes whose answer is nil or a count.
//
// As with Do, req.Opts are sent as they are and req is not modified.
func DoAll(ctx context.Context, req *wire.Request, nodes ...*Client) []error {
	errs := make([]error, len(nodes))
	if err := ctx.Err(); err != nil {
		for i := range errs {
			errs[i] = ctxErr(ctx)
		}
		return errs
	}
	g := newGroup(len(nodes))
	for i, c := range nodes {
		cl := g.calls[i]
		cn, err := c.pick(ctx)
		if err == nil {
			r := *req // each frame gets its connection's wire id
			err = cn.sendReq(ctx, g.calls[i:i+1], &r)
		}
		if err != nil { // nothing was queued: the call completes here
			cl.err = err
			cl.complete()
		}
	}
	if abandoned, err := g.wait(ctx); abandoned {
		for i := range errs {
			errs[i] = err
		}
		return errs // the readers release g
	}
	for i, cl := range g.calls {
		if errs[i] = cl.err; errs[i] == nil {
			errs[i] = cl.resp.Err()
		}
	}
	g.release()
	return errs
}
