package cluster

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"

	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// Serve handles one request, from a client or a peer, and appends its
// response frame to out. Client operations on keys this node does not
// replicate are answered CodeWrongOwner with the node's epoch. Writes are
// replicated before they are answered, as their Ack asks. It may block (on
// replication and on disk syncs): a caller on an event loop runs it aside.
func (n *Node) Serve(ctx context.Context, from string, req *wire.Request, out []byte) []byte {
	if req.Op.IsPeer() {
		return n.servePeer(ctx, req, out)
	}
	return n.serveClient(ctx, req, out)
}

// Inline reports whether Serve completes req without waiting for peers,
// the routing tier or a disk sync (kvs.Cluster): a replica's merge or a
// gossip batch, a client write acknowledged locally by a node that routes
// by the request's epoch.
func (n *Node) Inline(req *wire.Request) bool {
	switch req.Op {
	case wire.OpReplicate:
		return req.Opts.Ack != wire.AckDurable && req.Opts.Epoch <= n.Epoch()
	case wire.OpGossip:
		return req.Opts.Epoch <= n.Epoch()
	}
	return req.Op.IsWrite() && req.Opts.Epoch <= n.Epoch() && n.LocalAck(req.Opts.Ack)
}

// LocalAck reports whether a write asking for ack (AckDefault: the node's
// default) is acknowledged by this node alone.
func (n *Node) LocalAck(ack wire.Ack) bool {
	if ack == wire.AckDefault {
		ack = n.cfg.DefaultAck
	}
	return ack == wire.AckLocal
}

// keysOf returns the keys a client request names.
func keysOf(req *wire.Request) [][]byte {
	if req.Key != nil {
		return [][]byte{req.Key}
	}
	return req.Keys
}

func (n *Node) serveClient(ctx context.Context, req *wire.Request, out []byte) []byte {
	if req.Opts.Epoch > n.Epoch() {
		n.refresh(ctx) // the client knows a newer routing state than we do
	}
	keys := keysOf(req)
	for _, k := range keys {
		if !n.Responsible(k) {
			return wire.AppendError(out, req.ID, &wire.Error{Code: wire.CodeWrongOwner,
				Msg: fmt.Sprintf("node %d does not replicate key %.64q", n.cfg.ID, k), Epoch: n.Epoch()})
		}
	}
	ack := req.Opts.Ack
	if ack == wire.AckDefault {
		ack = n.cfg.DefaultAck
	}
	if req.Op.IsWrite() && ack == wire.AckDurable && !n.store.HasDisk() {
		return wire.AppendError(out, req.ID, kvs.ErrNoDisk)
	}
	mark := len(out)
	out, ok := n.store.Exec(req, out)
	if !ok {
		return wire.AppendError(out, req.ID, wire.Errorf(wire.CodeBadRequest, "operation %s is not served here", req.Op))
	}
	if !req.Op.IsWrite() || !succeeded(out[mark:]) {
		return out
	}
	for _, k := range keys {
		if err := n.Replicate(ctx, k, ack); err != nil {
			return wire.AppendError(out[:mark], req.ID, err)
		}
	}
	return out
}

// succeeded reports whether the response frame at the start of frame is a
// success.
func succeeded(frame []byte) bool {
	body, _, err := wire.SplitFrame(frame, wire.Limits{})
	if err != nil {
		return false
	}
	var r wire.Response
	return r.Decode(body, wire.Limits{}) == nil && r.Code == wire.CodeOK
}

