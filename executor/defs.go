package executor

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// The reserved namespace: function and DAG definitions live in the KVS
// under keys that start with Reserved. Storage nodes refuse ordinary writes
// to them (kvs.ServerConfig.Reserved); coordinators write them with the
// cluster's system token, and a running function cannot write them at all.
const Reserved = "_trellis/"

// NativePrefix starts the name of a native Go function of an executor's
// registry in a DAG (native/increment). Registered WebAssembly functions
// have names without a slash, so the two never collide.
const NativePrefix = "native/"

// IsReserved reports whether key lies in the reserved namespace.
func IsReserved(key []byte) bool { return bytes.HasPrefix(key, []byte(Reserved)) }

// FunctionKey is the key of function name's record.
func FunctionKey(name string) []byte { return []byte(Reserved + "fn/" + name) }

// DAGKey is the key of DAG name's definition.
func DAGKey(name string) []byte { return []byte(Reserved + "dag/" + name) }

// The index keys: OR-sets of the registered names.
var (
	functionIndexKey = []byte(Reserved + "fns")
	dagIndexKey      = []byte(Reserved + "dags")
)

// Errors of registration and calls. They wrap the wire sentinel of the code
// a server answers them with, so a client sees errors.Is(err,
// wire.ErrNotFound) and so on, and the more precise sentinel on this side.
var (
	ErrFunctionNotFound = fmt.Errorf("%w: function", wire.ErrNotFound)
	ErrDAGNotFound      = fmt.Errorf("%w: DAG", wire.ErrNotFound)
	ErrInvalidName      = fmt.Errorf("%w: invalid name", wire.ErrBadRequest)
	ErrInvalidDAG       = fmt.Errorf("%w: invalid DAG", wire.ErrBadRequest)
	ErrBadArgs          = fmt.Errorf("%w: bad call arguments", wire.ErrBadRequest)
	ErrReserved         = fmt.Errorf("%w: the %s namespace is reserved for function and DAG definitions", wire.ErrUnauthorized, Reserved)
)

// Limits on definitions. They bound what a decoder accepts before it
// allocates.
const (
	MaxNameLen      = 64
	MaxDAGFunctions = 64
	MaxArgs         = 32
)

// ValidName checks a function or DAG name: 1 to MaxNameLen characters of
// [A-Za-z0-9_.-]. (Native function references add the NativePrefix.)
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen {
		return fmt.Errorf("%w %q: 1 to %d characters", ErrInvalidName, name, MaxNameLen)
	}
	for _, c := range []byte(name) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("%w %q: only letters, digits, '_', '.' and '-'", ErrInvalidName, name)
		}
	}
	return nil
}

// validRef checks a function reference in a DAG: a registered name or
// NativePrefix plus a name.
func validRef(ref string) error { return ValidName(strings.TrimPrefix(ref, NativePrefix)) }

// formatV1 is the format version of every encoding in this file; a reader
// refuses other versions.
const formatV1 = 1

// Function is a registered WebAssembly function.
type Function struct {
	Name string
	Code []byte   // the module's bytes
	Hash [32]byte // SHA-256 of Code: executors key compiled modules by it
}

// NewFunction returns the record of a function with the given code.
func NewFunction(name string, code []byte) Function {
	return Function{Name: name, Code: code, Hash: sha256.Sum256(code)}
}

// AppendBinary appends the record's encoding: [format, name, code, hash].
func (f *Function) AppendBinary(b []byte) []byte {
	b = pack.AppendArrayHeader(b, 4)
	b = pack.AppendUint(b, formatV1)
	b = pack.AppendString(b, f.Name)
	b = pack.AppendBytes(b, f.Code)
	return pack.AppendBytes(b, f.Hash[:])
}

// DecodeFunction decodes a function record. The code aliases b.
func DecodeFunction(b []byte) (Function, error) {
	var f Function
	rd := pack.NewReader(b)
	if err := header(&rd, 4, "function"); err != nil {
		return f, err
	}
	name, _ := rd.String()
	f.Code, _ = rd.Bytes()
	h, err := rd.Bytes()
	if err == nil && len(h) != len(f.Hash) {
		err = fmt.Errorf("hash of %d bytes", len(h))
	}
	if err != nil {
		return f, fmt.Errorf("%w: function record: %w", wire.ErrBadRequest, err)
	}
	f.Name = name
	copy(f.Hash[:], h)
	return f, trailing(&rd, "function record")
}

