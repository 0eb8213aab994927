package benchmarks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/resp"
)

// ErrReply is wrapped by the errors FillRESP and DBSize return when the
// server answers with an error reply or an unexpected kind of reply.
var ErrReply = errors.New("benchmarks: unexpected reply")

// FillBatch is the number of SET commands FillRESP sends per write.
const FillBatch = 1000

// FillRESP writes keys "key:000000000000" ... n-1 (the format of RunKVS and
// of redis-benchmark -r) with valueSize-byte values, by SET over the Redis
// protocol at addr, on one connection, FillBatch commands per write; it
// reads every reply of a write before the next one and fails on the first
// error reply (wrapping ErrReply). progress, if not nil, is called every
// ProgressInterval from one goroutine, never after FillRESP returns. It
// returns promptly when ctx ends, with ctx's error.
func FillRESP(ctx context.Context, addr string, n, valueSize int, progress func(Progress)) error {
	if n < 0 || n > MaxKeys {
		return fmt.Errorf("%w: fill %d keys, want [0, %d]", ErrInvalidConfig, n, int64(MaxKeys))
	}
	if valueSize < 0 {
		return fmt.Errorf("%w: value size %d", ErrInvalidConfig, valueSize)
	}
	c, err := dialRESP(ctx, addr)
	if err != nil {
		return err
	}
	defer c.close()

	var done atomic.Int64
	start := time.Now()
	stop := reportEvery(progress, func() Progress {
		return Progress{Phase: PhaseFill, Elapsed: time.Since(start), Done: done.Load(), Target: int64(n)}
	})
	defer stop()

	value := bytes.Repeat([]byte{'x'}, valueSize)
	set := []byte("SET")
	out := make([]byte, 0, FillBatch*(valueSize+keyLen+32))
	key := make([]byte, 0, keyLen)
	for first := 0; first < n; first += FillBatch {
		end := min(first+FillBatch, n)
		out = out[:0]
		for k := first; k < end; k++ {
			key = appendKey(key[:0], uint64(k))
			out = resp.AppendCommand(out, set, key, value)
		}
		if _, err := c.nc.Write(out); err != nil {
			return c.err(ctx, fmt.Errorf("write: %w", err))
		}
		for k := first; k < end; k++ {
			r, err := c.next()
			if err != nil {
				return c.err(ctx, err)
			}
			if r.Kind == resp.KindError {
				return fmt.Errorf("%w: SET key:%012d: -%s", ErrReply, k, r.Str)
			}
		}
		done.Store(int64(end))
	}
	return nil
}

// DBSize returns the number of keys the Redis-protocol server at addr
// reports (DBSIZE).
func DBSize(ctx context.Context, addr string) (int64, error) {
	c, err := dialRESP(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer c.close()
	if _, err := c.nc.Write(resp.AppendCommandString(nil, "DBSIZE")); err != nil {
		return 0, c.err(ctx, fmt.Errorf("write: %w", err))
	}
	r, err := c.next()
	if err != nil {
		return 0, c.err(ctx, err)
	}
	if r.Kind != resp.KindInt {
		return 0, fmt.Errorf("%w: DBSIZE answered with %s %q", ErrReply, r.Kind, r.Str)
	}
	return r.Int, nil
}

// respConn is a client connection reading RESP replies. Its I/O is
// interrupted when the context it was dialed with ends.
type respConn struct {
	nc   net.Conn
	addr string
	buf  []byte // unread bytes are buf[off:]
	off  int

	stopWatch func() bool
	watchDone chan struct{}
}

func dialRESP(ctx context.Context, addr string) (*respConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("benchmarks: dial %s: %w", addr, err)
	}
	c := &respConn{nc: nc, addr: addr, buf: make([]byte, 0, 64<<10), watchDone: make(chan struct{})}
	c.stopWatch = context.AfterFunc(ctx, func() {
		_ = nc.SetDeadline(time.Unix(1, 0)) // unblocks a pending read or write
		close(c.watchDone)
	})
	return c, nil
}

func (c *respConn) close() {
	if !c.stopWatch() {
		<-c.watchDone
	}
	_ = c.nc.Close()
}

// err reports ctx's end rather than the I/O error it caused.
func (c *respConn) err(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("benchmarks: %s: %w", c.addr, err)
}

// next returns the next reply. Its Str is valid until the next call.
func (c *respConn) next() (resp.Reply, error) {
	for {
		if c.off < len(c.buf) {
			r, n, err := resp.ParseReply(c.buf[c.off:], resp.Limits{})
			if err == nil {
				c.off += n
				return r, nil
			}
			if !errors.Is(err, resp.ErrIncomplete) {
				return resp.Reply{}, fmt.Errorf("%w: %w", ErrReply, err)
			}
		}
		// Keep the unread bytes, make room, read more.
		c.buf = c.buf[:copy(c.buf, c.buf[c.off:])]
		c.off = 0
		if len(c.buf) == cap(c.buf) {
			c.buf = append(c.buf, make([]byte, cap(c.buf))...)[:len(c.buf)]
		}
		m, err := c.nc.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+m]
		if err != nil && m == 0 {
			return resp.Reply{}, fmt.Errorf("read: %w", err)
		}
	}
}
