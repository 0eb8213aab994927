package route

import "time"

// Liveness tracks storage nodes' heartbeats on the routing leader and tells
// which members to mark down. It is not replicated: a new leader starts with
// an empty Liveness, which gives every member a full grace period.
//
// Time is an input: every method takes the current time, and Liveness never
// reads a clock. The zero value is ready to use. A Liveness is not safe for
// concurrent use.
type Liveness struct {
	last map[uint64]time.Time // last heartbeat, or when first seen
}

// Heartbeat records a heartbeat from member id at now.
func (l *Liveness) Heartbeat(id uint64, now time.Time) {
	if l.last == nil {
		l.last = make(map[uint64]time.Time)
	}
	if t, ok := l.last[id]; !ok || now.After(t) {
		l.last[id] = now
	}
}

// Seen starts member id's clock at now if Liveness has neither a heartbeat
// from it nor an earlier Seen; otherwise it does nothing. Call it when the
// member appears (it registers, or this node becomes leader).
func (l *Liveness) Seen(id uint64, now time.Time) {
	if _, ok := l.last[id]; ok {
		return
	}
	if l.last == nil {
		l.last = make(map[uint64]time.Time)
	}
	l.last[id] = now
}

// Forget drops what Liveness knows about member id.
func (l *Liveness) Forget(id uint64) { delete(l.last, id) }

// Expired returns the ids, in the order of members, of the members not Down
// whose last heartbeat (or, without one, the Seen time) is more than after
// before now. A member Expired meets for the first time counts as Seen at
// now, so it is never expired on first sight. Expired forgets the members
// that are Down or absent from members, so that a member that comes back
// gets a fresh grace period.
func (l *Liveness) Expired(now time.Time, after time.Duration, members []Member) []uint64 {
	var out []uint64
	live := make(map[uint64]struct{}, len(members))
	for _, m := range members {
		if m.State == Down {
			continue
		}
		live[m.ID] = struct{}{}
		t, ok := l.last[m.ID]
		if !ok {
			l.Seen(m.ID, now)
			continue
		}
		if now.Sub(t) > after {
			out = append(out, m.ID)
		}
	}
	for id := range l.last {
		if _, ok := live[id]; !ok {
			delete(l.last, id)
		}
	}
	return out
}
