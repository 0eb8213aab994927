package kvs

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// ProtocolVersion is the native protocol version this server speaks.
const ProtocolVersion = 1

// nativeHandler serves the native protocol (package wire) on one engine.
type nativeHandler struct {
	gnet.BuiltinEventEngine
	peerEvents
	srv *Server
	eng *engine
}

// nativeConn is a native connection's state, owned by its event loop (only
// the loop's goroutine reads or writes it).
type nativeConn struct {
	need   int           // bytes needed before the next frame is complete (0: unknown)
	system bool          // a HELLO presented the system token (ServerConfig.SystemToken)
	sub    *Subscription // the connection's watches, from its first WATCH; closed with it
	peers  *loopPeers    // the loop's connections to peers (cluster members only)

	replyQueue
}

// nativeBatch holds the requests of one read, decoded before any runs so
// their keys can be prefetched together. Batches are pooled per server (not
// kept per connection) because they are large and only live for one read.
type nativeBatch struct {
	reqs [maxBatch]wire.Request
	errs [maxBatch]error // decode error of reqs[i], answered in its turn
	used int             // reqs[:used] may hold references to clear
	keys [][]byte
}

func (h *nativeHandler) setEngine(e *engine) { h.eng = e }

func (h *nativeHandler) OnBoot(eng gnet.Engine) gnet.Action { return h.eng.onBoot(eng) }

func (h *nativeHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if out, action, ok := h.onOpen(c); ok {
		return out, action // a connection this node opened to a peer
	}
	if !h.srv.acceptConn() {
		out := wire.AppendError(nil, 0, wire.Errorf(wire.CodeUnavailable, "max number of clients reached"))
		return out, gnet.Close
	}
	st := &nativeConn{}
	if h.srv.cfg.Cluster != nil {
		st.peers = h.srv.peers.of(c.EventLoop())
	}
	c.SetContext(st)
	return nil, gnet.None
}

func (h *nativeHandler) OnClose(c gnet.Conn, err error) gnet.Action {
	if h.onClose(c, err) {
		return gnet.None
	}
	if st, ok := c.Context().(*nativeConn); ok {
		st.close()
		if st.sub != nil {
			st.sub.Close()
		}
		h.srv.releaseConn()
	}
	return gnet.None
}

func (h *nativeHandler) OnTick() (time.Duration, gnet.Action) { return h.onTick() }

func (h *nativeHandler) OnTraffic(c gnet.Conn) gnet.Action {
	if action, ok := h.onTraffic(c); ok {
		return action
	}
	st := c.Context().(*nativeConn)
	if st.need > c.InboundBuffered() {
		return gnet.None // a large frame is still arriving
	}
	buf, _ := c.Peek(-1)
	lim := wire.Limits{MaxFrame: h.srv.cfg.MaxFrame}
	outp := h.srv.getOut()
	out := *outp
	b := h.srv.getBatch()
	off, action, n := 0, gnet.None, 0
	st.need = 0
	for off < len(buf) && action == gnet.None {
		// Decode a batch of complete frames, prefetch their keys, run them
		// in order. A bad frame length ends the stream after the batch.
		count := 0
		var ferr error
		b.keys = b.keys[:0]
		for off < len(buf) && count < maxBatch {
			body, size, err := wire.SplitFrame(buf[off:], lim)
			if errors.Is(err, wire.ErrIncomplete) {
				st.need = size
				break
			}
			if err != nil {
				ferr = err // the stream cannot be resynchronised after a bad length
				break
			}
			off += size
			r := &b.reqs[count]
			b.used = max(b.used, count+1)
			b.errs[count] = r.Decode(body, wire.Limits{})
			if b.errs[count] == nil && r.Key != nil {
				b.keys = append(b.keys, r.Key)
			}
			count++
		}
		h.srv.store.Prefetch(b.keys)
		for i := range count {
			var pending *reply
			out, pending = h.handle(c, st, &b.reqs[i], b.errs[i], out)
			if pending != nil {
				// What out holds so far goes before the pending reply.
				out = st.put(c, out)
				st.add(pending)
			}
		}
		n += count
		if ferr != nil {
			out = wire.AppendError(out, 0, ferr)
			action = gnet.Close
			off = len(buf)
		}
		if count < maxBatch {
			break
		}
	}
	h.srv.putBatch(b)
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
	return action
}

