package route_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/trellisdb/trellis/route"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The exact bytes are a contract between versions of the routing tier (Raft
// log entries and snapshots outlive binaries).
func TestEncodingKnownAnswers(t *testing.T) {
	s := route.State{Epoch: 5, DefaultRF: 3,
		Members: []route.Member{{ID: 1, Addr: "a", State: route.Active}, {ID: 300, Addr: "b", RESPAddr: "r", State: route.Down}},
		KeyRF:   map[string]int{"k": 2, "j": 1}}
	want := "95 01 05 03" +
		" 92 94 01 a161 a0 02   94 cd012c a162 a172 04" +
		" 92 92 c4016a 01   92 c4016b 02"
	got, err := s.AppendBinary([]byte{0xee})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, unhex(t, "ee"+want)) {
		t.Fatalf("state encoding\n got %x\nwant %s", got, want)
	}
	if d, err := route.DecodeState(unhex(t, want)); err != nil || !d.Equal(s) {
		t.Fatalf("decode: %v %+v", err, d)
	}

	for _, tc := range []struct {
		c    route.Command
		want string
	}{
		{route.Command{Op: route.OpRegister, Member: route.Member{ID: 1, Addr: "a", State: route.Active}}, "95 01 01 01 a161 a0"},
		{route.Command{Op: route.OpActivate, ID: 7}, "93 01 02 07"},
		{route.Command{Op: route.OpLeave, ID: 7}, "93 01 03 07"},
		{route.Command{Op: route.OpRemove, ID: 7}, "93 01 04 07"},
		{route.Command{Op: route.OpMarkDown, ID: 1 << 40}, "93 01 05 cf0000010000000000"},
		{route.Command{Op: route.OpSetRF, Key: "k", RF: 2}, "94 01 06 c4016b 02"},
		{route.Command{Op: route.OpSetRF, Key: "k"}, "94 01 06 c4016b 00"},
		{route.Command{Op: route.OpSetDefaultRF, RF: 3}, "93 01 07 03"},
	} {
		got, err := tc.c.AppendBinary(nil)
		if err != nil || !bytes.Equal(got, unhex(t, tc.want)) {
			t.Errorf("%s: %x, %v; want %s", tc.c.Op, got, err, tc.want)
		}
		d, err := route.DecodeCommand(got)
		wantCmd := tc.c
		wantCmd.Member.State = 0 // not encoded
		if err != nil || d != wantCmd {
			t.Errorf("%s: decoded %+v, %v", tc.c.Op, d, err)
		}
	}
}

func TestDecodeStateRejects(t *testing.T) {
	member := "94 01 a161 a0 02"
	for _, tc := range []struct {
		name, hex string
		want      error
	}{
		{"empty input", "", route.ErrMalformed},
		{"not an array", "01", route.ErrMalformed},
		{"empty array", "90", route.ErrMalformed},
		{"version 2", "95 02 05 03 90 90", route.ErrUnsupportedVersion},
		{"version 2, other shape", "91 02", route.ErrUnsupportedVersion},
		{"version not an integer", "95 a101 05 03 90 90", route.ErrMalformed},
		{"too few fields", "94 01 05 03 90", route.ErrMalformed},
		{"too many fields", "96 01 05 03 90 90 90", route.ErrMalformed},
		{"trailing bytes", "95 01 05 03 90 90 00", route.ErrMalformed},
		{"non-canonical integer", "95 01 cc05 03 90 90", route.ErrMalformed},
		{"negative epoch", "95 01 ff 03 90 90", route.ErrMalformed},
		{"default factor too large", "95 01 05 cd0401 90 90", route.ErrMalformed},
		{"member id 0", "95 01 05 03 91 94 00 a161 a0 02 90", route.ErrMalformed},
		{"member state 0", "95 01 05 03 91 94 01 a161 a0 00 90", route.ErrMalformed},
		{"member state 5", "95 01 05 03 91 94 01 a161 a0 05 90", route.ErrMalformed},
		{"member state 257", "95 01 05 03 91 94 01 a161 a0 cd0101 90", route.ErrMalformed},
		{"empty address", "95 01 05 03 91 94 01 a0 a0 02 90", route.ErrMalformed},
		{"address as bin", "95 01 05 03 91 94 01 c40161 a0 02 90", route.ErrMalformed},
		{"member of 3 fields", "95 01 05 03 91 93 01 a161 a0 90", route.ErrMalformed},
		{"duplicate members", "95 01 05 03 92" + member + member + "90", route.ErrMalformed},
		{"unsorted members", "95 01 05 03 92 94 02 a161 a0 02" + member + "90", route.ErrMalformed},
		{"key factor 0", "95 01 05 03 90 91 92 c4016b 00", route.ErrMalformed},
		{"empty key", "95 01 05 03 90 91 92 c400 01", route.ErrMalformed},
		{"key as str", "95 01 05 03 90 91 92 a16b 01", route.ErrMalformed},
		{"unsorted keys", "95 01 05 03 90 92 92 c4016b 01 92 c4016a 01", route.ErrMalformed},
		{"duplicate keys", "95 01 05 03 90 92 92 c4016b 01 92 c4016b 01", route.ErrMalformed},
		{"array32 claiming 4G members", "95 01 05 03 ddffffffff 90", route.ErrMalformed},
		{"str32 claiming 4G bytes", "95 01 05 03 91 94 01 dbffffffff a0 02 90", route.ErrMalformed},
		{"too deep", "95 01 05 03 91 94 91 91 01 a161 a0 02 90", route.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := route.DecodeState(unhex(t, tc.hex))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if !s.Equal(route.State{}) {
				t.Fatalf("state %+v returned with an error", s)
			}
		})
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	for _, tc := range []struct {
		name, hex string
		want      error
	}{
		{"empty input", "", route.ErrMalformed},
		{"empty array", "90", route.ErrMalformed},
		{"version only", "91 01", route.ErrMalformed},
		{"version 2", "93 02 02 07", route.ErrUnsupportedVersion},
		{"unknown op", "93 01 08 07", route.ErrMalformed},
		{"op 0", "93 01 00 07", route.ErrMalformed},
		{"op 258", "93 01 cd0102 07", route.ErrMalformed},
		{"activate without id", "92 01 02", route.ErrMalformed},
		{"activate with extra field", "94 01 02 07 07", route.ErrMalformed},
		{"activate id 0", "93 01 02 00", route.ErrMalformed},
		{"register of 3 fields", "93 01 01 07", route.ErrMalformed},
		{"register empty address", "95 01 01 07 a0 a0", route.ErrMalformed},
		{"register id as str", "95 01 01 a137 a161 a0", route.ErrMalformed},
		{"set-rf key as str", "94 01 06 a16b 02", route.ErrMalformed},
		{"set-rf empty key", "94 01 06 c400 02", route.ErrMalformed},
		{"set-rf too large", "94 01 06 c4016b cd0401", route.ErrMalformed},
		{"set-default-rf 0", "93 01 07 00", route.ErrMalformed},
		{"set-default-rf huge", "93 01 07 cfffffffffffffffff", route.ErrMalformed},
		{"non-canonical id", "93 01 02 cc07", route.ErrMalformed},
		{"nested", "93 01 02 91 07", route.ErrMalformed},
		{"trailing", "93 01 02 07 c0", route.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := route.DecodeCommand(unhex(t, tc.hex))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if c != (route.Command{}) {
				t.Fatalf("command %+v returned with an error", c)
			}
		})
	}
}

