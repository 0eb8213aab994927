package cluster

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/trellisdb/trellis/ring"
	"github.com/trellisdb/trellis/route"
)

// The anti-entropy index: one pass over the store gives, for every key this
// node shares with some peer (both replicate it, on either ring), its
// bucket, its cell hash and the set of peers it is shared with; and from
// those, each peer's digests. Every exchange of a round (this node's DIGEST
// and BUCKET calls, and every peer's) is answered from it, for every peer,
// as long as it is valid: the same routing view and bucket bits, and the
// store unchanged since the pass or the pass younger than
// Config.DigestReuse. Like any reused pass it may miss writes made since:
// those reach the peers by replication and gossip, and a later exchange
// compares again. A fetch that changed this node's copies invalidates it,
// so that the next peer's exchange does not take the same keys again.
//
// It used to be two caches, digests for every peer and a bucket index for
// one peer at a time: the peers' BUCKET calls of a joining round then
// rebuilt the index in turn (a full pass each, 0.5–2.4 s at a million keys).

// aeEntry is one shared key in the index.
type aeEntry struct {
	key  string
	hash uint64 // cellHash
	set  uint32 // index in aeIndex.sets of the peers it is shared with
}

type aeIndex struct {
	mu      sync.Mutex
	view    *view
	bits    uint
	changes uint64 // the store's Changes when the pass started
	at      time.Time
	built   bool
	sets    [][]uint64          // the distinct sets of peers keys are shared with
	buckets [][]aeEntry         // the shared keys, by bucket
	digests map[uint64][]uint64 // by peer: each bucket's xor of the cell hashes of the keys shared with it
}

// invalidate makes the next use build a new index.
func (x *aeIndex) invalidate() {
	x.mu.Lock()
	x.built, x.sets, x.buckets, x.digests = false, nil, nil, nil
	x.mu.Unlock()
}

// withIndex calls fn with a valid index (building one first if needed),
// under its lock: fn must copy what it keeps.
func (n *Node) withIndex(bits uint, fn func(x *aeIndex)) {
	x := &n.aeIndex
	x.mu.Lock()
	defer x.mu.Unlock()
	v := n.view.Load()
	changes := n.store.Changes()
	if !x.built || x.view != v || x.bits != bits ||
		(x.changes != changes && time.Since(x.at) >= n.cfg.DigestReuse) {
		n.buildIndex(x, v, bits, changes)
	}
	fn(x)
}

// buildIndex makes x the index of the store under view v.
func (n *Node) buildIndex(x *aeIndex, v *view, bits uint, changes uint64) {
	at := time.Now()
	self := n.cfg.ID
	setIDs := map[string]uint32{}
	var sets [][]uint64
	buckets := make([][]aeEntry, 1<<bits)
	digests := map[uint64][]uint64{}
	h := xxhash.New()
	var buf [16]route.Member
	var idBuf []byte
	n.store.Each(func(key, cell []byte) bool {
		kh := ring.KeyHash(key)
		rs := v.allReplicasOfHash(key, kh, buf[:0])
		if len(rs) < 2 || !containsMember(rs, self) {
			return true
		}
		// The set's identity: its other members' ids, in ring order (the
		// same set in another order is another set: harmless).
		idBuf = idBuf[:0]
		for _, m := range rs {
			if m.ID != self {
				idBuf = binary.LittleEndian.AppendUint64(idBuf, m.ID)
			}
		}
		set, ok := setIDs[string(idBuf)]
		if !ok {
			set = uint32(len(sets))
			setIDs[string(idBuf)] = set
			peers := make([]uint64, 0, len(rs)-1)
			for _, m := range rs {
				if m.ID != self {
					peers = append(peers, m.ID)
					if digests[m.ID] == nil {
						digests[m.ID] = make([]uint64, 1<<bits)
					}
				}
			}
			sets = append(sets, peers)
		}
		ch := cellHash(h, key, cell)
		b := bucketOf(kh, bits)
		buckets[b] = append(buckets[b], aeEntry{key: string(key), hash: ch, set: set})
		for _, p := range sets[set] {
			digests[p][b] ^= ch
		}
		return true
	})
	x.view, x.bits, x.changes, x.at, x.built = v, bits, changes, at, true
	x.sets, x.buckets, x.digests = sets, buckets, digests
}

// digests returns, for each of 2^bits buckets, the xor of the cell hashes of
// the keys in it that this node and peer both replicate: a copy.
func (n *Node) digests(peer uint64, bits uint) []uint64 {
	out := make([]uint64, 1<<bits)
	n.withIndex(bits, func(x *aeIndex) { copy(out, x.digests[peer]) })
	return out
}

// bucketKeys returns the keys this node shares with peer in the given
// buckets, with their cell hashes.
func (n *Node) bucketKeys(peer uint64, bits uint, buckets map[uint64]bool) map[string]uint64 {
	var out map[string]uint64
	n.withIndex(bits, func(x *aeIndex) {
		shared := make([]bool, len(x.sets))
		for i, s := range x.sets {
			for _, p := range s {
				if p == peer {
					shared[i] = true
				}
			}
		}
		size := 0 // sized at once: growing a map of a million keys rehashes it over and over
		for b := range buckets {
			size += len(x.buckets[b])
		}
		out = make(map[string]uint64, size)
		for b := range buckets {
			for _, e := range x.buckets[b] {
				if shared[e.set] {
					out[e.key] = e.hash
				}
			}
		}
	})
	return out
}
