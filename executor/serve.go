package executor

import (
	"context"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// Serve answers a function or DAG request of the native protocol
// (wire.Op.IsFunction) and appends its response frame to out. It blocks for
// the length of a call; req's slices are copied where they outlive it.
func (c *Coordinator) Serve(ctx context.Context, req *wire.Request, out []byte) []byte {
	id := req.ID
	switch req.Op {
	case wire.OpFnRegister:
		return appendNil(out, id, c.RegisterFunction(ctx, string(req.Key), req.Value))
	case wire.OpFnList:
		names, err := c.Functions(ctx)
		return appendNames(out, id, names, err)
	case wire.OpDagList:
		names, err := c.DAGs(ctx)
		return appendNames(out, id, names, err)
	case wire.OpDagRegister:
		d, err := DecodeDAG(req.Value)
		if err == nil && d.Name != string(req.Key) {
			err = wire.Errorf(wire.CodeBadRequest, "the DAG is named %q, the request %q", d.Name, req.Key)
		}
		if err == nil {
			err = c.RegisterDAG(ctx, d)
		}
		return appendNil(out, id, err)
	case wire.OpDagDelete:
		existed, err := c.DeleteDAG(ctx, string(req.Key))
		if err != nil {
			return wire.AppendError(out, id, err)
		}
		return wire.AppendIntResult(out, id, int64(btoi(existed)))
	case wire.OpDagCall:
		call, err := DecodeCall(req.Value)
		if err != nil {
			return wire.AppendError(out, id, err)
		}
		res, err := c.CallDAG(ctx, string(req.Key), call)
		return appendResult(out, id, res, err)
	case wire.OpFnCall:
		if len(req.Members) > MaxArgs {
			return wire.AppendError(out, id, wire.Errorf(wire.CodeBadRequest, "%d arguments, at most %d", len(req.Members), MaxArgs))
		}
		args := make([]Arg, len(req.Members))
		for i, m := range req.Members {
			a, err := DecodeArg(m)
			if err != nil {
				return wire.AppendError(out, id, err)
			}
			args[i] = a
		}
		res, err := c.Call(ctx, string(req.Key), args)
		return appendResult(out, id, res, err)
	}
	return wire.AppendError(out, id, wire.Errorf(wire.CodeBadRequest, "operation %s is not served by a coordinator", req.Op))
}

func appendNil(out []byte, id uint64, err error) []byte {
	if err != nil {
		return wire.AppendError(out, id, err)
	}
	return wire.AppendNilResult(out, id)
}

func appendResult(out []byte, id uint64, res []byte, err error) []byte {
	switch {
	case err != nil:
		return wire.AppendError(out, id, err)
	case res == nil:
		return wire.AppendNilResult(out, id)
	}
	return wire.AppendBytesResult(out, id, res)
}

func appendNames(out []byte, id uint64, names []string, err error) []byte {
	if err != nil {
		return wire.AppendError(out, id, err)
	}
	out, start := wire.BeginResult(out, id)
	out = pack.AppendArrayHeader(out, len(names))
	for _, n := range names {
		out = wire.AppendItemBytes(out, []byte(n))
	}
	return wire.EndFrame(out, start)
}
