package kvs

import (
	"bytes"
	"context"
	"strconv"

	"github.com/trellisdb/trellis/resp"
	"github.com/trellisdb/trellis/wire"
)

// keys returns the key arguments of a command, by its first/last/step.
func (c *respCmd) keys(args [][]byte) [][]byte {
	if c.first <= 0 || c.first >= len(args) {
		return nil
	}
	last := c.last
	if last < 0 {
		last = len(args) + last
	}
	last = min(last, len(args)-1)
	var keys [][]byte
	for i := c.first; i <= last; i += max(c.step, 1) {
		keys = append(keys, args[i])
	}
	return keys
}

func allResponsible(cl Cluster, keys [][]byte) bool {
	for _, k := range keys {
		if !cl.Responsible(k) {
			return false
		}
	}
	return true
}

func cloneArgs(args [][]byte) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = bytes.Clone(a)
	}
	return out
}

// runInCluster runs a key command on a cluster member and returns its
// reply: commands over several keys are split per key; a key this node
// replicates runs here (with Redis's semantics) and a write is then
// replicated as the cluster's default acknowledgement asks; a key it does
// not replicate is forwarded to a node that does.
func (h *respHandler) runInCluster(ctx context.Context, st *respConn, cl Cluster, cmd *respCmd, args [][]byte) []byte {
	keys := cmd.keys(args)
	if len(keys) > 1 {
		return h.runSplit(ctx, st, cl, cmd, args)
	}
	if allResponsible(cl, keys) {
		return h.runHere(ctx, st, cl, cmd, args, keys, nil)
	}
	out, err := cl.ForwardRESP(ctx, keys[0], resp.AppendCommand(nil, args...), cmd.once)
	if err != nil {
		return resp.AppendError(nil, "ERR forwarding to the key's replicas: "+err.Error())
	}
	return out
}

// runHere runs a command on keys this node replicates, with Redis's
// semantics, appending its reply to out; a write that succeeded is then
// replicated as the cluster's default acknowledgement asks.
func (h *respHandler) runHere(ctx context.Context, st *respConn, cl Cluster, cmd *respCmd, args, keys [][]byte, out []byte) []byte {
	mark := len(out)
	out = cmd.fn(h, st, args, out)
	if !cmd.write || len(out) == mark || out[mark] == '-' {
		return out
	}
	for _, k := range keys {
		if err := cl.Replicate(ctx, k, wire.AckDefault); err != nil {
			return resp.AppendError(out[:mark], "ERR "+err.Error())
		}
	}
	return out
}

// runSplit runs a multi-key command key by key (each part locally or
// forwarded) and combines the replies as the command would: a count for
// DEL, UNLINK and EXISTS, an array for MGET, OK for MSET. Like Redis Cluster
// across slots, this gives no atomicity across keys.
func (h *respHandler) runSplit(ctx context.Context, st *respConn, cl Cluster, cmd *respCmd, args [][]byte) []byte {
	one := func(sub ...[]byte) (resp.Reply, []byte) {
		c := h.cmds[string(bytes.ToLower(sub[0]))]
		raw := h.runInCluster(ctx, st, cl, c, sub)
		r, _, err := resp.ParseReply(raw, resp.Limits{})
		if err != nil {
			return resp.Reply{Kind: resp.KindError, Str: []byte("ERR bad reply from a replica")}, raw
		}
		return r, raw
	}
	switch cmd.name {
	case "del", "unlink", "exists":
		var n int64
		for _, k := range args[1:] {
			r, raw := one(args[0], k)
			if r.Kind == resp.KindError {
				return raw
			}
			n += r.Int
		}
		return resp.AppendInt(nil, n)
	case "mget":
		out := resp.AppendArrayHeader(nil, len(args)-1)
		for _, k := range args[1:] {
			r, raw := one([]byte("GET"), k)
			if r.Kind == resp.KindError {
				out = resp.AppendNull(out) // as MGET answers other types
			} else {
				out = append(out, raw...)
			}
		}
		return out
	case "mset":
		if len(args)%2 != 1 {
			return resp.AppendError(nil, "ERR wrong number of arguments for 'mset' command")
		}
		for i := 1; i+1 < len(args); i += 2 {
			if r, raw := one([]byte("SET"), args[i], args[i+1]); r.Kind == resp.KindError {
				return raw
			}
		}
		return resp.AppendSimple(nil, "OK")
	}
	return resp.AppendError(nil, "ERR command '"+cmd.name+"' over several keys is not supported in a cluster ("+strconv.Itoa(len(args)-1)+" keys)")
}
