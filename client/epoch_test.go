package client_test

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// seen is what a recordingNode saw of one request.
type seen struct {
	op   wire.Op
	opts wire.Options
}

// recordingNode answers every request at once (HELLO with an empty map,
// GET with not found, counting ops with 0, others with nil) and records the
// operation and options of each request but HELLO.
type recordingNode struct {
	ln net.Listener
	wg sync.WaitGroup

	mu   sync.Mutex
	reqs []seen
}

func newRecordingNode(t *testing.T) *recordingNode {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	n := &recordingNode{ln: ln}
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
		n.wg.Wait()
	})
	return n
}

func (n *recordingNode) serve(c net.Conn) {
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
		switch req.Op {
		case wire.OpHello:
			var start int
			out, start = wire.BeginResult(nil, req.ID)
			out = pack.AppendMapHeader(out, 0)
			out = wire.EndFrame(out, start)
		case wire.OpGet:
			out = wire.AppendError(nil, req.ID, wire.ErrNotFound)
		case wire.OpDelete, wire.OpCounterAdd, wire.OpSetAdd:
			out = wire.AppendIntResult(nil, req.ID, 0)
		default:
			out = wire.AppendNilResult(nil, req.ID)
		}
		if req.Op != wire.OpHello {
			n.mu.Lock()
			n.reqs = append(n.reqs, seen{op: req.Op, opts: req.Opts})
			n.mu.Unlock()
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

// take returns the requests recorded since the last take.
func (n *recordingNode) take() []seen {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := n.reqs
	n.reqs = nil
	return out
}

// A WithEpoch view sends its epoch with every request, reads and batches
// included, and keeps the acknowledgement of the view it came from (and the
// other way round); the client it came from sends no epoch.
func TestWithEpoch(t *testing.T) {
	n := newRecordingNode(t)
	c := dial(t, n.ln.Addr().String(), client.Options{Conns: 1})
	ctx := ctx(t)

	e := c.WithEpoch(7)
	require.NoError(t, e.Set(ctx, "k", []byte("v")))
	_, err := e.Get(ctx, "k")
	require.ErrorIs(t, err, client.ErrNotFound)
	_, err = e.CounterAdd(ctx, "n", 1)
	require.NoError(t, err)
	require.Equal(t, []seen{
		{op: wire.OpSet, opts: wire.Options{Epoch: 7}},
		{op: wire.OpGet, opts: wire.Options{Epoch: 7}},
		{op: wire.OpCounterAdd, opts: wire.Options{Epoch: 7}},
	}, n.take())

	require.NoError(t, e.WithAck(client.AckLocal).Set(ctx, "k", []byte("v")))
	require.NoError(t, c.WithAck(client.AckDurable).WithEpoch(9).Set(ctx, "k", []byte("v")))
	_, err = c.WithAck(client.AckLocal).WithEpoch(9).Get(ctx, "k")
	require.ErrorIs(t, err, client.ErrNotFound)
	require.Equal(t, []seen{
		{op: wire.OpSet, opts: wire.Options{Epoch: 7, Ack: wire.AckLocal}},
		{op: wire.OpSet, opts: wire.Options{Epoch: 9, Ack: wire.AckDurable}},
		{op: wire.OpGet, opts: wire.Options{Epoch: 9}}, // reads ask for no acknowledgement
	}, n.take())

	b := e.WithAck(client.AckQuorum).Batch()
	b.Get([]byte("a"))
	b.Set([]byte("a"), []byte("v"))
	res, err := b.Exec(ctx)
	require.NoError(t, err)
	require.Len(t, res, 2)
	require.Equal(t, []seen{
		{op: wire.OpGet, opts: wire.Options{Epoch: 7}},
		{op: wire.OpSet, opts: wire.Options{Epoch: 7, Ack: wire.AckQuorum}},
	}, n.take())

	require.NoError(t, c.Set(ctx, "k", []byte("v")))
	require.Equal(t, []seen{{op: wire.OpSet}}, n.take(), "the original client sends no epoch")

	require.NoError(t, e.Close())
	require.ErrorIs(t, c.Ping(ctx), client.ErrClosed, "a view shares its client's connections")
}