func (n *Node) servePeer(ctx context.Context, req *wire.Request, out []byte) []byte {
	id := req.ID
	if req.Opts.Epoch > n.Epoch() && req.Op != wire.OpHandoff { // (a hand-off refreshes first, itself)
		n.refreshSoon()
	}
	switch req.Op {
	case wire.OpReplicate:
		changed, err := n.store.MergeCell(req.Key, req.Value)
		if err != nil {
			return wire.AppendError(out, id, err)
		}
		// Merging is always safe; but a coordinator routing by an older
		// epoch must not count this copy toward its quorum: it may be
		// missing replicas the current state names.
		if e := n.Epoch(); req.Opts.Epoch != 0 && req.Opts.Epoch < e {
			return wire.AppendError(out, id, &wire.Error{Code: wire.CodeWrongOwner,
				Msg: "routing epoch out of date", Epoch: e})
		}
		if req.Opts.Ack == wire.AckDurable {
			if err := n.waitDurable(ctx); err != nil {
				return wire.AppendError(out, id, err)
			}
		}
		return wire.AppendIntResult(out, id, int64(btoi(changed)))
	case wire.OpGossip:
		for i, k := range req.Keys {
			if _, err := n.store.MergeCell(k, req.Values[i]); err != nil {
				return wire.AppendError(out, id, err)
			}
		}
		return wire.AppendNilResult(out, id)
	case wire.OpHandoff:
		return n.serveHandoff(ctx, req, out)
	case wire.OpDigest:
		bits, ok := n.bitsArg(req)
		if !ok {
			return wire.AppendError(out, id, wire.Errorf(wire.CodeBadRequest, "bad digest arguments"))
		}
		d := n.digests(req.Uints[0], bits)
		out, start := wire.BeginResult(out, id)
		out = pack.AppendBinHeader(out, 8*len(d))
		for _, x := range d {
			out = binary.BigEndian.AppendUint64(out, x)
		}
		return wire.EndFrame(out, start)
	case wire.OpBucket:
		bits, ok := n.bitsArg(req)
		if !ok || len(req.Uints) < 3 || len(req.Uints) > 2+wire.MaxBuckets {
			return wire.AppendError(out, id, wire.Errorf(wire.CodeBadRequest, "bad bucket arguments"))
		}
		want := make(map[uint64]bool, len(req.Uints)-2)
		for _, b := range req.Uints[2:] {
			if b >= 1<<bits {
				return wire.AppendError(out, id, wire.Errorf(wire.CodeBadRequest, "bucket %d out of range", b))
			}
			want[b] = true
		}
		keys := n.bucketKeys(req.Uints[0], bits, want)
		out, start := wire.BeginResult(out, id)
		out = pack.AppendArrayHeader(out, len(keys))
		for k, h := range keys {
			out = pack.AppendArrayHeader(out, 2)
			out = pack.AppendUint(pack.AppendBytes(out, []byte(k)), h)
		}
		return wire.EndFrame(out, start)
	case wire.OpFetch:
		out, start := wire.BeginResult(out, id)
		out = pack.AppendArrayHeader(out, len(req.Keys))
		var cell []byte
		for i, k := range req.Keys {
			var ok bool
			if i > 0 && len(out)-start > maxFetchReply {
				// The sender bounds its keys, not their values: past the
				// bound, it asks again for the rest.
				out = wire.AppendItemError(out, errFetchLater)
			} else if cell, ok = n.store.Cell(k, cell[:0]); ok {
				out = wire.AppendItemBytes(out, cell)
			} else {
				out = wire.AppendItemError(out, wire.ErrNotFound)
			}
		}
		return wire.EndFrame(out, start)
	}
	return wire.AppendError(out, id, wire.Errorf(wire.CodeBadRequest, "operation %s is not served here", req.Op))
}

// maxFetchReply bounds a FETCH reply's cells (the first cell is always
// sent): well under the default frame limit.
var maxFetchReply = 4 << 20

// errFetchLater answers the keys of a FETCH past maxFetchReply.
var errFetchLater = wire.Errorf(wire.CodeUnavailable, "reply size bound reached: ask again")

// bitsArg checks the bucket-bits argument of a digest or bucket request.
func (n *Node) bitsArg(req *wire.Request) (uint, bool) {
	if len(req.Uints) < 2 || req.Uints[1] == 0 || req.Uints[1] > 20 {
		return 0, false
	}
	return uint(req.Uints[1]), true
}

// bucketOf returns the anti-entropy bucket of the key whose hash
// (ring.KeyHash) is h: its top bits bits.
func bucketOf(h uint64, bits uint) uint64 { return h >> (64 - bits) }

// cellHash identifies a key's state: xxhash64 of the key, a zero byte and
// the cell encoding (encodings are canonical, so equal cells hash equal).
func cellHash(d *xxhash.Digest, key, cell []byte) uint64 {
	d.Reset()
	_, _ = d.Write(key)
	_, _ = d.Write([]byte{0})
	_, _ = d.Write(cell)
	return d.Sum64()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
