package kvs

import (
	"bytes"
	"context"

	"github.com/panjf2000/gnet/v2"
)

// replyQueue keeps a connection's responses in request order when some of
// them complete later than the ones after them (a write waiting for its
// replicas or its disk sync). Only the connection's event loop touches it;
// a completion from elsewhere reaches it through complete. Empty most of
// the time: then replies go straight out.
type replyQueue struct {
	queue   []*reply // oldest first
	closed  bool
	flushed bool // queued for a flush by its loop's peers (loopPeers.ready)
}

// reply is a response frame, or several, in a queue; a pending reply
// becomes ready when its operation completes.
type reply struct {
	data  []byte
	ready bool
}

// put writes out if nothing is pending, or queues a copy behind what is; it
// returns out emptied.
func (q *replyQueue) put(c gnet.Conn, out []byte) []byte {
	if len(out) == 0 {
		return out
	}
	if len(q.queue) == 0 {
		writeReply(c, out)
	} else {
		q.queue = append(q.queue, &reply{data: bytes.Clone(out), ready: true})
	}
	return out[:0]
}

// add queues a pending reply.
func (q *replyQueue) add(p *reply) { q.queue = append(q.queue, p) }

// close drops everything queued; completions after it are ignored.
func (q *replyQueue) close() {
	q.closed = true
	q.queue = nil
}

// flush writes the ready replies at the head of the queue.
func (q *replyQueue) flush(c gnet.Conn) {
	var out []byte
	i := 0
	for ; i < len(q.queue) && q.queue[i].ready; i++ {
		out = append(out, q.queue[i].data...)
	}
	clear(q.queue[:i])
	q.queue = q.queue[i:]
	if len(q.queue) == 0 {
		q.queue = nil
	}
	writeReply(c, out)
}

// ready makes the pending reply p ready with data and writes what can be
// written. Called on c's event loop.
func (q *replyQueue) ready(c gnet.Conn, p *reply, data []byte) {
	if q.closed {
		return
	}
	p.data, p.ready = data, true
	q.flush(c)
}

// complete makes the pending reply p of c's queue ready with data, on c's
// event loop, and writes what can be written. Called from any goroutine.
func complete(c gnet.Conn, q *replyQueue, p *reply, data []byte) {
	_ = c.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		q.ready(c, p, data)
		return nil
	}))
}
