package route

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/trellisdb/trellis/pack"
)

// Format versions: the first element of every State and Command encoding.
// The decoders refuse any other version with ErrUnsupportedVersion.
const (
	StateFormatVersion   = 1
	CommandFormatVersion = 1
)

// stateDepth is the msgpack nesting of a State encoding (state, member
// list, member), plus one for pack.Validate's counting.
const stateDepth = 4

// AppendBinary appends the canonical encoding of s to b, a msgpack array:
//
//	[StateFormatVersion, Epoch, DefaultRF,
//	 [[ID, Addr (str), RESPAddr (str), State], ...]   in ID order,
//	 [[key (bin), RF], ...]]                           in bytewise key order
//
// Every integer is unsigned. It fails with ErrInvalid, appending nothing,
// for a state Apply cannot produce (unsorted or duplicate members, id 0, an
// empty address, an unknown member state, a factor out of range).
func (s State) AppendBinary(b []byte) ([]byte, error) {
	if err := s.validate(); err != nil {
		return b, err
	}
	b = pack.AppendArrayHeader(b, 5)
	b = pack.AppendUint(b, StateFormatVersion)
	b = pack.AppendUint(b, s.Epoch)
	b = pack.AppendUint(b, uint64(s.DefaultRF))
	b = pack.AppendArrayHeader(b, len(s.Members))
	for _, m := range s.Members {
		b = pack.AppendArrayHeader(b, 4)
		b = pack.AppendUint(b, m.ID)
		b = pack.AppendString(b, m.Addr)
		b = pack.AppendString(b, m.RESPAddr)
		b = pack.AppendUint(b, uint64(m.State))
	}
	keys := slices.Sorted(maps.Keys(s.KeyRF))
	b = pack.AppendArrayHeader(b, len(keys))
	for _, k := range keys {
		b = pack.AppendArrayHeader(b, 2)
		b = pack.AppendBytes(b, []byte(k))
		b = pack.AppendUint(b, uint64(s.KeyRF[k]))
	}
	return b, nil
}

// validate checks the invariants every State built by Apply holds.
func (s State) validate() error {
	if s.DefaultRF < 0 || s.DefaultRF > MaxRF {
		return fmt.Errorf("%w: default factor %d not in [0, %d]", ErrInvalid, s.DefaultRF, MaxRF)
	}
	for i, m := range s.Members {
		switch {
		case m.ID == 0:
			return fmt.Errorf("%w: member id 0", ErrInvalid)
		case i > 0 && s.Members[i-1].ID >= m.ID:
			return fmt.Errorf("%w: members not in strictly ascending id order at %d", ErrInvalid, m.ID)
		case m.Addr == "":
			return fmt.Errorf("%w: member %d: empty address", ErrInvalid, m.ID)
		case !m.State.valid():
			return fmt.Errorf("%w: member %d: %s", ErrInvalid, m.ID, m.State)
		}
	}
	for k, n := range s.KeyRF {
		if k == "" || n < 1 || n > MaxRF {
			return fmt.Errorf("%w: factor %d of key %q", ErrInvalid, n, k)
		}
	}
	return nil
}

// DecodeState parses an encoding written by State.AppendBinary. It checks
// the bytes with pack.Validate before reading them, so what it allocates is
// bounded by len(b), and it accepts exactly the canonical encodings of valid
// states: for every b it accepts, AppendBinary of the result returns b.
// Anything else is ErrMalformed, or ErrUnsupportedVersion for another
// format version. The result shares no memory with b.
func DecodeState(b []byte) (State, error) {
	var s State
	r, err := openEncoding(b, stateDepth, StateFormatVersion, "state")
	if err != nil {
		return s, err
	}
	if r.n != 5 {
		return s, fmt.Errorf("%w: state of %d fields, want 5", ErrMalformed, r.n)
	}
	s.Epoch = r.uint()
	s.DefaultRF = r.int()
	if n := r.arrayLen(); n > 0 {
		s.Members = make([]Member, n)
		for i := range s.Members {
			r.fields(4)
			s.Members[i] = Member{ID: r.uint(), Addr: r.str(), RESPAddr: r.str(), State: MemberState(r.small())}
		}
	}
	if n := r.arrayLen(); n > 0 {
		s.KeyRF = make(map[string]int, n)
		for range n {
			r.fields(2)
			k := r.str()
			s.KeyRF[k] = r.int()
		}
	}
	if err := r.finish(b, s.AppendBinary); err != nil {
		return State{}, err
	}
	return s, nil
}

