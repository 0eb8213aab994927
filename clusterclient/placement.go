package clusterclient

import (
	"strconv"

	"github.com/trellisdb/trellis/ring"
	"github.com/trellisdb/trellis/route"
)

// table is a routing state with its ring: the client's address cache. It is
// immutable once built.
type table struct {
	state   route.State
	ring    *ring.Ring     // active + leaving members; nil when there are none
	members []route.Member // members[i] is ring member i
	// settled: no member is joining or leaving, so the nodes count a
	// write's quorum over the ring's responsible set alone (no hand-off is
	// under way whose new owners must get the write too).
	settled bool
}

// newTable builds the ring of st with vnodes points per member, as a
// storage node does (cluster's view): its responsible sets are the nodes'.
func newTable(st route.State, vnodes int) (*table, error) {
	r, err := st.Ring(vnodes)
	if err != nil {
		return nil, err
	}
	t := &table{state: st, ring: r, settled: true}
	for _, m := range st.Members {
		if m.State == route.Joining || m.State == route.Leaving {
			t.settled = false
		}
	}
	if r != nil {
		t.members = make([]route.Member, r.Len())
		for i := range t.members {
			id, _ := strconv.ParseUint(r.Member(i), 10, 64) // st.Ring names members by id
			t.members[i], _ = st.Member(id)
		}
	}
	return t, nil
}

func (t *table) epoch() uint64 { return t.state.Epoch }

// replicas appends key's responsible set to dst: the first RF(key) distinct
// members clockwise from the key's hash, the owner first.
func (t *table) replicas(key []byte, dst []route.Member) []route.Member {
	if t.ring == nil {
		return dst
	}
	var buf [8]int
	for _, i := range t.ring.Replicas(ring.KeyHash(key), t.state.RF(key), buf[:0]) {
		dst = append(dst, t.members[i])
	}
	return dst
}

// serves reports whether the member with this id and address is on the
// ring: whether a connection pool to it is worth keeping.
func (t *table) serves(id uint64, addr string) bool {
	for _, m := range t.members {
		if m.ID == id {
			return m.Addr == addr
		}
	}
	return false
}

// preferReachable reorders reps in place so that the members suspect
// reports come last, each group keeping its order: a key is served by its
// first replica normally (read-your-writes), by the next one while the first
// cannot be reached, and by a suspect one only when no other is left.
func preferReachable(reps []route.Member, suspect func(id uint64) bool) {
	var buf [8]route.Member
	late := buf[:0]
	j := 0
	for _, m := range reps {
		if suspect(m.ID) {
			late = append(late, m)
			continue
		}
		reps[j] = m
		j++
	}
	copy(reps[j:], late)
}
