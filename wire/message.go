package wire

import (
	"fmt"

	"github.com/trellisdb/trellis/pack"
)

// Op is a request's operation. The values are part of the protocol.
type Op uint8

// Operations. The comment gives each one's arguments and its result.
const (
	OpHello      Op = 1  // [version uint, client str] → map of server facts
	OpPing       Op = 2  // [] or [bytes] → nil, or the bytes echoed
	OpGet        Op = 3  // [key] → bin: the stored lattice's encoding
	OpPut        Op = 4  // [key, bin: lattice encoding] → nil; merges into the stored value
	OpDelete     Op = 5  // [key] → int: 1 if the key held a value, else 0
	OpGetMany    Op = 6  // [[key...]] → items (value or not found per key)
	OpPutMany    Op = 7  // [[key...], [encoding...]] → items (nil or error per key)
	OpSet        Op = 8  // [key, bytes] → nil; LWW register write stamped by the server
	OpSetAdd     Op = 9  // [key, [member...]] → int: members newly added (observed-remove set)
	OpSetRemove  Op = 10 // [key, [member...]] → int: members removed
	OpCounterAdd Op = 11 // [key, int delta] → int: the counter's new value (PN-counter)
	OpDeleteMany Op = 12 // [[key...]] → int: how many keys held a value
	OpStats      Op = 13 // [] → map of node and per-shard statistics

	// Operations between storage nodes (docs/cluster-design.md).
	OpReplicate Op = 32 // [key, cell] → int: 1 if the cell changed the key; honours AckDurable
	OpGossip    Op = 33 // [[key...], [cell...]] → nil; merges every cell
	OpDigest    Op = 34 // [requester id, bucket bits] → bin: 2^bits big-endian uint64 digests of the keys both nodes replicate
	OpBucket    Op = 35 // [requester id, bucket bits, bucket...] → [[key, cell hash]...] of those buckets (1 to MaxBuckets)
	OpFetch     Op = 36 // [[key...]] → items: each key's cell (not found if absent)
	OpHandoff   Op = 37 // [[key...], [cell...]] → nil: merges every cell, only at the sender's epoch, only keys the receiver replicates

	// Operations of the routing tier (package route).
	OpRing      Op = 40 // [] → bin: the routing state (route.State encoding)
	OpCommand   Op = 41 // [command] → bin: the state after the command
	OpHeartbeat Op = 42 // [member id] → nil
	OpJoin      Op = 43 // [[router id, raft address]] → nil: add a routing node as a Raft voter

	// Functions and DAGs (package executor): served by coordinators, and by
	// `trellis up` on its native port.
	OpFnRegister  Op = 48 // [name, module bytes] → nil: registers (or replaces) a WebAssembly function
	OpFnList      Op = 49 // [] → items: the registered function names, then the native ones
	OpFnCall      Op = 50 // [name, [arg...]] → bin: the function's result
	OpDagRegister Op = 51 // [name, bin: DAG encoding] → nil
	OpDagList     Op = 52 // [] → items: the registered DAG names
	OpDagDelete   Op = 53 // [name] → int: 1 if the DAG existed
	OpDagCall     Op = 54 // [name, bin: call encoding] → bin: the sink's result (nil when stored under a result key)

	// Between coordinators and executors (separate processes). The name is
	// the receiver's address (one process may host several roles); the
	// value is the message's encoding (package executor). Each answers
	// nil once the receiver accepted the message, not once it acted on it.
	OpExTrigger Op = 55 // [receiver, bin: trigger] → nil: run one function of a call
	OpExResult  Op = 56 // [receiver, bin: result] → nil: a call's outcome, to its coordinator
	OpExMessage Op = 57 // [receiver, bin: message] → nil: from one function of a call to another
	OpExReport  Op = 58 // [receiver, bin: report] → nil: an executor's load and cached keys

	// Watching keys (an executor's cache keeping the keys it holds fresh).
	// A connection's watches end with it.
	OpWatch   Op = 59 // [[key...]] → nil: record writes of these keys for this connection
	OpUnwatch Op = 60 // [[key...]] → nil: stop recording them
	OpChanged Op = 61 // [] → items: the watched keys written since the last OpChanged of this connection
)