// AppendBinary appends the canonical encoding of c to b, a msgpack array of
// CommandFormatVersion, the op, and the op's arguments:
//
//	Register                        [1, 1, ID, Addr (str), RESPAddr (str)]
//	Activate, Leave, Remove, MarkDown  [1, op, ID]
//	SetRF                           [1, 6, key (bin), RF]
//	SetDefaultRF                    [1, 7, RF]
//
// Fields the op does not use are not encoded. It fails with the error of
// c.Validate, appending nothing.
func (c Command) AppendBinary(b []byte) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return b, err
	}
	switch c.Op {
	case OpRegister:
		b = pack.AppendArrayHeader(b, 5)
		b = pack.AppendUint(b, CommandFormatVersion)
		b = pack.AppendUint(b, uint64(c.Op))
		b = pack.AppendUint(b, c.Member.ID)
		b = pack.AppendString(b, c.Member.Addr)
		b = pack.AppendString(b, c.Member.RESPAddr)
	case OpSetRF:
		b = pack.AppendArrayHeader(b, 4)
		b = pack.AppendUint(b, CommandFormatVersion)
		b = pack.AppendUint(b, uint64(c.Op))
		b = pack.AppendBytes(b, []byte(c.Key))
		b = pack.AppendUint(b, uint64(c.RF))
	case OpSetDefaultRF:
		b = pack.AppendArrayHeader(b, 3)
		b = pack.AppendUint(b, CommandFormatVersion)
		b = pack.AppendUint(b, uint64(c.Op))
		b = pack.AppendUint(b, uint64(c.RF))
	default:
		b = pack.AppendArrayHeader(b, 3)
		b = pack.AppendUint(b, CommandFormatVersion)
		b = pack.AppendUint(b, uint64(c.Op))
		b = pack.AppendUint(b, c.ID)
	}
	return b, nil
}

// DecodeCommand parses an encoding written by Command.AppendBinary. Like
// DecodeState it validates before reading and accepts exactly the canonical
// encodings of commands that pass Validate; anything else is ErrMalformed or
// ErrUnsupportedVersion.
func DecodeCommand(b []byte) (Command, error) {
	var c Command
	r, err := openEncoding(b, 2, CommandFormatVersion, "command")
	if err != nil {
		return c, err
	}
	if r.n < 2 {
		return c, fmt.Errorf("%w: command of %d fields", ErrMalformed, r.n)
	}
	c.Op = CommandOp(r.small())
	want := 3
	switch c.Op {
	case OpRegister:
		want = 5
	case OpSetRF:
		want = 4
	}
	if r.n != want {
		return Command{}, fmt.Errorf("%w: %s command of %d fields, want %d", ErrMalformed, c.Op, r.n, want)
	}
	switch c.Op {
	case OpRegister:
		c.Member = Member{ID: r.uint(), Addr: r.str(), RESPAddr: r.str()}
	case OpSetRF:
		c.Key = r.str()
		c.RF = r.int()
	case OpSetDefaultRF:
		c.RF = r.int()
	default:
		c.ID = r.uint()
	}
	if err := r.finish(b, c.AppendBinary); err != nil {
		return Command{}, err
	}
	return c, nil
}

// decoder reads the fields of one encoding, remembering the first error.
type decoder struct {
	r   pack.Reader
	n   int // fields of the top-level array
	err error
}

// openEncoding validates b, reads the top-level array header and checks the
// format version.
func openEncoding(b []byte, depth int, version uint64, what string) (*decoder, error) {
	if err := pack.Validate(b, depth); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	d := &decoder{r: pack.NewReader(b)}
	d.n = d.arrayLen()
	if d.n < 1 {
		return nil, fmt.Errorf("%w: %s: empty", ErrMalformed, what)
	}
	if v := d.uint(); d.err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, what, d.err)
	} else if v != version {
		return nil, fmt.Errorf("%w: %s version %d", ErrUnsupportedVersion, what, v)
	}
	return d, nil
}

func (d *decoder) fail(err error) {
	if d.err == nil && err != nil {
		d.err = err
	}
}

func (d *decoder) arrayLen() int {
	n, err := d.r.ArrayLen()
	d.fail(err)
	return n
}

// fields reads an array header that must announce n elements.
func (d *decoder) fields(n int) {
	if m := d.arrayLen(); d.err == nil && m != n {
		d.fail(fmt.Errorf("array of %d elements, want %d", m, n))
	}
}

func (d *decoder) uint() uint64 {
	v, err := d.r.Uint()
	d.fail(err)
	return v
}

// int reads an unsigned integer that must fit in [0, MaxRF]; a larger one
// is recorded as -1, which validation then refuses.
func (d *decoder) int() int {
	if v := d.uint(); v <= MaxRF {
		return int(v)
	}
	return -1
}

// small reads an unsigned integer that must fit in a byte; a larger one is
// recorded as 0, which no enumeration uses.
func (d *decoder) small() uint8 {
	if v := d.uint(); v <= 0xff {
		return uint8(v)
	}
	return 0
}

func (d *decoder) str() string {
	v, err := d.r.String()
	d.fail(err)
	return v
}

// finish checks that the whole input was read and that it is the canonical
// encoding of the decoded value, which encode re-creates (and validates).
func (d *decoder) finish(b []byte, encode func([]byte) ([]byte, error)) error {
	if d.err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, d.err)
	}
	if d.r.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, d.r.Len())
	}
	enc, err := encode(make([]byte, 0, len(b)))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if !bytes.Equal(enc, b) {
		return fmt.Errorf("%w: not the canonical encoding", ErrMalformed)
	}
	return nil
}
