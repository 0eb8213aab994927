package remote

import (
	"bytes"
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
	"github.com/trellisdb/trellis/wireserver"
)

// Handler serves a process's coordinator and executor (either may be nil)
// on the native protocol, as a wireserver.Handler:
//
//   - HELLO and PING, as every Trellis server;
//   - the function and DAG operations of clients (OpFnRegister to
//     OpDagCall), answered by the coordinator;
//   - OpExTrigger and OpExMessage, delivered to the executor, and
//     OpExResult and OpExReport, delivered to the coordinator, when the
//     request names the role's address.
//
// Function calls block for the call's length: serve a Handler with
// wireserver.Config.Concurrency above 1 so that the calls one connection
// pipelines run at once.
//
// The roles are set with Set once the server listens (their address may
// be the one the server bound); until then their requests are answered
// unavailable.
type Handler struct {
	// Version is the server version HELLO reports.
	Version string
	// MaxFrame is the largest request body the server accepts (HELLO
	// reports it). Default wire.DefaultMaxFrame.
	MaxFrame int

	coord atomic.Pointer[executor.Coordinator]
	exec  atomic.Pointer[executor.Executor]
}

// Set makes h serve coord and exec (either may be nil).
func (h *Handler) Set(coord *executor.Coordinator, exec *executor.Executor) {
	h.coord.Store(coord)
	h.exec.Store(exec)
}

var _ wireserver.Handler = (*Handler)(nil)

// messageWait bounds how long a message waits for room in a full mailbox.
const messageWait = time.Second

// Serve answers one request.
func (h *Handler) Serve(ctx context.Context, _ net.Addr, req *wire.Request, out []byte) []byte {
	switch {
	case req.Op == wire.OpHello:
		return h.hello(req, out)
	case req.Op == wire.OpPing:
		if req.Value != nil {
			return wire.AppendBytesResult(out, req.ID, req.Value)
		}
		return wire.AppendNilResult(out, req.ID)
	case req.Op.IsFunction():
		c := h.coord.Load()
		if c == nil {
			return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeUnavailable,
				"operation %s is not served here: this process runs no coordinator (yet)", req.Op))
		}
		return c.Serve(ctx, req, out)
	case req.Op.IsExec():
		if err := h.deliver(ctx, req); err != nil {
			return wire.AppendError(out, req.ID, err)
		}
		return wire.AppendNilResult(out, req.ID)
	}
	return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest,
		"operation %s is not served by a coordinator or an executor", req.Op))
}

// deliver decodes an executor-network message and hands it to its
// receiver. The message is decoded from a copy: the receiver keeps it after
// the request's buffer is reused.
func (h *Handler) deliver(ctx context.Context, req *wire.Request) error {
	to := string(req.Key)
	enc := bytes.Clone(req.Value)
	switch req.Op {
	case wire.OpExTrigger, wire.OpExMessage:
		e := h.exec.Load()
		if e == nil || e.Addr() != to {
			return wire.Errorf(wire.CodeUnavailable, "no executor %s here", to)
		}
		if req.Op == wire.OpExTrigger {
			t, err := executor.DecodeTrigger(enc)
			if err != nil {
				return err
			}
			return e.Deliver(ctx, t)
		}
		m, err := executor.DecodeMessage(enc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(ctx, messageWait)
		defer cancel()
		return e.Message(ctx, m)
	default: // OpExResult, OpExReport
		c := h.coord.Load()
		if c == nil || c.Addr() != to {
			return wire.Errorf(wire.CodeUnavailable, "no coordinator %s here", to)
		}
		if req.Op == wire.OpExResult {
			r, err := executor.DecodeResult(enc)
			if err != nil {
				return err
			}
			c.Complete(r)
			return nil
		}
		r, err := executor.DecodeReport(enc)
		if err != nil {
			return err
		}
		c.Report(r)
		return nil
	}
}

func (h *Handler) role() string {
	c, e := h.coord.Load() != nil, h.exec.Load() != nil
	switch {
	case c && e:
		return "coordinator+executor"
	case c:
		return "coordinator"
	case e:
		return "executor"
	}
	return "starting"
}

func (h *Handler) hello(req *wire.Request, out []byte) []byte {
	if req.Int != client.ProtocolVersion {
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest,
			"protocol version %d is not supported; this server speaks %d", req.Int, client.ProtocolVersion))
	}
	maxFrame := h.MaxFrame
	if maxFrame <= 0 {
		maxFrame = wire.DefaultMaxFrame
	}
	out, start := wire.BeginResult(out, req.ID)
	out = pack.AppendMapHeader(out, 5)
	out = pack.AppendUint(pack.AppendString(out, "proto"), client.ProtocolVersion)
	out = pack.AppendString(pack.AppendString(out, "server"), "trellis")
	out = pack.AppendString(pack.AppendString(out, "version"), h.Version)
	out = pack.AppendString(pack.AppendString(out, "role"), h.role())
	out = pack.AppendUint(pack.AppendString(out, "max_frame"), uint64(maxFrame))
	return wire.EndFrame(out, start)
}
