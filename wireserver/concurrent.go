package wireserver

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"time"

	"github.com/trellisdb/trellis/wire"
)

// call is one request of a connection served with Config.Concurrency > 1,
// from the read of its frame until its response is in the writer's batch.
// Between those points the call is owned by the request alone: req aliases
// body, which nobody else touches. Calls are reused; a connection has at
// most Concurrency of them.
type call struct {
	body []byte
	req  wire.Request
	out  []byte        // the response frame
	done chan struct{} // receives once out is complete; capacity 1
	more bool          // another complete frame was buffered when this one was queued
}

// pipeline serves one connection with Config.Concurrency > 1. The
// connection's goroutine reads and decodes requests (read), each request is
// handled on a goroutine of its own, and a writer goroutine (write) writes
// the responses in request order.
type pipeline struct {
	s      *Server
	nc     net.Conn
	from   net.Addr
	ctx    context.Context // the handlers': ends when the server stops or a write fails
	cancel context.CancelFunc
	queue  chan *call     // calls read, in request order, for the writer
	free   chan *call     // calls whose response is in the writer's batch, for the reader
	made   int            // calls allocated so far; the reader's
	wg     sync.WaitGroup // the writer and the handlers

	mu       sync.Mutex // guards inFlight and setting the read deadline
	inFlight int        // requests read whose response is not written yet
}

// serveConcurrent serves nc as serveConn does, but handles up to
// Concurrency of its requests at once. It returns once the writer and every
// handler of the connection have returned.
func (s *Server) serveConcurrent(ctx context.Context, nc net.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &pipeline{
		s:      s,
		nc:     nc,
		from:   nc.RemoteAddr(),
		ctx:    ctx,
		cancel: cancel,
		queue:  make(chan *call, s.cfg.Concurrency),
		free:   make(chan *call, s.cfg.Concurrency),
	}
	p.wg.Go(p.write)
	p.read()
	close(p.queue)
	p.wg.Wait()
}

// read reads and decodes requests, starts their handlers and queues them
// for the writer, until the connection fails, the peer closes it, a frame is
// too large, or the handlers' context ends.
func (p *pipeline) read() {
	s := p.s
	br := bufio.NewReaderSize(p.nc, readBufSize)
	var hdr [wire.HeaderLen]byte
	for {
		c := p.acquire() // waits while Concurrency requests are in flight
		if p.ctx.Err() != nil {
			return
		}
		p.armRead()
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			s.readFailed(p.from, err, false)
			return
		}
		size := binary.BigEndian.Uint32(hdr[:])
		if uint64(size) > uint64(s.cfg.MaxFrame) {
			s.log.Debug("wireserver: frame too large", "peer", p.from, "size", size, "max", s.cfg.MaxFrame)
			c.out = wire.AppendError(c.out[:0], 0, wire.Errorf(wire.CodeTooLarge,
				"frame of %d bytes exceeds the limit of %d", size, s.cfg.MaxFrame))
			c.more = false
			p.push(c)
			c.done <- struct{}{}
			return
		}
		var err error
		if c.body, err = readBody(br, c.body, int(size)); err != nil {
			s.readFailed(p.from, err, true)
			return
		}
		err = c.req.Decode(c.body, s.lim)
		c.more = s.frameBuffered(br)
		p.push(c)
		if err != nil {
			c.out = wire.AppendError(c.out[:0], c.req.ID, err)
			c.done <- struct{}{}
			continue
		}
		if s.cfg.Inline != nil && s.cfg.Inline(c.req.Op) {
			c.out = s.serve(p.ctx, p.from, &c.req, c.out[:0])
			c.done <- struct{}{}
			continue
		}
		p.wg.Go(func() {
			c.out = s.serve(p.ctx, p.from, &c.req, c.out[:0])
			c.done <- struct{}{}
		})
	}
}

// acquire returns a free call, allocating one while fewer than Concurrency
// exist, or waits for the writer to free one.
func (p *pipeline) acquire() *call {
	select {
	case c := <-p.free:
		return c
	default:
	}
	if p.made < p.s.cfg.Concurrency {
		p.made++
		return &call{done: make(chan struct{}, 1)}
	}
	return <-p.free
}

// push counts c in flight and queues it for the writer. The queue never
// blocks: it holds as many calls as exist.
func (p *pipeline) push(c *call) {
	p.mu.Lock()
	p.inFlight++
	p.mu.Unlock()
	p.queue <- c
}

// armRead sets the deadline of the next read: IdleTimeout from now if no
// request is in flight, none otherwise (answered sets it once the last one
// is written).
func (p *pipeline) armRead() {
	if p.s.cfg.IdleTimeout <= 0 {
		return
	}
	p.mu.Lock()
	if p.inFlight == 0 {
		_ = p.nc.SetReadDeadline(time.Now().Add(p.s.cfg.IdleTimeout))
	} else {
		_ = p.nc.SetReadDeadline(time.Time{})
	}
	p.mu.Unlock()
}

// answered counts n responses written (or dropped after a write failure);
// the connection is idle from when none is left in flight.
func (p *pipeline) answered(n int) {
	p.mu.Lock()
	p.inFlight -= n
	if p.inFlight == 0 {
		p.s.deadline(p.nc.SetReadDeadline)
	}
	p.mu.Unlock()
}

// write writes the responses of the queued calls in request order until the
// reader closes the queue. It batches them: it writes when the next response
// is not ready (not read yet, or its handler still running) or the batch
// reaches flushAt. After a failed write it closes the connection, cancels
// the handlers' context and keeps collecting calls without writing, so that
// the reader is never left waiting for a free one.
func (p *pipeline) write() {
	var (
		out    []byte
		n      int  // responses in out
		more   bool // the reader is about to queue another call without waiting for the peer
		failed bool
	)
	flush := func() {
		if n == 0 {
			return
		}
		if !failed {
			p.s.deadline(p.nc.SetWriteDeadline)
			if _, err := p.nc.Write(out); err != nil {
				p.s.log.Debug("wireserver: write failed", "peer", p.from, "err", err)
				failed = true
				_ = p.nc.Close() // ends the reader's read
				p.cancel()
			}
		}
		if cap(out) > keepBuf {
			out = nil
		} else {
			out = out[:0]
		}
		p.answered(n)
		n = 0
	}
	for {
		var c *call
		if more {
			c = <-p.queue
		} else {
			select {
			case c = <-p.queue:
			default:
				flush()
				c = <-p.queue
			}
		}
		if c == nil { // closed: the reader is done
			flush()
			return
		}
		select {
		case <-c.done:
		default:
			flush()
			<-c.done
		}
		if !failed {
			out = append(out, c.out...)
		}
		n++
		more = c.more
		p.release(c)
		if len(out) >= flushAt {
			flush()
		}
	}
}

// release hands c back to the reader.
func (p *pipeline) release(c *call) {
	if cap(c.body) > keepBuf {
		c.body = nil
	}
	if cap(c.out) > keepBuf {
		c.out = nil
	}
	p.free <- c // never blocks: it holds as many calls as exist
}
