package ring

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// MaxVnodes is the largest number of virtual nodes per member New accepts.
const MaxVnodes = 1 << 16

// ErrInvalid is wrapped by the errors New returns for an unusable member
// list or vnode count.
var ErrInvalid = errors.New("ring: invalid configuration")

// KeyHash returns the position of key on a ring: XXH64 of the key's bytes
// with seed 0.
func KeyHash(key []byte) uint64 { return xxhash.Sum64(key) }

// ShardHash returns the position of a key on a storage node's local ring
// from its KeyHash h: h with its 32-bit halves swapped. The local ring is
// not looked up with h itself because the keys a node holds are those whose
// h falls in its arcs of the global ring, and the same h would then fall in
// few arcs of the local ring, unevenly (see docs/placement.md).
func ShardHash(h uint64) uint64 { return bits.RotateLeft64(h, 32) }

// Point returns the position of virtual node i of the member with the given
// id: XXH64, seed 0, of the id's bytes, one zero byte, and i as 4 bytes
// big-endian.
func Point(id string, i uint32) uint64 {
	buf := make([]byte, 0, len(id)+5)
	return xxhash.Sum64(appendPointInput(buf, id, i))
}

func appendPointInput(b []byte, id string, i uint32) []byte {
	b = append(b, id...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint32(b, i)
}

// Ring is a consistent-hashing ring: every member owns vnodes points, and a
// hash belongs to the member of the first point at or after it, wrapping
// around. A Ring is immutable; all its methods are safe for concurrent use.
type Ring struct {
	members []string
	vnodes  int
	points  []uint64 // ascending
	owners  []int32  // owners[j] is the index in members of points[j]

	// bucket[b] is the index of the first point whose top bits are >= b;
	// bucket has 1<<(64-shift) + 1 entries. It narrows Owner's search to
	// the points that share the hash's top bits.
	shift  uint
	bucket []uint32
}

// New returns the ring of the given members, each with vnodes virtual nodes.
// Member ids are arbitrary non-empty strings, unique; the order of members
// is kept, and Owner and Replicas return indices into it. vnodes is between
// 1 and MaxVnodes.
//
// Points are sorted by value; equal points (a 64-bit collision, in practice
// never) are ordered by member id, compared bytewise, then by vnode index,
// so that every implementation breaks ties the same way.
func New(members []string, vnodes int) (*Ring, error) {
	return build(members, vnodes, xxhash.Sum64)
}

// build is New with the hash of a point's input as a parameter, so tests
// can force equal points.
func build(members []string, vnodes int, hash func([]byte) uint64) (*Ring, error) {
	if len(members) == 0 {
		return nil, fmt.Errorf("%w: no members", ErrInvalid)
	}
	if vnodes < 1 || vnodes > MaxVnodes {
		return nil, fmt.Errorf("%w: vnodes %d not in [1, %d]", ErrInvalid, vnodes, MaxVnodes)
	}
	if len(members) > (1<<31-1)/vnodes {
		return nil, fmt.Errorf("%w: %d members of %d vnodes are too many points", ErrInvalid, len(members), vnodes)
	}
	seen := make(map[string]struct{}, len(members))
	for _, m := range members {
		if m == "" {
			return nil, fmt.Errorf("%w: empty member id", ErrInvalid)
		}
		if _, dup := seen[m]; dup {
			return nil, fmt.Errorf("%w: duplicate member id %q", ErrInvalid, m)
		}
		seen[m] = struct{}{}
	}

	type vnode struct {
		point  uint64
		member int32
		index  uint32
	}
	vs := make([]vnode, 0, len(members)*vnodes)
	var in []byte
	for m, id := range members {
		for i := range uint32(vnodes) {
			in = appendPointInput(in[:0], id, i)
			vs = append(vs, vnode{hash(in), int32(m), i})
		}
	}
	slices.SortFunc(vs, func(a, b vnode) int {
		return cmp.Or(cmp.Compare(a.point, b.point),
			strings.Compare(members[a.member], members[b.member]),
			cmp.Compare(a.index, b.index))
	})

	r := &Ring{
		members: slices.Clone(members),
		vnodes:  vnodes,
		points:  make([]uint64, len(vs)),
		owners:  make([]int32, len(vs)),
	}
	for j, v := range vs {
		r.points[j], r.owners[j] = v.point, v.member
	}
	// About two buckets per point, at most 64Ki buckets.
	bucketBits := min(bits.Len(uint(len(vs))), 16)
	r.shift = uint(64 - bucketBits)
	r.bucket = make([]uint32, 1<<bucketBits+1)
	j := 0
	for b := range r.bucket {
		for j < len(r.points) && r.points[j]>>r.shift < uint64(b) {
			j++
		}
		r.bucket[b] = uint32(j)
	}
	return r, nil
}

// NewShards returns the local ring of a storage node with the given number
// of shards: members "0", "1", ..., shards-1 in decimal, so member index i
// is shard i. Look it up with ShardHash: the shard of key is
// Owner(ShardHash(KeyHash(key))).
func NewShards(shards, vnodes int) (*Ring, error) {
	ids := make([]string, shards)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	return New(ids, vnodes)
}

// Members returns a copy of the member ids, in the order given to New.
func (r *Ring) Members() []string { return slices.Clone(r.members) }

// Member returns the id of the member with index i.
func (r *Ring) Member(i int) string { return r.members[i] }

// Len returns the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Vnodes returns the number of virtual nodes per member.
func (r *Ring) Vnodes() int { return r.vnodes }

// search returns the index of the first point >= h, or 0 if h is beyond
// the last point.
func (r *Ring) search(h uint64) int {
	b := h >> r.shift
	lo, hi := int(r.bucket[b]), int(r.bucket[b+1])
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.points[mid] < h {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.points) {
		return 0
	}
	return lo
}

// Owner returns the index of the member that owns hash h: the member of the
// first point >= h, or of the first point if h is beyond the last.
func (r *Ring) Owner(h uint64) int { return int(r.owners[r.search(h)]) }

// OwnerOfKey returns Owner(KeyHash(key)).
func (r *Ring) OwnerOfKey(key []byte) int { return r.Owner(KeyHash(key)) }

// Replicas appends to dst the indices of the first n distinct members met
// walking the ring clockwise from h's position, starting with Owner(h). If
// n is at least Len, it appends every member exactly once. It allocates only
// to grow dst, and, for n > 8, a set of Len bits.
func (r *Ring) Replicas(h uint64, n int, dst []int) []int {
	n = min(n, len(r.members))
	if n <= 0 {
		return dst
	}
	base := len(dst)
	var seen []uint64
	if n > 8 {
		seen = make([]uint64, (len(r.members)+63)/64)
	}
	for j, k := r.search(h), 0; k < len(r.points) && len(dst)-base < n; k++ {
		m := int(r.owners[j])
		if seen != nil {
			if seen[m/64]&(1<<(m%64)) == 0 {
				seen[m/64] |= 1 << (m % 64)
				dst = append(dst, m)
			}
		} else if !slices.Contains(dst[base:], m) {
			dst = append(dst, m)
		}
		if j++; j == len(r.points) {
			j = 0
		}
	}
	return dst
}