// handle executes one decoded request (or answers its decode error). It
// appends the response to out, or returns a pending reply that completes
// later (a write waiting for replication or for its disk sync).
func (h *nativeHandler) handle(c gnet.Conn, st *nativeConn, req *wire.Request, decodeErr error, out []byte) ([]byte, *reply) {
	if decodeErr != nil {
		return wire.AppendError(out, req.ID, decodeErr), nil
	}
	switch {
	case req.Op == wire.OpHello:
		if err := h.srv.authenticate(st, req.Opts.Token); err != nil {
			return wire.AppendError(out, req.ID, err), nil
		}
	case req.Op.IsWatch():
		// Per-connection state, not a data operation: the same on a
		// cluster member.
		return h.serveWatch(st, req, out), nil
	case req.Op.IsFunction():
		return h.serveFunction(c, st, req, out)
	}
	if !st.system {
		if err := h.srv.checkReserved(req); err != nil {
			return wire.AppendError(out, req.ID, err), nil
		}
	}
	if cl := h.srv.cfg.Cluster; cl != nil {
		return h.handleInCluster(c, st, cl, req, out)
	}
	if req.Opts.Ack == wire.AckDurable && req.Op.IsWrite() {
		s := h.srv.store
		if !s.HasDisk() {
			return wire.AppendError(out, req.ID, ErrNoDisk), nil
		}
		data := h.exec(req, nil)
		p := &reply{}
		s.OnDurable(s.WriteSeq(), func() { complete(c, &st.replyQueue, p, data) })
		return out, p
	}
	return h.exec(req, out), nil
}

// serveFunction hands a function or DAG request to the Functions handler,
// on a goroutine of its own: calls block.
func (h *nativeHandler) serveFunction(c gnet.Conn, st *nativeConn, req *wire.Request, out []byte) ([]byte, *reply) {
	fns := h.srv.cfg.Functions
	if fns == nil {
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest,
			"operation %s is not served here: this node runs no coordinator", req.Op)), nil
	}
	return out, h.runAside(c, st, req, func(ctx context.Context, r *wire.Request) []byte { return fns.Serve(ctx, r, nil) })
}

// runAside runs serve on a goroutine of its own, with a copy of req (which
// aliases the read buffer), and returns the reply that its result completes.
func (h *nativeHandler) runAside(c gnet.Conn, st *nativeConn, req *wire.Request, serve func(ctx context.Context, r *wire.Request) []byte) *reply {
	frame := req.AppendFrame(nil)
	p := &reply{}
	h.srv.goAsync(func(ctx context.Context) {
		var r wire.Request
		body, _, _ := wire.SplitFrame(frame, wire.Limits{})
		if err := r.Decode(body, wire.Limits{}); err != nil {
			complete(c, &st.replyQueue, p, wire.AppendError(nil, r.ID, err))
			return
		}
		complete(c, &st.replyQueue, p, serve(ctx, &r))
	})
	return p
}

// errBadToken answers a HELLO whose token is not the system token.
var errBadToken = wire.Errorf(wire.CodeUnauthorized, "the token is not this node's system token")

// authenticate takes a HELLO's token: the system token makes the connection
// a system connection; another token is refused, and leaves the connection
// an ordinary one. No token changes nothing.
func (s *Server) authenticate(st *nativeConn, token []byte) error {
	if len(token) == 0 {
		return nil
	}
	st.system = len(s.systemToken) > 0 && subtle.ConstantTimeCompare(token, s.systemToken) == 1
	if !st.system {
		return errBadToken
	}
	return nil
}

// maxChangedReply bounds the keys of one CHANGED reply, in bytes: the keys
// beyond it stay recorded for the next CHANGED.
const maxChangedReply = 4 << 20

// serveWatch serves WATCH, UNWATCH and CHANGED on the connection's
// subscription, which the first WATCH creates.
func (h *nativeHandler) serveWatch(st *nativeConn, req *wire.Request, out []byte) []byte {
	store := h.srv.store
	switch req.Op {
	case wire.OpWatch:
		for _, k := range req.Keys {
			if err := store.checkKey(k); err != nil {
				return wire.AppendError(out, req.ID, err)
			}
		}
		if st.sub == nil {
			st.sub = store.Subscribe()
		}
		return appendNilOrError(out, req.ID, st.sub.watchSet(req.Keys, h.srv.cfg.MaxWatchKeys))
	case wire.OpUnwatch:
		if st.sub != nil {
			st.sub.unwatchSet(req.Keys)
		}
		return wire.AppendNilResult(out, req.ID)
	}
	var keys []string
	if st.sub != nil {
		keys = st.sub.takeChanged(nil, maxChangedReply)
	}
	out, start := wire.BeginResult(out, req.ID)
	out = pack.AppendArrayHeader(out, len(keys))
	for _, k := range keys {
		out = wire.AppendItemBytes(out, []byte(k))
	}
	return wire.EndFrame(out, start)
}

