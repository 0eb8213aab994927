package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/trellisdb/trellis/resp"
	"github.com/trellisdb/trellis/route"
)

// maxForwardReply bounds a forwarded command's reply.
const maxForwardReply = 64 << 20

// respPool keeps idle connections to other nodes' Redis ports, for
// forwarding commands about keys this node does not replicate.
type respPool struct {
	mu     sync.Mutex
	idle   map[string][]net.Conn
	closed bool
}

const maxIdlePerAddr = 8

func (p *respPool) get(ctx context.Context, addr string) (net.Conn, error) {
	p.mu.Lock()
	if cs := p.idle[addr]; len(cs) > 0 {
		c := cs[len(cs)-1]
		p.idle[addr] = cs[:len(cs)-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func (p *respPool) put(addr string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[addr]) >= maxIdlePerAddr {
		c.Close()
		return
	}
	if p.idle == nil {
		p.idle = map[string][]net.Conn{}
	}
	p.idle[addr] = append(p.idle[addr], c)
}

func (p *respPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, cs := range p.idle {
		for _, c := range cs {
			c.Close()
		}
	}
	p.idle = nil
}

// ForwardRESP sends an encoded Redis command about key to the Redis port of
// a node that replicates key (trying each replica until one answers) and
// returns its raw reply. A command sent once (not idempotent: INCR and its
// kin) moves on to another replica only if it was not sent: once sent, a
// lost answer is an error, for the command may have been applied.
func (n *Node) ForwardRESP(ctx context.Context, key, cmd []byte, once bool) ([]byte, error) {
	var buf [8]route.Member
	var errs []error
	for _, m := range n.view.Load().replicas(key, buf[:0]) {
		if m.ID == n.cfg.ID || m.RESPAddr == "" {
			continue
		}
		reply, sent, err := n.forwardTo(ctx, m.RESPAddr, cmd)
		if err == nil {
			return reply, nil
		}
		errs = append(errs, fmt.Errorf("node %d: %w", m.ID, err))
		if ctx.Err() != nil {
			break
		}
		if once && sent {
			return nil, fmt.Errorf("%w (the command may have been applied: not retried on another replica)", errors.Join(errs...))
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("no replica of the key has a Redis port")
	}
	return nil, errors.Join(errs...)
}

// forwardTo sends cmd to the Redis port at addr and returns the raw reply.
// sent reports whether any of cmd may have reached the node.
func (n *Node) forwardTo(ctx context.Context, addr string, cmd []byte) (reply []byte, sent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReplicaTimeout)
	defer cancel()
	c, err := n.resp.get(ctx, addr)
	if err != nil {
		return nil, false, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	} else {
		_ = c.SetDeadline(time.Time{})
	}
	if w, err := c.Write(cmd); err != nil {
		c.Close()
		return nil, w > 0, err
	}
	_, reply, err = resp.ReadReply(c, nil, resp.Limits{MaxBulk: maxForwardReply})
	if err != nil {
		c.Close() // broken, or out of step with its requests
		return nil, true, err
	}
	n.resp.put(addr, c)
	return reply, true, nil
}
