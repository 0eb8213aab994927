package cluster

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/ring"
	"github.com/trellisdb/trellis/route"
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

// digests returns, for each of 2^bits buckets, the xor of the cell hashes of
// the keys in it that this node and peer both replicate. The slice is
// shared: callers must not change it.
func (n *Node) digests(peer uint64, bits uint) []uint64 {
	if d := n.allDigests(bits)[peer]; d != nil {
		return d
	}
	return make([]uint64, 1<<bits) // no key in common
}

// digestCache holds the digests of one pass over the store, for every
// peer at once (a round of anti-entropy and the digest requests of every
// peer need one pass, not one each).
type digestCache struct {
	mu      sync.Mutex
	view    *view
	bits    uint
	changes uint64 // the store's Changes when the pass started
	at      time.Time
	d       map[uint64][]uint64
}

// invalidate makes the next allDigests make a new pass: this node took
// cells from a peer, and digests that do not show them would make the next
// peer's exchange take them all again.
func (c *digestCache) invalidate() {
	c.mu.Lock()
	c.d = nil
	c.mu.Unlock()
}

// allDigests returns the digests of every peer with which this node shares
// keys: from the last pass if the routing state is the same and the store
// has not changed since (or the pass is younger than Config.DigestReuse),
// else from a new pass.
func (n *Node) allDigests(bits uint) map[uint64][]uint64 {
	c := &n.digestCache
	c.mu.Lock()
	defer c.mu.Unlock()
	v := n.view.Load()
	changes := n.store.Changes()
	if c.d != nil && c.view == v && c.bits == bits &&
		(c.changes == changes || time.Since(c.at) < n.cfg.DigestReuse) {
		return c.d
	}
	at := time.Now()
	d := map[uint64][]uint64{}
	self := n.cfg.ID
	h := xxhash.New()
	var buf [16]route.Member
	n.store.Each(func(key, cell []byte) bool {
		kh := ring.KeyHash(key)
		rs := v.allReplicasOfHash(key, kh, buf[:0])
		if len(rs) < 2 || !containsMember(rs, self) {
			return true
		}
		ch := cellHash(h, key, cell)
		b := bucketOf(kh, bits)
		for _, m := range rs {
			if m.ID == self {
				continue
			}
			pd := d[m.ID]
			if pd == nil {
				pd = make([]uint64, 1<<bits)
				d[m.ID] = pd
			}
			pd[b] ^= ch
		}
		return true
	})
	c.view, c.bits, c.changes, c.at, c.d = v, bits, changes, at, d
	return d
}

// bucketKeys returns the keys this node shares with peer in the given
// buckets, with their cell hashes. An exchange that differs in many
// buckets asks in several calls (at most maxBucketsPerCall each): those
// share one pass over the store (a bucket index, reused as digests are)
// instead of making one pass each.
func (n *Node) bucketKeys(peer uint64, bits uint, buckets map[uint64]bool) map[string]uint64 {
	out := map[string]uint64{}
	if len(buckets) < bucketIndexMin {
		n.eachShared(peer, bits, func(b uint64, key string, h uint64) {
			if buckets[b] {
				out[key] = h
			}
		})
		return out
	}
	idx := n.bucketIndexFor(peer, bits)
	for b := range buckets {
		for _, e := range idx[b] {
			out[e.key] = e.hash
		}
	}
	return out
}

// eachShared calls fn for every key this node shares with peer: its bucket,
// the key and its cell hash.
func (n *Node) eachShared(peer uint64, bits uint, fn func(bucket uint64, key string, hash uint64)) {
	v := n.view.Load()
	h := xxhash.New()
	var buf [16]route.Member
	n.store.Each(func(key, cell []byte) bool {
		kh := ring.KeyHash(key)
		if rs := v.allReplicasOfHash(key, kh, buf[:0]); containsMember(rs, n.cfg.ID) && containsMember(rs, peer) {
			fn(bucketOf(kh, bits), string(key), cellHash(h, key, cell))
		}
		return true
	})
}

// The bucket index: a request for at least bucketIndexMin buckets builds
// (or reuses, at the same view, for as long as the digests are reused:
// Config.DigestReuse, at least bucketIndexReuse) an index of every key
// shared with the requesting peer, by bucket. Like the reused digests, it
// may miss writes made since it was built: those reach the peer by
// replication and gossip, and the next exchange compares again.
const (
	bucketIndexMin   = 16
	bucketIndexReuse = 2 * time.Second
)

type keyHash struct {
	key  string
	hash uint64
}

type bucketIndex struct {
	mu   sync.Mutex
	view *view
	peer uint64
	bits uint
	at   time.Time
	idx  map[uint64][]keyHash
}

// invalidate makes the next bucketIndexFor build a new index.
func (c *bucketIndex) invalidate() {
	c.mu.Lock()
	c.idx = nil
	c.mu.Unlock()
}

// bucketIndexFor returns the index of the keys shared with peer.
func (n *Node) bucketIndexFor(peer uint64, bits uint) map[uint64][]keyHash {
	c := &n.bucketIndex
	c.mu.Lock()
	defer c.mu.Unlock()
	v := n.view.Load()
	if c.idx != nil && c.view == v && c.peer == peer && c.bits == bits && time.Since(c.at) < max(bucketIndexReuse, n.cfg.DigestReuse) {
		return c.idx
	}
	at := time.Now()
	idx := make(map[uint64][]keyHash)
	n.eachShared(peer, bits, func(b uint64, key string, h uint64) {
		idx[b] = append(idx[b], keyHash{key, h})
	})
	c.view, c.peer, c.bits, c.at, c.idx = v, peer, bits, at, idx
	return idx
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
