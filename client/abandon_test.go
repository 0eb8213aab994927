package client_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// slowNode answers HELLO at once and every other request only when release
// is closed, so that callers can give up while their requests are in flight.
type slowNode struct {
	ln      net.Listener
	release chan struct{}
	wg      sync.WaitGroup
}

func newSlowNode(t *testing.T) *slowNode {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n := &slowNode{ln: ln, release: make(chan struct{})}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				defer c.Close()
				n.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-n.release:
		default:
			close(n.release)
		}
		n.wg.Wait()
	})
	return n
}

func (n *slowNode) serve(c net.Conn) {
	var hdr [4]byte
	var req wire.Request
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			return
		}
		if err := req.Decode(body, wire.Limits{}); err != nil {
			return
		}
		var out []byte
		if req.Op == wire.OpHello {
			out, start := wire.BeginResult(nil, req.ID)
			out = pack.AppendMapHeader(out, 0)
			out = wire.EndFrame(out, start)
			_, _ = c.Write(out)
			continue
		}
		<-n.release
		out = wire.AppendNilResult(out, req.ID)
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// A batch whose context ends is abandoned: Exec returns ErrTimeout at once;
// the late responses are absorbed and the connection stays usable.
func TestBatchAbandonedThenConnectionReused(t *testing.T) {
	n := newSlowNode(t)
	c := dial(t, n.ln.Addr().String(), client.Options{Conns: 1})
	b := c.Batch()
	for range 8 {
		b.Set([]byte("k"), []byte("v"))
	}
	short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Exec(short)
	require.ErrorIs(t, err, client.ErrTimeout)
	require.Less(t, time.Since(start), 5*time.Second)

	close(n.release) // the 8 late responses arrive and are dropped
	require.NoError(t, c.Set(ctx(t), "k", []byte("v")), "responses still matched in order")
	b.Reset()
	b.Set([]byte("k"), []byte("v"))
	res, err := b.Exec(ctx(t))
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
}