// checkReserved refuses a client's write of a key in the reserved
// namespace.
func (s *Server) checkReserved(req *wire.Request) error {
	if s.cfg.Reserved == "" || !req.Op.IsWrite() || req.Op.IsPeer() {
		return nil
	}
	if s.reserved(req.Key) {
		return errReserved(req.Key)
	}
	for _, k := range req.Keys {
		if s.reserved(k) {
			return errReserved(k)
		}
	}
	return nil
}

func (s *Server) reserved(key []byte) bool {
	return s.cfg.Reserved != "" && bytes.HasPrefix(key, []byte(s.cfg.Reserved))
}

func errReserved(key []byte) error {
	return wire.Errorf(wire.CodeUnauthorized, "key %.64q is in the reserved namespace of function and DAG definitions; register them through a coordinator", key)
}

// handleInCluster serves a request on a cluster member: reads of keys the
// node replicates run here; reads of other keys answer wrong owner; writes
// and storage-node operations run aside (they wait for replicas and disks)
// through the cluster, and their replies complete later.
func (h *nativeHandler) handleInCluster(c gnet.Conn, st *nativeConn, cl Cluster, req *wire.Request, out []byte) ([]byte, *reply) {
	switch {
	case req.Op == wire.OpGet || req.Op == wire.OpGetMany:
		if req.Opts.Epoch > cl.Epoch() {
			// The client routes by a newer state than this node's: the
			// node may no longer hold the key, or may hold it newly.
			// Serve refreshes the state first.
			return out, h.clusterAside(c, st, cl, req)
		}
		keys := req.Keys
		if req.Op == wire.OpGet {
			keys = [][]byte{req.Key}
		}
		for _, k := range keys {
			if !cl.Responsible(k) {
				return wire.AppendError(out, req.ID, &wire.Error{Code: wire.CodeWrongOwner,
					Msg: fmt.Sprintf("this node does not replicate key %.64q", k), Epoch: cl.Epoch()}), nil
			}
		}
		return h.exec(req, out), nil
	case req.Op.IsWrite() || req.Op.IsPeer():
		if cl.Inline(req) {
			return cl.Serve(h.srv.asyncCtx, "", req, out), nil
		}
		if !req.Op.IsPeer() {
			if out, p, ok := h.serveOnLoop(c, st, cl, req, out); ok {
				return out, p
			}
		}
		return out, h.clusterAside(c, st, cl, req)
	}
	return h.exec(req, out), nil
}

// clusterAside serves req through the cluster on a goroutine of its own
// (it waits for replicas, the routing tier or a disk).
func (h *nativeHandler) clusterAside(c gnet.Conn, st *nativeConn, cl Cluster, req *wire.Request) *reply {
	from := c.RemoteAddr().String()
	return h.runAside(c, st, req, func(ctx context.Context, r *wire.Request) []byte { return cl.Serve(ctx, from, r, nil) })
}

// serveOnLoop serves a client write through Cluster.ServeOnLoop, on this
// loop: its response is appended to out if it completed at once, else it
// is a pending reply completed on the loop (by a peer's answer, or by
// Execute from the cluster's goroutine). ok is false if the cluster left
// the request to Serve.
func (h *nativeHandler) serveOnLoop(c gnet.Conn, st *nativeConn, cl Cluster, req *wire.Request, out []byte) (_ []byte, _ *reply, ok bool) {
	p := &reply{}
	inCall := true // p is not queued yet
	ok = cl.ServeOnLoop(h.srv.asyncCtx, req, st.peers, func(frame []byte) {
		if inCall {
			p.data, p.ready = frame, true
			return
		}
		st.peers.ready(c, &st.replyQueue, p, frame)
	})
	inCall = false
	switch {
	case !ok:
		return out, nil, false
	case p.ready:
		return append(out, p.data...), nil, true
	}
	return out, p, true
}

// exec executes one request, appending its response to out.
func (h *nativeHandler) exec(req *wire.Request, out []byte) []byte {
	switch req.Op {
	case wire.OpPing:
		if req.Value != nil {
			return wire.AppendBytesResult(out, req.ID, req.Value)
		}
		return wire.AppendNilResult(out, req.ID)
	case wire.OpHello:
		return h.appendHello(out, req)
	case wire.OpStats:
		out, start := wire.BeginResult(out, req.ID)
		out = h.srv.appendStats(out)
		return wire.EndFrame(out, start)
	}
	if out, ok := h.srv.store.Exec(req, out); ok {
		return out
	}
	return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest, "operation %s is not served here", req.Op))
}