// DAG is a named graph of functions: edges carry a function's result to its
// successors; a DAG has one or more sources (no predecessors) and exactly
// one sink (no successors), whose result is the call's.
type DAG struct {
	Name      string
	Functions []string    // registered names, or NativePrefix + a native name
	Edges     [][2]string // from, to
}

// Validate checks the DAG's shape: valid names, each function once, edges
// between its functions and none twice, at least one function, no cycle,
// one sink, every function connected to the sink. exists, if not nil,
// reports whether a function reference names a function that exists.
func (d *DAG) Validate(exists func(ref string) bool) error {
	if err := ValidName(d.Name); err != nil {
		return err
	}
	if len(d.Functions) == 0 || len(d.Functions) > MaxDAGFunctions {
		return fmt.Errorf("%w %q: 1 to %d functions, has %d", ErrInvalidDAG, d.Name, MaxDAGFunctions, len(d.Functions))
	}
	seen := make(map[string]bool, len(d.Functions))
	for _, f := range d.Functions {
		if err := validRef(f); err != nil {
			return err
		}
		if seen[f] {
			return fmt.Errorf("%w %q: function %s listed twice", ErrInvalidDAG, d.Name, f)
		}
		seen[f] = true
	}
	edges := make(map[[2]string]bool, len(d.Edges))
	for _, e := range d.Edges {
		if !seen[e[0]] || !seen[e[1]] {
			return fmt.Errorf("%w %q: edge %s→%s names a function the DAG does not list", ErrInvalidDAG, d.Name, e[0], e[1])
		}
		if e[0] == e[1] {
			return fmt.Errorf("%w %q: edge %s→%s is a cycle", ErrInvalidDAG, d.Name, e[0], e[1])
		}
		if edges[e] {
			return fmt.Errorf("%w %q: edge %s→%s given twice", ErrInvalidDAG, d.Name, e[0], e[1])
		}
		edges[e] = true
	}
	if _, err := d.order(); err != nil {
		return err
	}
	sinks := d.sinks()
	if len(sinks) != 1 {
		return fmt.Errorf("%w %q: a DAG has exactly one sink (a function without successors), this one has %d: %s",
			ErrInvalidDAG, d.Name, len(sinks), strings.Join(sinks, ", "))
	}
	if exists != nil {
		for _, f := range d.Functions {
			if !exists(f) {
				return fmt.Errorf("%w %q: function %s does not exist (register it first)", ErrInvalidDAG, d.Name, f)
			}
		}
	}
	return nil
}

// order returns the functions in a topological order, or an error naming a
// cycle.
func (d *DAG) order() ([]string, error) {
	indeg := make(map[string]int, len(d.Functions))
	for _, e := range d.Edges {
		indeg[e[1]]++
	}
	var ready, out []string
	for _, f := range d.Functions {
		if indeg[f] == 0 {
			ready = append(ready, f)
		}
	}
	for len(ready) > 0 {
		f := ready[0]
		ready = ready[1:]
		out = append(out, f)
		for _, s := range d.Succs(f) {
			if indeg[s]--; indeg[s] == 0 {
				ready = append(ready, s)
			}
		}
	}
	if len(out) != len(d.Functions) {
		var cyc []string
		for _, f := range d.Functions {
			if indeg[f] > 0 {
				cyc = append(cyc, f)
			}
		}
		return nil, fmt.Errorf("%w %q: a cycle through %s", ErrInvalidDAG, d.Name, strings.Join(cyc, ", "))
	}
	return out, nil
}

func (d *DAG) sinks() []string {
	var out []string
	for _, f := range d.Functions {
		if len(d.Succs(f)) == 0 {
			out = append(out, f)
		}
	}
	return out
}

// Sink returns the DAG's sink (the DAG must be valid).
func (d *DAG) Sink() string { return d.sinks()[0] }

// Sources returns the functions without predecessors, in listed order.
func (d *DAG) Sources() []string {
	var out []string
	for _, f := range d.Functions {
		if len(d.Preds(f)) == 0 {
			out = append(out, f)
		}
	}
	return out
}

// Preds returns fn's predecessors in edge order: the order in which their
// results follow fn's own arguments.
func (d *DAG) Preds(fn string) []string {
	var out []string
	for _, e := range d.Edges {
		if e[1] == fn {
			out = append(out, e[0])
		}
	}
	return out
}

// Succs returns fn's successors in edge order.
func (d *DAG) Succs(fn string) []string {
	var out []string
	for _, e := range d.Edges {
		if e[0] == fn {
			out = append(out, e[1])
		}
	}
	return out
}

