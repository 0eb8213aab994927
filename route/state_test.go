package route_test

import (
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/trellisdb/trellis/ring"
	"github.com/trellisdb/trellis/route"
	"pgregory.net/rapid"
)

const absent route.MemberState = 0 // the id is not a member

// withMember returns a state holding member 3 (Active, a bystander) and,
// unless st is absent, member 7 in state st.
func withMember(st route.MemberState) route.State {
	s := route.State{Epoch: 10, DefaultRF: 3, Members: []route.Member{{ID: 3, Addr: "a3", State: route.Active}}}
	if st != absent {
		s.Members = append(s.Members, route.Member{ID: 7, Addr: "a7", RESPAddr: "r7", State: st})
	}
	return s
}

func TestTransitionTable(t *testing.T) {
	const (
		unknown = route.MemberState(100) // ErrUnknownMember
		bad     = route.MemberState(101) // ErrBadTransition
		same    = route.MemberState(102) // no change
		removed = route.MemberState(103) // member deleted
	)
	from := []route.MemberState{absent, route.Joining, route.Active, route.Leaving, route.Down}
	table := []struct {
		op   route.CommandOp
		want []route.MemberState // indexed like from
	}{
		{route.OpRegister, []route.MemberState{route.Joining, same, same, route.Joining, route.Joining}},
		{route.OpActivate, []route.MemberState{unknown, route.Active, same, bad, bad}},
		{route.OpLeave, []route.MemberState{unknown, bad, route.Leaving, same, bad}},
		{route.OpRemove, []route.MemberState{unknown, bad, bad, removed, removed}},
		{route.OpMarkDown, []route.MemberState{unknown, route.Down, route.Down, route.Down, same}},
	}
	for _, row := range table {
		for i, st := range from {
			t.Run(fmt.Sprintf("%s/%s", row.op, st), func(t *testing.T) {
				s := withMember(st)
				before := s.Clone()
				c := route.Command{Op: row.op, ID: 7}
				if row.op == route.OpRegister {
					c = route.Command{Op: row.op, Member: route.Member{ID: 7, Addr: "a7", RESPAddr: "r7"}}
				}
				got, err := route.Apply(s, c)
				if !s.Equal(before) {
					t.Fatalf("Apply modified its input")
				}
				want := row.want[i]
				switch want {
				case unknown, bad:
					wantErr := route.ErrUnknownMember
					if want == bad {
						wantErr = route.ErrBadTransition
					}
					if !errors.Is(err, wantErr) {
						t.Fatalf("err = %v, want %v", err, wantErr)
					}
					if !got.Equal(s) {
						t.Fatalf("state changed on error: %+v", got)
					}
					return
				}
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if want == same {
					if !got.Equal(s) {
						t.Fatalf("no-op changed the state: %+v", got)
					}
					return
				}
				if got.Epoch != s.Epoch+1 {
					t.Fatalf("epoch %d, want %d", got.Epoch, s.Epoch+1)
				}
				if m, _ := got.Member(3); m != s.Members[0] {
					t.Fatalf("bystander changed: %+v", m)
				}
				m, ok := got.Member(7)
				if want == removed {
					if ok || len(got.Members) != 1 {
						t.Fatalf("member not removed: %+v", got.Members)
					}
					return
				}
				if !ok || m.State != want || m.Addr != "a7" || m.RESPAddr != "r7" {
					t.Fatalf("member = %+v, %v; want state %s", m, ok, want)
				}
			})
		}
	}
}