func TestInvalidStateEncoding(t *testing.T) {
	for _, s := range []route.State{
		{Members: []route.Member{{ID: 2, Addr: "a", State: route.Active}, {ID: 1, Addr: "a", State: route.Active}}},
		{Members: []route.Member{{ID: 1, Addr: "a"}}},
		{DefaultRF: -1},
		{KeyRF: map[string]int{"k": 0}},
	} {
		if b, err := s.AppendBinary([]byte{1}); !errors.Is(err, route.ErrInvalid) || len(b) != 1 {
			t.Errorf("%+v: %x, %v", s, b, err)
		}
	}
}

func isDecodeError(err error) bool {
	return errors.Is(err, route.ErrMalformed) || errors.Is(err, route.ErrUnsupportedVersion)
}

func sampleStates() []route.State {
	return []route.State{
		{},
		{Epoch: 1, DefaultRF: 3},
		{Epoch: 9, DefaultRF: 2, Members: []route.Member{
			{ID: 1, Addr: "10.0.0.1:7000", RESPAddr: "10.0.0.1:6379", State: route.Active},
			{ID: 2, Addr: "10.0.0.2:7000", State: route.Joining},
			{ID: 3, Addr: "h3:7000", State: route.Leaving},
			{ID: 1 << 40, Addr: "h4:7000", State: route.Down},
		}, KeyRF: map[string]int{"hot": 5, "\x00": 1}},
	}
}

func FuzzDecodeState(f *testing.F) {
	for _, s := range sampleStates() {
		b, err := s.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := route.DecodeState(b)
		if err != nil {
			if !isDecodeError(err) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		enc, err := s.AppendBinary(nil)
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("decoding is not canonical (%v):\n in  %x\n out %x", err, b, enc)
		}
		// A decoded state is one Apply can continue from.
		for _, m := range s.Members {
			if _, err := route.Apply(s, route.Command{Op: route.OpMarkDown, ID: m.ID}); err != nil {
				t.Fatalf("MarkDown %d: %v", m.ID, err)
			}
		}
		if _, err := s.Ring(4); err != nil {
			t.Fatalf("Ring: %v", err)
		}
	})
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range []route.Command{
		{Op: route.OpRegister, Member: route.Member{ID: 1, Addr: "a:1", RESPAddr: "a:2"}},
		{Op: route.OpActivate, ID: 2},
		{Op: route.OpMarkDown, ID: 1 << 50},
		{Op: route.OpSetRF, Key: "hot", RF: 4},
		{Op: route.OpSetDefaultRF, RF: 3},
	} {
		b, err := c.AppendBinary(nil)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	states := sampleStates()
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := route.DecodeCommand(b)
		if err != nil {
			if !isDecodeError(err) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		enc, err := c.AppendBinary(nil)
		if err != nil || !bytes.Equal(enc, b) {
			t.Fatalf("decoding is not canonical (%v):\n in  %x\n out %x", err, b, enc)
		}
		// Every decoded command is valid: Apply refuses it only for the
		// state's sake.
		for _, s := range states {
			if _, err := route.Apply(s, c); err != nil && !errors.Is(err, route.ErrUnknownMember) && !errors.Is(err, route.ErrBadTransition) {
				t.Fatalf("Apply(%+v): %v", c, err)
			}
		}
	})
}