// Chain returns the DAG that runs fns one after the other, each getting
// the previous one's result.
func Chain(name string, fns ...string) DAG {
	d := DAG{Name: name, Functions: fns}
	for i := 1; i < len(fns); i++ {
		d.Edges = append(d.Edges, [2]string{fns[i-1], fns[i]})
	}
	return d
}

// AppendBinary appends the DAG's encoding: [format, name, [function...],
// [from, to, from, to, ...]].
func (d *DAG) AppendBinary(b []byte) []byte {
	b = pack.AppendArrayHeader(b, 4)
	b = pack.AppendUint(b, formatV1)
	b = pack.AppendString(b, d.Name)
	b = pack.AppendArrayHeader(b, len(d.Functions))
	for _, f := range d.Functions {
		b = pack.AppendString(b, f)
	}
	b = pack.AppendArrayHeader(b, 2*len(d.Edges))
	for _, e := range d.Edges {
		b = pack.AppendString(b, e[0])
		b = pack.AppendString(b, e[1])
	}
	return b
}

// DecodeDAG decodes a DAG. It checks the encoding, not the shape
// (Validate does).
func DecodeDAG(b []byte) (DAG, error) {
	var d DAG
	rd := pack.NewReader(b)
	if err := header(&rd, 4, "DAG"); err != nil {
		return d, err
	}
	var err error
	if d.Name, err = rd.String(); err != nil {
		return d, fmt.Errorf("%w: DAG name: %w", wire.ErrBadRequest, err)
	}
	if d.Functions, err = readStrings(&rd, MaxDAGFunctions, "functions"); err != nil {
		return d, err
	}
	ends, err := readStrings(&rd, 2*MaxDAGFunctions*MaxDAGFunctions, "edges")
	if err != nil {
		return d, err
	}
	if len(ends)%2 != 0 {
		return d, fmt.Errorf("%w: DAG edges: odd number of ends", wire.ErrBadRequest)
	}
	for i := 0; i < len(ends); i += 2 {
		d.Edges = append(d.Edges, [2]string{ends[i], ends[i+1]})
	}
	return d, trailing(&rd, "DAG")
}

// Arg is one argument of a function in a call: a value, or a reference to
// a KVS key whose value the executor reads through its cache.
type Arg struct {
	Ref   bool   // Value is a key to read
	Value []byte // the value, or the key
}

// Value returns a value argument.
func Value(v []byte) Arg { return Arg{Value: v} }

// Ref returns an argument that the executor resolves by reading key.
func Ref(key string) Arg { return Arg{Ref: true, Value: []byte(key)} }

// Call is how a caller wants a DAG run.
type Call struct {
	// Args gives each function its arguments (before its predecessors'
	// results). The entry "" goes to every source function that has no
	// entry of its own.
	Args map[string][]Arg
	// ResultKey, if set, makes the sink's executor store the result under
	// this key (an LWW register) instead of returning it.
	ResultKey string
	// Consistency is the session guarantee (package consistency): "" or
	// "lww", or "repeatable-read".
	Consistency string
	// Ack is the acknowledgement the functions' writes (and the result
	// key's) wait for before the call goes on: wire.AckLocal,
	// AckQuorum, AckDurable; AckDefault is the storage nodes' default.
	Ack wire.Ack
}

// argsFor returns fn's arguments in c.
func (c *Call) argsFor(d *DAG, fn string) []Arg {
	if a, ok := c.Args[fn]; ok {
		return a
	}
	if len(d.Preds(fn)) == 0 {
		return c.Args[""]
	}
	return nil
}

// refs returns the keys c references, per function.
func (c *Call) refs(d *DAG) map[string][]string {
	out := make(map[string][]string)
	for _, f := range d.Functions {
		for _, a := range c.argsFor(d, f) {
			if a.Ref {
				out[f] = append(out[f], string(a.Value))
			}
		}
	}
	return out
}

// AppendBinary appends the call's encoding: [format, [function, [arg...],
// ...], result key, consistency, ack]. An argument is a bin whose first
// byte is 0 for a value and 1 for a key reference. (A reader also takes
// the encoding without the ack, which earlier versions wrote.)
func (c *Call) AppendBinary(b []byte) []byte {
	b = pack.AppendArrayHeader(b, 5)
	b = pack.AppendUint(b, formatV1)
	names := make([]string, 0, len(c.Args))
	for f := range c.Args {
		names = append(names, f)
	}
	sort.Strings(names)
	b = pack.AppendArrayHeader(b, 2*len(names))
	for _, f := range names {
		b = pack.AppendString(b, f)
		b = AppendArgs(b, c.Args[f])
	}
	b = pack.AppendString(b, c.ResultKey)
	b = pack.AppendString(b, c.Consistency)
	return pack.AppendUint(b, uint64(c.Ack))
}