func TestRegisterAddresses(t *testing.T) {
	for _, tc := range []struct {
		from, want route.MemberState
	}{
		{route.Joining, route.Joining},
		{route.Active, route.Active},
		{route.Leaving, route.Joining},
		{route.Down, route.Joining},
	} {
		s := withMember(tc.from)
		got, err := route.Apply(s, route.Command{Op: route.OpRegister, Member: route.Member{ID: 7, Addr: "new", State: route.Down}})
		if err != nil {
			t.Fatal(err)
		}
		want := route.Member{ID: 7, Addr: "new", State: tc.want}
		if m, _ := got.Member(7); m != want || got.Epoch != s.Epoch+1 {
			t.Errorf("from %s: %+v epoch %d, want %+v epoch %d", tc.from, m, got.Epoch, want, s.Epoch+1)
		}
	}
	// New members keep Members sorted.
	s := route.State{}
	for _, id := range []uint64{5, 1, 9, 3} {
		var err error
		if s, err = route.Apply(s, route.Command{Op: route.OpRegister, Member: route.Member{ID: id, Addr: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	var ids []uint64
	for _, m := range s.Members {
		ids = append(ids, m.ID)
	}
	if fmt.Sprint(ids) != "[1 3 5 9]" || s.Epoch != 4 {
		t.Fatalf("ids %v epoch %d", ids, s.Epoch)
	}
}

func TestInvalidCommands(t *testing.T) {
	s := withMember(route.Active)
	for _, c := range []route.Command{
		{},
		{Op: 99, ID: 7},
		{Op: route.OpRegister, Member: route.Member{Addr: "x"}},
		{Op: route.OpRegister, Member: route.Member{ID: 8}},
		{Op: route.OpActivate},
		{Op: route.OpLeave},
		{Op: route.OpRemove},
		{Op: route.OpMarkDown},
		{Op: route.OpSetRF, RF: 2},
		{Op: route.OpSetRF, Key: "k", RF: -1},
		{Op: route.OpSetRF, Key: "k", RF: route.MaxRF + 1},
		{Op: route.OpSetDefaultRF},
		{Op: route.OpSetDefaultRF, RF: -3},
		{Op: route.OpSetDefaultRF, RF: route.MaxRF + 1},
	} {
		got, err := route.Apply(s, c)
		if !errors.Is(err, route.ErrInvalid) || !got.Equal(s) {
			t.Errorf("%+v: err %v, state changed %v", c, err, !got.Equal(s))
		}
		if _, err := c.AppendBinary(nil); !errors.Is(err, route.ErrInvalid) {
			t.Errorf("%+v: AppendBinary err %v", c, err)
		}
	}
}

func TestReplicationFactors(t *testing.T) {
	var s route.State
	if got := s.RF([]byte("k")); got != route.DefaultReplication {
		t.Fatalf("RF of a state without DefaultRF = %d", got)
	}
	steps := []struct {
		c         route.Command
		changed   bool
		k, other  int // RF("k"), RF("other") after
		overrides int
	}{
		{route.Command{Op: route.OpSetDefaultRF, RF: 2}, true, 2, 2, 0},
		{route.Command{Op: route.OpSetDefaultRF, RF: 2}, false, 2, 2, 0},
		{route.Command{Op: route.OpSetRF, Key: "k", RF: 5}, true, 5, 2, 1},
		{route.Command{Op: route.OpSetRF, Key: "k", RF: 5}, false, 5, 2, 1},
		{route.Command{Op: route.OpSetDefaultRF, RF: 4}, true, 5, 4, 1},
		{route.Command{Op: route.OpSetRF, Key: "k", RF: 1}, true, 1, 4, 1},
		{route.Command{Op: route.OpSetRF, Key: "k", RF: 0}, true, 4, 4, 0},
		{route.Command{Op: route.OpSetRF, Key: "k", RF: 0}, false, 4, 4, 0},
		{route.Command{Op: route.OpSetRF, Key: "absent", RF: 0}, false, 4, 4, 0},
	}
	for i, st := range steps {
		before := s.Clone()
		next, err := route.Apply(s, st.c)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if !s.Equal(before) {
			t.Fatalf("step %d: input modified", i)
		}
		if changed := next.Epoch != s.Epoch; changed != st.changed || (changed && next.Epoch != s.Epoch+1) {
			t.Fatalf("step %d: epoch %d -> %d, want changed=%v", i, s.Epoch, next.Epoch, st.changed)
		}
		if next.RF([]byte("k")) != st.k || next.RF([]byte("other")) != st.other || len(next.KeyRF) != st.overrides {
			t.Fatalf("step %d: RF k=%d other=%d overrides=%d", i, next.RF([]byte("k")), next.RF([]byte("other")), len(next.KeyRF))
		}
		s = next
	}
}

func memberIDs(r *ring.Ring) []string {
	if r == nil {
		return nil
	}
	return r.Members()
}

func TestRingsByState(t *testing.T) {
	s := route.State{DefaultRF: 2, Members: []route.Member{
		{ID: 1, Addr: "a1", State: route.Joining},
		{ID: 2, Addr: "a2", State: route.Active},
		{ID: 3, Addr: "a3", State: route.Leaving},
		{ID: 4, Addr: "a4", State: route.Down},
		{ID: 10, Addr: "a10", State: route.Active},
	}}
	r, err := s.Ring(route.DefaultVnodes)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(memberIDs(r)); got != "[2 3 10]" {
		t.Errorf("Ring members %s, want [2 3 10]", got)
	}
	p, err := s.PendingRing(route.DefaultVnodes)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(memberIDs(p)); got != "[1 2 10]" {
		t.Errorf("PendingRing members %s, want [1 2 10]", got)
	}
	if r.Vnodes() != route.DefaultVnodes {
		t.Errorf("vnodes %d", r.Vnodes())
	}

	// The responsible set is the ring's replica list, as members.
	for _, key := range []string{"a", "user:42", "hello"} {
		idx := r.Replicas(ring.KeyHash([]byte(key)), 2, nil)
		got := s.Responsible(r, []byte(key), nil)
		if len(got) != 2 {
			t.Fatalf("%q: %d responsible", key, len(got))
		}
		for j, m := range got {
			if strconv.FormatUint(m.ID, 10) != r.Member(idx[j]) {
				t.Errorf("%q: responsible[%d] = %d, ring says %s", key, j, m.ID, r.Member(idx[j]))
			}
		}
	}
	// A key's override applies; with more replicas than members, all.
	s2, _ := route.Apply(s, route.Command{Op: route.OpSetRF, Key: "hot", RF: 9})
	if got := s2.Responsible(r, []byte("hot"), nil); len(got) != 3 {
		t.Errorf("hot key: %d responsible, want 3", len(got))
	}

	// No members on a ring: nil and no error.
	empty := route.State{Members: []route.Member{{ID: 1, Addr: "a", State: route.Joining}, {ID: 2, Addr: "b", State: route.Down}}}
	if r, err := empty.Ring(8); r != nil || err != nil {
		t.Errorf("Ring of no active members = %v, %v", r, err)
	}
	if got := empty.Responsible(nil, []byte("k"), nil); len(got) != 0 {
		t.Errorf("Responsible on a nil ring = %v", got)
	}
	if p, err := (route.State{Members: []route.Member{{ID: 1, Addr: "a", State: route.Leaving}}}).PendingRing(8); p != nil || err != nil {
		t.Errorf("PendingRing of a leaving member = %v, %v", p, err)
	}
	if _, err := s.Ring(0); !errors.Is(err, ring.ErrInvalid) {
		t.Errorf("Ring(0) err %v", err)
	}
}

func TestMemberLookup(t *testing.T) {
	s := withMember(route.Leaving)
	if m, ok := s.Member(7); !ok || m.State != route.Leaving {
		t.Errorf("Member(7) = %+v, %v", m, ok)
	}
	for _, id := range []uint64{0, 4, 8} {
		if _, ok := s.Member(id); ok {
			t.Errorf("Member(%d) found", id)
		}
	}
	if route.Active.String() != "active" || route.MemberState(9).String() != "MemberState(9)" ||
		route.OpMarkDown.String() != "mark-down" {
		t.Errorf("String methods")
	}
}

// genCommand draws commands that touch a small id and key space, so that
// sequences hit every transition, valid or not.
func genCommand() *rapid.Generator[route.Command] {
	return rapid.Custom(func(t *rapid.T) route.Command {
		id := rapid.Uint64Range(1, 6).Draw(t, "id")
		switch op := route.CommandOp(rapid.IntRange(1, 7).Draw(t, "op")); op {
		case route.OpRegister:
			return route.Command{Op: op, Member: route.Member{
				ID:       id,
				Addr:     rapid.SampledFrom([]string{"a", "b"}).Draw(t, "addr"),
				RESPAddr: rapid.SampledFrom([]string{"", "r"}).Draw(t, "resp"),
			}}
		case route.OpSetRF:
			return route.Command{Op: op, Key: rapid.SampledFrom([]string{"k1", "k2", "\x00\xff"}).Draw(t, "key"), RF: rapid.IntRange(0, 4).Draw(t, "rf")}
		case route.OpSetDefaultRF:
			return route.Command{Op: op, RF: rapid.IntRange(1, 4).Draw(t, "rf")}
		default:
			return route.Command{Op: op, ID: id}
		}
	})
}

func TestApplyProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cmds := rapid.SliceOfN(genCommand(), 0, 60).Draw(t, "cmds")
		run := func() (route.State, []route.State) {
			var s route.State
			var seen []route.State
			for _, c := range cmds {
				seen = append(seen, s)
				snap := s.Clone()
				next, err := route.Apply(s, c)
				if !s.Equal(snap) {
					t.Fatalf("Apply(%+v) modified its input", c)
				}
				switch {
				case err != nil:
					if !errors.Is(err, route.ErrUnknownMember) && !errors.Is(err, route.ErrBadTransition) {
						t.Fatalf("Apply(%+v): %v", c, err)
					}
					if !next.Equal(s) {
						t.Fatalf("failed Apply changed the state")
					}
				case next.Epoch == s.Epoch:
					if !next.Equal(s) {
						t.Fatalf("Apply(%+v) changed the state without a new epoch", c)
					}
				default:
					prev := next.Clone()
					prev.Epoch = s.Epoch
					if next.Epoch != s.Epoch+1 || prev.Equal(s) {
						t.Fatalf("Apply(%+v): epoch %d -> %d, changed %v", c, s.Epoch, next.Epoch, !prev.Equal(s))
					}
				}

				// Encodings round-trip.
				b, err := next.AppendBinary(nil)
				if err != nil {
					t.Fatalf("encode state: %v", err)
				}
				d, err := route.DecodeState(b)
				if err != nil || !d.Equal(next) {
					t.Fatalf("state round trip: %v\n%+v\n%+v", err, d, next)
				}
				cb, err := c.AppendBinary(nil)
				if err != nil {
					t.Fatalf("encode command: %v", err)
				}
				if dc, err := route.DecodeCommand(cb); err != nil || dc != c {
					t.Fatalf("command round trip: %v %+v", err, dc)
				}
				s = next
			}
			return s, seen
		}
		a, seenA := run()
		b, _ := run()
		if !a.Equal(b) {
			t.Fatalf("the same commands gave different states:\n%+v\n%+v", a, b)
		}
		// The states seen along the way are still intact (no aliasing).
		var s route.State
		for i, c := range cmds {
			if !s.Equal(seenA[i]) {
				t.Fatalf("state %d was modified later", i)
			}
			s, _ = route.Apply(s, c)
		}
	})
}

func TestLiveness(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sec := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
	members := []route.Member{
		{ID: 1, State: route.Active},
		{ID: 2, State: route.Joining},
		{ID: 3, State: route.Leaving},
		{ID: 4, State: route.Down},
	}
	var l route.Liveness
	l.Heartbeat(1, sec(0))
	l.Seen(2, sec(0))
	l.Seen(2, sec(4)) // a later Seen does not restart the clock
	l.Heartbeat(4, sec(0))
	// Member 3 has neither: Expired starts its clock now.
	if got := l.Expired(sec(3), 5*time.Second, members); len(got) != 0 {
		t.Fatalf("at 3s: %v", got)
	}
	l.Heartbeat(1, sec(4))
	l.Heartbeat(1, sec(2)) // out of order: ignored
	if got := fmt.Sprint(l.Expired(sec(6), 5*time.Second, members)); got != "[2]" {
		t.Fatalf("at 6s: %s, want [2]", got)
	}
	if got := fmt.Sprint(l.Expired(sec(10), 5*time.Second, members)); got != "[1 2 3]" {
		t.Fatalf("at 10s: %s, want [1 2 3]", got)
	}
	// Down members are never expired and are forgotten: back as Joining,
	// member 4 gets a new grace period despite its old heartbeat.
	members[3].State = route.Joining
	if got := fmt.Sprint(l.Expired(sec(10), 5*time.Second, members)); got != "[1 2 3]" {
		t.Fatalf("4 rejoined at 10s: %s", got)
	}
	if got := fmt.Sprint(l.Expired(sec(16), 5*time.Second, members)); got != "[1 2 3 4]" {
		t.Fatalf("at 16s: %s", got)
	}
	l.Forget(2)
	l.Heartbeat(3, sec(16))
	if got := fmt.Sprint(l.Expired(sec(17), 5*time.Second, members)); got != "[1 4]" {
		t.Fatalf("at 17s: %s", got)
	}
}
