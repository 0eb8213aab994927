package cluster

import (
	"context"
	"sync"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/wire"
)

// TCPTransport reaches peers over the native protocol, one pooled client
// per peer address, dialled on first use. It is safe for concurrent use.
type TCPTransport struct {
	opts client.Options

	mu      sync.Mutex
	clients map[string]*client.Client
	closed  bool
}

// NewTCPTransport returns a transport whose connections use opts.
func NewTCPTransport(opts client.Options) *TCPTransport {
	return &TCPTransport{opts: opts, clients: map[string]*client.Client{}}
}

// Call sends req to the node at addr.
func (t *TCPTransport) Call(ctx context.Context, addr string, req *wire.Request) (*wire.Response, error) {
	c, err := t.client(ctx, addr)
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, req)
}

func (t *TCPTransport) client(ctx context.Context, addr string) (*client.Client, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, client.ErrClosed
	}
	if c := t.clients[addr]; c != nil {
		t.mu.Unlock()
		return c, nil
	}
	t.mu.Unlock()
	c, err := client.Dial(ctx, addr, t.opts) // outside the lock: dialling may take a while
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		c.Close()
		return nil, client.ErrClosed
	}
	if old := t.clients[addr]; old != nil {
		c.Close() // another caller dialled first
		return old, nil
	}
	t.clients[addr] = c
	return c, nil
}

// Close closes every connection.
func (t *TCPTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for _, c := range t.clients {
		c.Close()
	}
	clear(t.clients)
	return nil
}
