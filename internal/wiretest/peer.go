// Package wiretest provides a fake native-protocol server for tests of
// what talks to storage nodes: a peer that answers each request as the test
// decides, or not at all, and can drop its connections.
package wiretest

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/trellisdb/trellis/wire"
)

// Peer listens on a loopback port and serves every connection it accepts
// on a goroutine of its own, until the test ends.
type Peer struct {
	ln     net.Listener
	answer func(req *wire.Request) []byte

	// Accepts counts the connections accepted; Hangups those that the other
	// side closed (or that failed).
	Accepts, Hangups atomic.Int32

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// NewPeer starts a peer whose answer to each request is the response frame
// answer returns (nil: no answer; the connection stays open). answer runs
// on the connection's goroutine.
func NewPeer(t testing.TB, answer func(req *wire.Request) []byte) *Peer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{ln: ln, answer: answer}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr returns the peer's address.
func (p *Peer) Addr() string { return p.ln.Addr().String() }

func (p *Peer) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.Accepts.Add(1)
		p.mu.Lock()
		p.conns = append(p.conns, c)
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Peer) serve(c net.Conn) {
	defer p.wg.Done()
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, err := c.Read(chunk)
		if err != nil {
			p.Hangups.Add(1)
			return
		}
		buf = append(buf, chunk[:n]...)
		for {
			body, size, err := wire.SplitFrame(buf, wire.Limits{})
			if err != nil {
				break
			}
			var req wire.Request
			if req.Decode(body, wire.Limits{}) == nil {
				if out := p.answer(&req); out != nil {
					if _, err := c.Write(out); err != nil {
						return
					}
				}
			}
			buf = buf[size:]
		}
	}
}

// DropConns closes the connections accepted so far.
func (p *Peer) DropConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *Peer) close() {
	p.ln.Close()
	p.DropConns()
	p.wg.Wait()
}