var opNames = [...]string{
	OpHello: "hello", OpPing: "ping", OpGet: "get", OpPut: "put", OpDelete: "delete",
	OpGetMany: "getmany", OpPutMany: "putmany", OpSet: "set", OpSetAdd: "setadd",
	OpSetRemove: "setremove", OpCounterAdd: "counteradd", OpDeleteMany: "deletemany",
	OpStats: "stats", OpReplicate: "replicate", OpGossip: "gossip", OpDigest: "digest",
	OpBucket: "bucket", OpFetch: "fetch", OpHandoff: "handoff",
	OpRing: "ring", OpCommand: "command", OpHeartbeat: "heartbeat", OpJoin: "join",
	OpFnRegister: "fnregister", OpFnList: "fnlist", OpFnCall: "fncall", OpDagRegister: "dagregister",
	OpDagList: "daglist", OpDagDelete: "dagdelete", OpDagCall: "dagcall",
	OpExTrigger: "extrigger", OpExResult: "exresult", OpExMessage: "exmessage", OpExReport: "exreport",
	OpWatch: "watch", OpUnwatch: "unwatch", OpChanged: "changed",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Known reports whether o is an operation this version defines.
func (o Op) Known() bool { return int(o) < len(opNames) && opNames[o] != "" }

// IsWrite reports whether o changes the store, and so whether the Ack option
// applies to it.
func (o Op) IsWrite() bool {
	switch o {
	case OpPut, OpSet, OpDelete, OpPutMany, OpDeleteMany, OpSetAdd, OpSetRemove, OpCounterAdd,
		OpReplicate, OpGossip, OpHandoff:
		return true
	}
	return false
}

// MaxBuckets is the most anti-entropy buckets one OpBucket request names.
const MaxBuckets = 1024

// IsFunction reports whether o is a function or DAG operation.
func (o Op) IsFunction() bool { return o >= OpFnRegister && o <= OpDagCall }

// IsExec reports whether o is a message between coordinators and
// executors.
func (o Op) IsExec() bool { return o >= OpExTrigger && o <= OpExReport }

// IsWatch reports whether o is a watch operation.
func (o Op) IsWatch() bool { return o >= OpWatch && o <= OpChanged }

// IsPeer reports whether o is an operation between storage nodes.
func (o Op) IsPeer() bool { return o >= OpReplicate && o <= OpHandoff }

// layout is the shape of an operation's arguments.
type layout uint8

const (
	layoutUnknown    layout = iota // not an operation of this version
	layoutNone                     // no arguments, or one optional bytes (ping)
	layoutKey                      // key
	layoutKeyValue                 // key, bytes
	layoutKeys                     // [key...]
	layoutKeysValues               // [key...], [bytes...]
	layoutKeyMembers               // key, [member...]
	layoutKeyInt                   // key, int
	layoutHello                    // uint, str
	layoutUints                    // uints: 1 (heartbeat), 2 (digest), 3 to 2+MaxBuckets (bucket)
)

var layouts = [...]layout{
	OpHello: layoutHello, OpPing: layoutNone, OpGet: layoutKey, OpPut: layoutKeyValue,
	OpDelete: layoutKey, OpGetMany: layoutKeys, OpPutMany: layoutKeysValues,
	OpSet: layoutKeyValue, OpSetAdd: layoutKeyMembers, OpSetRemove: layoutKeyMembers,
	OpCounterAdd: layoutKeyInt, OpDeleteMany: layoutKeys, OpStats: layoutNone,
	OpReplicate: layoutKeyValue, OpGossip: layoutKeysValues, OpDigest: layoutUints,
	OpBucket: layoutUints, OpFetch: layoutKeys, OpHandoff: layoutKeysValues,
	OpRing: layoutNone, OpCommand: layoutNone, OpHeartbeat: layoutUints, OpJoin: layoutKeys,
	OpFnRegister: layoutKeyValue, OpFnList: layoutNone, OpFnCall: layoutKeyMembers,
	OpDagRegister: layoutKeyValue, OpDagList: layoutNone, OpDagDelete: layoutKey, OpDagCall: layoutKeyValue,
	OpExTrigger: layoutKeyValue, OpExResult: layoutKeyValue, OpExMessage: layoutKeyValue, OpExReport: layoutKeyValue,
	OpWatch: layoutKeys, OpUnwatch: layoutKeys, OpChanged: layoutNone,
}

func (o Op) layout() layout {
	if int(o) < len(layouts) {
		return layouts[o]
	}
	return layoutUnknown
}

// Ack is the acknowledgement a write asks for. The values are part of the
// protocol; a single node treats every level as "merged into its store".
type Ack uint8

// Acknowledgement levels.
const (
	AckDefault Ack = 0 // the server's configured default
	AckLocal   Ack = 1 // one replica merged
	AckQuorum  Ack = 2 // W replicas merged
	AckDurable Ack = 3 // W replicas merged and fsynced
)

// Option keys in a request's opts map. Unknown keys are ignored, so newer
// clients can talk to older servers.
const (
	optEpoch = 1
	optAck   = 2
	optToken = 3
)

// Options are per-request settings carried in the opts map.
type Options struct {
	Epoch uint64 // ring epoch the client routed with; 0 = unknown
	Ack   Ack
	// Token, on HELLO, is the cluster's system token: a connection that
	// presents the one the server was given may write the reserved
	// namespace (the definitions a coordinator keeps). Aliases the frame.
	Token []byte
}

// Request is a decoded request. Slices alias the frame it was decoded from.
// A Request can be reused: Decode overwrites every field and keeps the
// capacity of Keys, Values and Members.
type Request struct {
	ID   uint64
	Op   Op
	Opts Options

	Key     []byte   // OpGet, OpPut, OpDelete, OpSet, OpSetAdd, OpSetRemove, OpCounterAdd; the name of OpFn* and OpDag*
	Value   []byte   // OpPut (encoding), OpSet (bytes), OpPing (optional echo), OpHello (client name), OpCommand (command)
	Keys    [][]byte // OpGetMany, OpPutMany, OpDeleteMany
	Values  [][]byte // OpPutMany (encodings, parallel to Keys)
	Members [][]byte // OpSetAdd, OpSetRemove; OpFnCall (arguments)
	Int     int64    // OpCounterAdd (delta), OpHello (protocol version)
	Uints   []uint64 // OpDigest (2), OpBucket (3 to 2+MaxBuckets), OpHeartbeat (1)
}

// Decode decodes a request body. On error the request's fields are
// unspecified except ID, which holds the request id when it could be read (so
// that the server can answer it).
func (r *Request) Decode(body []byte, _ Limits) error {
	keys, values, members, uints := r.Keys[:0], r.Values[:0], r.Members[:0], r.Uints[:0]
	*r = Request{Keys: keys, Values: values, Members: members, Uints: uints}
	// No pack.Validate pass: this decoder never recurses, and pack.Reader
	// checks each size against the bytes that remain before it is used, so
	// nothing here can allocate more than the body's length or nest deeper
	// than one array (a nested value where bytes are expected is a type
	// error). Skip, used for unknown opts, is iterative.
	rd := pack.NewReader(body)
	n, err := rd.ArrayLen()
	if err != nil {
		return fmt.Errorf("%w: request is not an array: %w", ErrBadRequest, err)
	}
	if n < 3 {
		return fmt.Errorf("%w: request has %d elements, want at least 3", ErrBadRequest, n)
	}
	if r.ID, err = rd.Uint(); err != nil {
		return fmt.Errorf("%w: request id: %w", ErrBadRequest, err)
	}
	op, err := rd.Uint()
	if err != nil || op > 255 {
		return fmt.Errorf("%w: bad operation", ErrBadRequest)
	}
	r.Op = Op(op)
	if err := r.Opts.decode(&rd); err != nil {
		return err
	}
	if err := r.decodeArgs(&rd, n-3); err != nil {
		return err
	}
	if rd.Len() != 0 {
		return fmt.Errorf("%w: %d bytes after the request", ErrBadRequest, rd.Len())
	}
	return nil
}

func (o *Options) decode(rd *pack.Reader) error {
	if rd.Nil() {
		return nil
	}
	n, err := rd.MapLen()
	if err != nil {
		return fmt.Errorf("%w: opts: %w", ErrBadRequest, err)
	}
	for range n {
		k, err := rd.Uint()
		if err != nil {
			return fmt.Errorf("%w: opts key: %w", ErrBadRequest, err)
		}
		switch k {
		case optEpoch:
			o.Epoch, err = rd.Uint()
		case optAck:
			var a uint64
			a, err = rd.Uint()
			if err == nil && a > uint64(AckDurable) {
				return fmt.Errorf("%w: unknown ack level %d", ErrBadRequest, a)
			}
			o.Ack = Ack(a)
		case optToken:
			o.Token, err = rd.Bytes()
		default:
			err = rd.Skip()
		}
		if err != nil {
			return fmt.Errorf("%w: opts: %w", ErrBadRequest, err)
		}
	}
	return nil
}

func (r *Request) decodeArgs(rd *pack.Reader, nargs int) error {
	want := func(n int) error {
		if nargs != n {
			return fmt.Errorf("%w: %s takes %d arguments, got %d", ErrBadRequest, r.Op, n, nargs)
		}
		return nil
	}
	var err error
	switch r.Op.layout() {
	case layoutUnknown:
		return fmt.Errorf("%w: unknown operation %d", ErrBadRequest, uint8(r.Op))
	case layoutNone:
		if nargs > 1 {
			return want(0)
		}
		if nargs == 1 {
			r.Value, err = rd.Bytes()
		}
	case layoutKey:
		if err = want(1); err == nil {
			r.Key, err = rd.Bytes()
		}
	case layoutKeyValue:
		if err = want(2); err == nil {
			r.Key, err = rd.Bytes()
			if err == nil {
				r.Value, err = rd.Bytes()
			}
		}
	case layoutKeys:
		if err = want(1); err == nil {
			r.Keys, err = readByteArray(rd, r.Keys)
		}
	case layoutKeysValues:
		if err = want(2); err == nil {
			r.Keys, err = readByteArray(rd, r.Keys)
			if err == nil {
				r.Values, err = readByteArray(rd, r.Values)
			}
			if err == nil && len(r.Keys) != len(r.Values) {
				return fmt.Errorf("%w: %d keys but %d values", ErrBadRequest, len(r.Keys), len(r.Values))
			}
		}
	case layoutKeyMembers:
		if err = want(2); err == nil {
			r.Key, err = rd.Bytes()
			if err == nil {
				r.Members, err = readByteArray(rd, r.Members)
			}
		}
	case layoutKeyInt:
		if err = want(2); err == nil {
			r.Key, err = rd.Bytes()
			if err == nil {
				r.Int, err = rd.Int()
			}
		}
	case layoutUints:
		n := 2
		switch r.Op {
		case OpBucket:
			n = nargs // requester, bits, then one or more buckets
			if nargs < 3 || nargs > 2+MaxBuckets {
				return fmt.Errorf("%w: %s takes 3 to %d arguments, got %d", ErrBadRequest, r.Op, 2+MaxBuckets, nargs)
			}
		case OpHeartbeat:
			n = 1
		}
		if err = want(n); err == nil {
			for range n {
				var u uint64
				if u, err = rd.Uint(); err != nil {
					break
				}
				r.Uints = append(r.Uints, u)
			}
		}
	case layoutHello:
		if err = want(2); err == nil {
			var v uint64
			v, err = rd.Uint()
			r.Int = int64(v & (1<<63 - 1))
			if err == nil {
				r.Value, err = rd.Bytes()
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s arguments: %w", ErrBadRequest, r.Op, err)
	}
	return nil
}

// readByteArray reads an array of bin/str values into dst. The count is
// bounded by the body's size (pack.Reader), so growth of dst is too.
func readByteArray(rd *pack.Reader, dst [][]byte) ([][]byte, error) {
	n, err := rd.ArrayLen()
	if err != nil {
		return dst, err
	}
	dst = dst[:0]
	for range n {
		b, err := rd.Bytes()
		if err != nil {
			return dst, err
		}
		dst = append(dst, b)
	}
	return dst, nil
}

// AppendFrame appends r as a complete frame (header and body). Fields its op
// does not carry are ignored; an unknown op is sent with no arguments.
func (r *Request) AppendFrame(b []byte) []byte {
	b, start := beginFrame(b)
	nargs := 0
	switch r.Op.layout() {
	case layoutNone:
		if r.Value != nil {
			nargs = 1
		}
	case layoutKey, layoutKeys:
		nargs = 1
	case layoutKeyValue, layoutKeysValues, layoutKeyMembers, layoutKeyInt, layoutHello:
		nargs = 2
	case layoutUints:
		nargs = len(r.Uints)
	}
	b = AppendRequestHeader(b, r.ID, r.Op, r.Opts, nargs)
	switch r.Op.layout() {
	case layoutNone:
		if r.Value != nil {
			b = pack.AppendBytes(b, r.Value)
		}
	case layoutKey:
		b = pack.AppendBytes(b, r.Key)
	case layoutKeyValue:
		b = pack.AppendBytes(pack.AppendBytes(b, r.Key), r.Value)
	case layoutKeys:
		b = appendByteArray(b, r.Keys)
	case layoutKeysValues:
		b = appendByteArray(appendByteArray(b, r.Keys), r.Values)
	case layoutKeyMembers:
		b = appendByteArray(pack.AppendBytes(b, r.Key), r.Members)
	case layoutKeyInt:
		b = pack.AppendInt(pack.AppendBytes(b, r.Key), r.Int)
	case layoutHello:
		b = pack.AppendString(pack.AppendUint(b, uint64(r.Int)), string(r.Value))
	case layoutUints:
		for _, u := range r.Uints {
			b = pack.AppendUint(b, u)
		}
	}
	return endFrame(b, start)
}

// AppendRequestHeader appends the body prefix of a request with nargs
// arguments: the array header, id, op and opts. The caller appends the
// arguments (and frames the body).
func AppendRequestHeader(b []byte, id uint64, op Op, opts Options, nargs int) []byte {
	b = pack.AppendArrayHeader(b, 3+nargs)
	b = pack.AppendUint(b, id)
	b = pack.AppendUint(b, uint64(op))
	n := 0
	if opts.Epoch != 0 {
		n++
	}
	if opts.Ack != AckDefault {
		n++
	}
	if opts.Token != nil {
		n++
	}
	b = pack.AppendMapHeader(b, n)
	if opts.Epoch != 0 {
		b = pack.AppendUint(pack.AppendUint(b, optEpoch), opts.Epoch)
	}
	if opts.Ack != AckDefault {
		b = pack.AppendUint(pack.AppendUint(b, optAck), uint64(opts.Ack))
	}
	if opts.Token != nil {
		b = pack.AppendBytes(pack.AppendUint(b, optToken), opts.Token)
	}
	return b
}

func appendByteArray(b []byte, vs [][]byte) []byte {
	b = pack.AppendArrayHeader(b, len(vs))
	for _, v := range vs {
		b = pack.AppendBytes(b, v)
	}
	return b
}
