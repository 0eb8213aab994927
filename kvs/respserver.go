package kvs

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/trellisdb/trellis/resp"
	"github.com/trellisdb/trellis/wire"
)

// respHandler serves the Redis protocol on one engine.
type respHandler struct {
	gnet.BuiltinEventEngine
	peerEvents
	srv  *Server
	eng  *engine
	cmds commandTable
}

// respConn is a RESP connection's state, owned by its event loop.
type respConn struct {
	replyQueue
	peers  *loopPeers // the loop's connections to peers (cluster members only)
	parser resp.Parser
	args   [][]byte // arguments of the batch being run, all commands end to end
	ends   []int    // ends[i]: end in args of the batch's command i
	keys   [][]byte // the batch's first key arguments, for Store.Prefetch
	name   []byte
	id     uint64
}

// maxPooledArgs bounds the argument slice a connection keeps between reads.
const maxPooledArgs = 1024

// maxBatch is how many commands are parsed, prefetched and then run
// together.
const maxBatch = 64

func (h *respHandler) setEngine(e *engine) { h.eng = e }

func (h *respHandler) OnBoot(eng gnet.Engine) gnet.Action { return h.eng.onBoot(eng) }

func (h *respHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if out, action, ok := h.onOpen(c); ok {
		return out, action // a connection this node opened to a peer
	}
	if !h.srv.acceptConn() {
		return []byte("-ERR max number of clients reached\r\n"), gnet.Close
	}
	st := &respConn{id: h.srv.totalConn.Load(), parser: resp.Parser{Limits: h.limits()}}
	if h.srv.cfg.Cluster != nil {
		st.peers = h.srv.peers.of(c.EventLoop())
	}
	c.SetContext(st)
	return nil, gnet.None
}

func (h *respHandler) OnClose(c gnet.Conn, err error) gnet.Action {
	if h.onClose(c, err) {
		return gnet.None
	}
	if st, ok := c.Context().(*respConn); ok {
		st.close()
		h.srv.releaseConn()
	}
	return gnet.None
}

func (h *respHandler) limits() resp.Limits {
	return resp.Limits{MaxBulk: h.srv.store.cfg.MaxValue}
}

func (h *respHandler) OnTick() (time.Duration, gnet.Action) { return h.onTick() }

func (h *respHandler) OnTraffic(c gnet.Conn) gnet.Action {
	if action, ok := h.onTraffic(c); ok {
		return action
	}
	st := c.Context().(*respConn)
	if st.parser.Need() > c.InboundBuffered() {
		return gnet.None // a large command is still arriving
	}
	buf, _ := c.Peek(-1)
	outp := h.srv.getOut()
	out := *outp
	off, action, n := 0, gnet.None, 0
	for off < len(buf) && action == gnet.None {
		// Parse a batch of complete commands, prefetch their keys, run them
		// in order. A protocol error ends the batch: the commands before it
		// run and are answered, then the error, then the connection closes.
		st.args, st.ends, st.keys = st.args[:0], st.ends[:0], st.keys[:0]
		var perr error
		for off < len(buf) && len(st.ends) < maxBatch {
			start := len(st.args)
			args, size, err := st.parser.ParseCommand(buf[off:], st.args)
			if err != nil {
				if !errors.Is(err, resp.ErrIncomplete) {
					perr = err
				}
				break // incomplete: Need() counts from this command's first byte, which stays buffered
			}
			off += size
			st.args = args
			st.ends = append(st.ends, len(args))
			if len(args)-start >= 2 {
				st.keys = append(st.keys, args[start+1])
			}
		}
		h.srv.store.Prefetch(st.keys)
		start := 0
		for _, end := range st.ends {
			cmd := st.args[start:end]
			start = end
			if len(cmd) == 0 {
				continue
			}
			n++
			var quit bool
			var pending *reply
			out, pending, quit = h.exec(c, st, cmd, out)
			if pending != nil {
				out = st.put(c, out) // what came before goes first
				st.add(pending)
			}
			if quit {
				action = gnet.Close
				off = len(buf)
				break
			}
		}
		if perr != nil && action == gnet.None {
			out = resp.AppendError(out, "ERR "+perr.Error())
			action = gnet.Close
			off = len(buf)
		}
		if perr == nil && len(st.ends) < maxBatch {
			break // the rest of buf, if any, is an incomplete command
		}
	}
	h.srv.commands.Add(uint64(n))
	if off > 0 {
		_, _ = c.Discard(off) // gnet's Discard(0) would drop everything buffered
	}
	if st.peers != nil {
		st.peers.flush() // the writes' calls to peers, one write per peer
	}
	out = st.put(c, out)
	*outp = out
	h.srv.putOut(outp)
	if cap(st.args) > maxPooledArgs {
		st.args, st.keys = nil, nil
	}
	clear(st.args[:cap(st.args)]) // drop references into the read buffer
	clear(st.keys[:cap(st.keys)])
	return action
}