// AppendArgs appends an array of arguments.
func AppendArgs(b []byte, args []Arg) []byte {
	b = pack.AppendArrayHeader(b, len(args))
	for _, a := range args {
		b = pack.AppendBinHeader(b, 1+len(a.Value))
		b = append(b, btoi(a.Ref))
		b = append(b, a.Value...)
	}
	return b
}

// EncodeArg returns one argument's encoding as it travels in an OpFnCall's
// argument list.
func EncodeArg(a Arg) []byte { return append([]byte{btoi(a.Ref)}, a.Value...) }

// DecodeArg decodes an EncodeArg encoding. The value aliases b.
func DecodeArg(b []byte) (Arg, error) {
	if len(b) == 0 || b[0] > 1 {
		return Arg{}, fmt.Errorf("%w: an argument starts with 0 (value) or 1 (key reference)", ErrBadArgs)
	}
	return Arg{Ref: b[0] == 1, Value: b[1:]}, nil
}

func btoi(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// DecodeCall decodes a call. Values alias b.
func DecodeCall(b []byte) (Call, error) {
	var c Call
	rd := pack.NewReader(b)
	elems, err := rd.ArrayLen()
	if err != nil || (elems != 4 && elems != 5) {
		return c, fmt.Errorf("%w: call: want an array of 5 elements", wire.ErrBadRequest)
	}
	if v, err := rd.Uint(); err != nil || v != formatV1 {
		return c, fmt.Errorf("%w: call: unknown format version", wire.ErrBadRequest)
	}
	n, err := rd.ArrayLen()
	if err != nil || n%2 != 0 || n > 2*(MaxDAGFunctions+1) {
		return c, fmt.Errorf("%w: call arguments: want an even list of at most %d elements", ErrBadArgs, 2*(MaxDAGFunctions+1))
	}
	if n > 0 {
		c.Args = make(map[string][]Arg, n/2)
	}
	for range n / 2 {
		f, err := rd.String()
		if err != nil {
			return c, fmt.Errorf("%w: function name: %w", ErrBadArgs, err)
		}
		if c.Args[f], err = decodeArgs(&rd); err != nil {
			return c, err
		}
	}
	if c.ResultKey, err = rd.String(); err == nil {
		c.Consistency, err = rd.String()
	}
	if err == nil && elems == 5 {
		var ack uint64
		if ack, err = rd.Uint(); err == nil && ack > uint64(wire.AckDurable) {
			err = fmt.Errorf("unknown ack level %d", ack)
		}
		c.Ack = wire.Ack(ack)
	}
	if err != nil {
		return c, fmt.Errorf("%w: %w", ErrBadArgs, err)
	}
	return c, trailing(&rd, "call")
}

func decodeArgs(rd *pack.Reader) ([]Arg, error) {
	n, err := rd.ArrayLen()
	if err != nil || n > MaxArgs {
		return nil, fmt.Errorf("%w: at most %d arguments per function", ErrBadArgs, MaxArgs)
	}
	args := make([]Arg, 0, n)
	for range n {
		b, err := rd.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadArgs, err)
		}
		a, err := DecodeArg(b)
		if err != nil {
			return nil, err
		}
		args = append(args, a)
	}
	return args, nil
}

// header reads an array header of n elements and a supported format.
func header(rd *pack.Reader, n int, what string) error {
	got, err := rd.ArrayLen()
	if err != nil || got != n {
		return fmt.Errorf("%w: %s: want an array of %d elements", wire.ErrBadRequest, what, n)
	}
	v, err := rd.Uint()
	if err != nil || v != formatV1 {
		return fmt.Errorf("%w: %s: unknown format version", wire.ErrBadRequest, what)
	}
	return nil
}

func trailing(rd *pack.Reader, what string) error {
	if rd.Len() != 0 {
		return fmt.Errorf("%w: %d bytes after the %s", wire.ErrBadRequest, rd.Len(), what)
	}
	return nil
}

func readStrings(rd *pack.Reader, limit int, what string) ([]string, error) {
	n, err := rd.ArrayLen()
	if err != nil || n > limit {
		return nil, fmt.Errorf("%w: %s: want an array of at most %d names", wire.ErrBadRequest, what, limit)
	}
	out := make([]string, 0, n)
	for range n {
		s, err := rd.String()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", wire.ErrBadRequest, what, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// sortedNames returns a sorted copy of names without duplicates.
func sortedNames(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}

var errNoExecutor = errors.New("no executor available")
