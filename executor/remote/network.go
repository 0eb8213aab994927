package remote

import (
	"context"
	"fmt"
	"sync"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/wire"
)

// Network is executor.Network over the native protocol: one pooled client
// per receiving process, dialled on first use and reconnecting by itself.
// Safe for concurrent use.
type Network struct {
	opts client.Options

	mu      sync.Mutex
	clients map[string]*dialing
	closed  bool
}

// dialing is a client being dialled (done closed when c or err is set), so
// that concurrent senders to one address share one dial.
type dialing struct {
	done chan struct{}
	c    *client.Client
	err  error
}

// NewNetwork returns a network whose clients use opts (Name defaults to
// "trellis-executor").
func NewNetwork(opts client.Options) *Network {
	if opts.Name == "" {
		opts.Name = "trellis-executor"
	}
	return &Network{opts: opts, clients: make(map[string]*dialing)}
}

// Close closes every client. Later sends fail.
func (n *Network) Close() error {
	n.mu.Lock()
	n.closed = true
	clients := n.clients
	n.clients = nil
	n.mu.Unlock()
	for _, d := range clients {
		<-d.done
		if d.c != nil {
			_ = d.c.Close()
		}
	}
	return nil
}

// client returns addr's client, dialling it if needed. A failed dial is
// not kept: the next send dials again.
func (n *Network) client(ctx context.Context, addr string) (*client.Client, error) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, fmt.Errorf("%w: network closed", wire.ErrUnavailable)
	}
	d := n.clients[addr]
	if d == nil {
		d = &dialing{done: make(chan struct{})}
		n.clients[addr] = d
		n.mu.Unlock()
		d.c, d.err = client.Dial(ctx, addr, n.opts)
		if d.err != nil {
			n.mu.Lock()
			if n.clients[addr] == d {
				delete(n.clients, addr)
			}
			n.mu.Unlock()
		}
		close(d.done)
	} else {
		n.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, unreachable(addr, ctx.Err())
		}
	}
	if d.err != nil {
		return nil, unreachable(addr, d.err)
	}
	return d.c, nil
}

// unreachable reports a failure to reach addr (no answer came): always
// unavailable, whatever the cause, so that the coordinator re-runs the
// call elsewhere.
func unreachable(addr string, err error) error {
	return fmt.Errorf("%w: %s: %v", wire.ErrUnavailable, addr, err)
}

// send delivers one message to addr.
func (n *Network) send(ctx context.Context, op wire.Op, addr string, enc []byte) error {
	c, err := n.client(ctx, addr)
	if err != nil {
		return err
	}
	resp, err := c.Do(ctx, &wire.Request{Op: op, Key: []byte(addr), Value: enc})
	if err != nil {
		return unreachable(addr, err)
	}
	return resp.Err()
}

// Trigger implements executor.Network.
func (n *Network) Trigger(ctx context.Context, addr string, t *executor.Trigger) error {
	return n.send(ctx, wire.OpExTrigger, addr, t.AppendBinary(nil))
}

// Result implements executor.Network.
func (n *Network) Result(ctx context.Context, addr string, r *executor.Result) error {
	return n.send(ctx, wire.OpExResult, addr, r.AppendBinary(nil))
}

// Message implements executor.Network.
func (n *Network) Message(ctx context.Context, addr string, m *executor.Message) error {
	return n.send(ctx, wire.OpExMessage, addr, m.AppendBinary(nil))
}

// Report implements executor.Network.
func (n *Network) Report(ctx context.Context, addr string, r *executor.Report) error {
	return n.send(ctx, wire.OpExReport, addr, r.AppendBinary(nil))
}

var _ executor.Network = (*Network)(nil)
