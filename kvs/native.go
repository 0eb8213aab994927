package kvs

import (
	"encoding/binary"
	"errors"

	"github.com/panjf2000/gnet/v2"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// ProtocolVersion is the native protocol version this server speaks.
const ProtocolVersion = 1

// nativeHandler serves the native protocol (package wire) on one engine.
type nativeHandler struct {
	gnet.BuiltinEventEngine
	srv *Server
	eng *engine
}

// nativeConn is a native connection's state, owned by its event loop.
type nativeConn struct {
	req  wire.Request
	need int // bytes needed before the next frame is complete (0: unknown)
}

func (h *nativeHandler) setEngine(e *engine) { h.eng = e }

func (h *nativeHandler) OnBoot(eng gnet.Engine) gnet.Action { return h.eng.onBoot(eng) }

func (h *nativeHandler) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if !h.srv.acceptConn() {
		out := wire.AppendError(nil, 0, wire.Errorf(wire.CodeUnavailable, "max number of clients reached"))
		return out, gnet.Close
	}
	c.SetContext(&nativeConn{})
	return nil, gnet.None
}

func (h *nativeHandler) OnClose(c gnet.Conn, _ error) gnet.Action {
	if c.Context() != nil {
		h.srv.releaseConn()
	}
	return gnet.None
}

func (h *nativeHandler) OnTraffic(c gnet.Conn) gnet.Action {
	st := c.Context().(*nativeConn)
	if st.need > c.InboundBuffered() {
		return gnet.None // a large frame is still arriving
	}
	buf, _ := c.Peek(-1)
	lim := wire.Limits{MaxFrame: h.srv.cfg.MaxFrame}
	outp := h.srv.getOut()
	out := *outp
	off, action := 0, gnet.None
	st.need = 0
	n := 0
	for off < len(buf) {
		body, size, err := wire.SplitFrame(buf[off:], lim)
		if errors.Is(err, wire.ErrIncomplete) {
			st.need = size
			break
		}
		if err != nil {
			// The stream cannot be resynchronised after a bad length.
			out = wire.AppendError(out, 0, err)
			action = gnet.Close
			off = len(buf)
			break
		}
		off += size
		n++
		out = h.handle(&st.req, body, out)
	}
	h.srv.commands.Add(uint64(n))
	if off > 0 {
		_, _ = c.Discard(off) // gnet's Discard(0) would drop everything buffered
	}
	if len(out) > 0 {
		_, _ = c.Write(out)
	}
	*outp = out
	h.srv.putOut(outp)
	if cap(st.req.Keys) > 4096 || cap(st.req.Members) > 4096 {
		st.req = wire.Request{} // don't pin a huge batch's slices
	}
	return action
}

// handle decodes and executes one request, appending its response to out.
func (h *nativeHandler) handle(req *wire.Request, body []byte, out []byte) []byte {
	if err := req.Decode(body, wire.Limits{}); err != nil {
		return wire.AppendError(out, req.ID, err)
	}
	s := h.srv.store
	id := req.ID
	switch req.Op {
	case wire.OpGet:
		return appendGet(out, id, s, req.Key)
	case wire.OpSet:
		return appendNilOrError(out, id, s.SetLWW(req.Key, req.Value))
	case wire.OpPut:
		return appendNilOrError(out, id, s.PutEncoded(req.Key, req.Value))
	case wire.OpDelete:
		existed, err := s.Delete(req.Key)
		if err != nil {
			return wire.AppendError(out, id, err)
		}
		return wire.AppendIntResult(out, id, b2i(existed))
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
		return wire.EndFrame(out, start)
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
		return wire.EndFrame(out, start)
	case wire.OpDeleteMany:
		n := int64(0)
		for _, k := range req.Keys {
			existed, err := s.Delete(k)
			if err != nil {
				return wire.AppendError(out, id, err)
			}
			n += b2i(existed)
		}
		return wire.AppendIntResult(out, id, n)
	case wire.OpSetAdd:
		n, err := s.SetAdd(req.Key, req.Members)
		return appendIntOrError(out, id, int64(n), err)
	case wire.OpSetRemove:
		n, err := s.SetRemove(req.Key, req.Members)
		return appendIntOrError(out, id, int64(n), err)
	case wire.OpCounterAdd:
		n, err := s.CounterAdd(req.Key, req.Int)
		return appendIntOrError(out, id, n, err)
	case wire.OpPing:
		if req.Value != nil {
			return wire.AppendBytesResult(out, id, req.Value)
		}
		return wire.AppendNilResult(out, id)
	case wire.OpHello:
		return h.appendHello(out, req)
	case wire.OpStats:
		out, start := wire.BeginResult(out, id)
		out = h.srv.appendStats(out)
		return wire.EndFrame(out, start)
	}
	return wire.AppendError(out, id, wire.Errorf(wire.CodeBadRequest, "operation %s is not served here", req.Op))
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