// Exec executes a native-protocol data operation (get, put, set, delete,
// their batch forms, set and counter updates) on the store and appends its
// response frame to out. ok is false for an operation that is not a data
// operation (nothing is appended then). It is what a storage node does for
// a request, whether it arrived on the node's own port or through a peer.
func (s *Store) Exec(req *wire.Request, out []byte) (_ []byte, ok bool) {
	id := req.ID
	switch req.Op {
	case wire.OpGet:
		return appendGet(out, id, s, req.Key), true
	case wire.OpSet:
		return appendNilOrError(out, id, s.SetLWW(req.Key, req.Value)), true
	case wire.OpPut:
		return appendNilOrError(out, id, s.PutEncoded(req.Key, req.Value)), true
	case wire.OpDelete:
		existed, err := s.Delete(req.Key)
		if err != nil {
			return wire.AppendError(out, id, err), true
		}
		return wire.AppendIntResult(out, id, b2i(existed)), true
	case wire.OpGetMany:
		out, start := wire.BeginResult(out, id)
		out = pack.AppendArrayHeader(out, len(req.Keys))
		for _, k := range req.Keys {
			mark := len(out)
			out = append(out, 0x92, byte(wire.CodeOK))
			var err error
			out, err = appendBin32(out, func(dst []byte) ([]byte, error) { return s.Get(k, dst) })
			if err != nil {
				out = wire.AppendItemError(out[:mark], err)
			}
		}
		return wire.EndFrame(out, start), true
	case wire.OpPutMany:
		out, start := wire.BeginResult(out, id)
		out = pack.AppendArrayHeader(out, len(req.Keys))
		for i, k := range req.Keys {
			if err := s.PutEncoded(k, req.Values[i]); err != nil {
				out = wire.AppendItemError(out, err)
			} else {
				out = wire.AppendItemNil(out)
			}
		}
		return wire.EndFrame(out, start), true
	case wire.OpDeleteMany:
		n := int64(0)
		for _, k := range req.Keys {
			existed, err := s.Delete(k)
			if err != nil {
				return wire.AppendError(out, id, err), true
			}
			n += b2i(existed)
		}
		return wire.AppendIntResult(out, id, n), true
	case wire.OpSetAdd:
		n, err := s.SetAdd(req.Key, req.Members)
		return appendIntOrError(out, id, int64(n), err), true
	case wire.OpSetRemove:
		n, err := s.SetRemove(req.Key, req.Members)
		return appendIntOrError(out, id, int64(n), err), true
	case wire.OpCounterAdd:
		n, err := s.CounterAdd(req.Key, req.Int)
		return appendIntOrError(out, id, n, err), true
	}
	return out, false
}

func (h *nativeHandler) appendHello(out []byte, req *wire.Request) []byte {
	if req.Int != ProtocolVersion {
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest,
			"protocol version %d is not supported; this server speaks %d", req.Int, ProtocolVersion))
	}
	cfg, scfg := h.srv.cfg, h.srv.store.cfg
	out, start := wire.BeginResult(out, req.ID)
	out = pack.AppendMapHeader(out, 7)
	out = pack.AppendUint(pack.AppendString(out, "proto"), ProtocolVersion)
	out = pack.AppendString(pack.AppendString(out, "server"), "trellis")
	out = pack.AppendString(pack.AppendString(out, "version"), cfg.Version)
	out = pack.AppendUint(pack.AppendString(out, "node"), scfg.NodeID)
	out = pack.AppendUint(pack.AppendString(out, "max_frame"), uint64(cfg.MaxFrame))
	out = pack.AppendUint(pack.AppendString(out, "max_key"), uint64(scfg.MaxKey))
	out = pack.AppendUint(pack.AppendString(out, "max_value"), uint64(scfg.MaxValue))
	return wire.EndFrame(out, start)
}

func appendGet(out []byte, id uint64, s *Store, key []byte) []byte {
	out, start := wire.BeginResult(out, id)
	out, err := appendBin32(out, func(dst []byte) ([]byte, error) { return s.Get(key, dst) })
	if err != nil {
		return wire.AppendError(out[:start], id, err)
	}
	return wire.EndFrame(out, start)
}

// appendBin32 appends a bin32 header and whatever fill appends, then patches
// the header's length. (bin32 for any length is valid msgpack; it saves
// encoding the value twice to learn its size.)
func appendBin32(out []byte, fill func([]byte) ([]byte, error)) ([]byte, error) {
	mark := len(out)
	out = append(out, 0xc6, 0, 0, 0, 0)
	out, err := fill(out)
	if err != nil {
		return out[:mark], err
	}
	binary.BigEndian.PutUint32(out[mark+1:], uint32(len(out)-mark-5))
	return out, nil
}

func appendNilOrError(out []byte, id uint64, err error) []byte {
	if err != nil {
		return wire.AppendError(out, id, err)
	}
	return wire.AppendNilResult(out, id)
}

func appendIntOrError(out []byte, id uint64, n int64, err error) []byte {
	if err != nil {
		return wire.AppendError(out, id, err)
	}
	return wire.AppendIntResult(out, id, n)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