// exec runs one command and appends its reply, or returns a pending reply
// that completes later (on a cluster member: a write waiting for its
// replicas, a command forwarded to another node). quit asks to close the
// connection after the reply.
func (h *respHandler) exec(c gnet.Conn, st *respConn, args [][]byte, out []byte) ([]byte, *reply, bool) {
	var name [maxCommandName]byte
	if len(args[0]) > len(name) {
		return appendUnknown(out, args), nil, false
	}
	for i, ch := range args[0] {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		name[i] = ch
	}
	cmd, ok := h.cmds[string(name[:len(args[0])])]
	if !ok {
		return appendUnknown(out, args), nil, false
	}
	if (cmd.arity > 0 && len(args) != cmd.arity) || (cmd.arity < 0 && len(args) < -cmd.arity) {
		return resp.AppendError(out, "ERR wrong number of arguments for '"+cmd.name+"' command"), nil, false
	}
	if cmd.name == "quit" {
		return resp.AppendSimple(out, "OK"), nil, true
	}
	if cmd.write && h.srv.cfg.Reserved != "" && cmd.first > 0 {
		for _, k := range cmd.keys(args) {
			if h.srv.reserved(k) {
				return resp.AppendError(out, "NOPERM "+errReserved(k).Error()), nil, false
			}
		}
	}
	if cl := h.srv.cfg.Cluster; cl != nil && cmd.first > 0 {
		// The fast path, on the event loop: a read of keys this node
		// replicates, or a write of one acknowledged locally (Replicate
		// only queues the key for gossip).
		keys := cmd.keys(args)
		if allResponsible(cl, keys) && (!cmd.write || len(keys) == 1 && cl.LocalAck(wire.AckDefault)) {
			return h.runHere(h.srv.asyncCtx, st, cl, cmd, args, keys, out), nil, false
		}
		// A write of one key it replicates: the command runs here, and
		// the replication from this loop (Cluster.ReplicateOnLoop).
		if cmd.write && len(keys) == 1 && allResponsible(cl, keys) {
			out, p := h.writeOnLoop(c, st, cl, cmd, args, keys[0], out)
			return out, p, false
		}
		args := cloneArgs(args) // they alias the read buffer
		p := &reply{}
		h.srv.goAsync(func(ctx context.Context) {
			complete(c, &st.replyQueue, p, h.runInCluster(ctx, st, cl, cmd, args))
		})
		return out, p, false
	}
	return cmd.fn(h, st, args, out), nil, false
}

// writeOnLoop runs a write command on key, which this node replicates, and
// replicates it as the cluster's default acknowledgement asks: from this
// loop (Cluster.ReplicateOnLoop), else on a goroutine (Replicate). The
// reply is appended to out if it is known at once, else it is a pending
// reply that the replication completes.
func (h *respHandler) writeOnLoop(c gnet.Conn, st *respConn, cl Cluster, cmd *respCmd, args [][]byte, key []byte, out []byte) ([]byte, *reply) {
	mark := len(out)
	out = cmd.fn(h, st, args, out)
	if len(out) == mark || out[mark] == '-' {
		return out, nil // failed (or no reply): nothing to replicate
	}
	data := bytes.Clone(out[mark:])
	out = out[:mark]
	result := func(err error) []byte {
		if err != nil {
			return resp.AppendError(nil, "ERR "+err.Error())
		}
		return data
	}
	p := &reply{}
	inCall := true // p is not queued yet
	if cl.ReplicateOnLoop(h.srv.asyncCtx, key, wire.AckDefault, st.peers, func(err error) {
		if inCall {
			p.data, p.ready = result(err), true
			return
		}
		st.peers.ready(c, &st.replyQueue, p, result(err))
	}) {
		inCall = false
		if p.ready {
			return append(out, p.data...), nil
		}
		return out, p
	}
	key = bytes.Clone(key) // it aliases the read buffer
	h.srv.goAsync(func(ctx context.Context) {
		complete(c, &st.replyQueue, p, result(cl.Replicate(ctx, key, wire.AckDefault)))
	})
	return out, p
}

// appendUnknown appends Redis's reply to an unknown command.
func appendUnknown(out []byte, args [][]byte) []byte {
	msg := make([]byte, 0, 128)
	msg = append(msg, "ERR unknown command '"...)
	msg = appendTruncated(msg, args[0])
	msg = append(msg, "', with args beginning with: "...)
	for _, a := range args[1:] {
		if len(msg) > 1024 {
			break
		}
		msg = append(msg, '\'')
		msg = appendTruncated(msg, a)
		msg = append(msg, "' "...)
	}
	return resp.AppendError(out, string(msg))
}

// appendTruncated appends at most 128 bytes of a, with newlines replaced so
// the error stays one line.
func appendTruncated(dst, a []byte) []byte {
	if len(a) > 128 {
		a = a[:128]
	}
	for _, ch := range a {
		if ch == '\r' || ch == '\n' {
			ch = ' '
		}
		dst = append(dst, ch)
	}
	return dst
}

// appendBulkFrom appends a bulk string whose bytes fill appends, without
// knowing their length in advance: it reserves the widest header, then
// shifts the bytes left to sit right after the real header.
func appendBulkFrom(out []byte, fill func([]byte) ([]byte, error)) ([]byte, error) {
	const reserve = 1 + 20 + 2 // "$" + int64 digits + CRLF
	mark := len(out)
	out = append(out, "$00000000000000000000\r\n"...)
	out, err := fill(out)
	if err != nil {
		return out[:mark], err
	}
	n := len(out) - mark - reserve
	var hdr [reserve]byte
	h := strconv.AppendInt(append(hdr[:0], '$'), int64(n), 10)
	h = append(h, '\r', '\n')
	copy(out[mark+len(h):], out[mark+reserve:])
	copy(out[mark:], h)
	out = out[:mark+len(h)+n]
	return append(out, '\r', '\n'), nil
}
