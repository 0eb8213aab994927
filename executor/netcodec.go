package executor

import (
	"fmt"
	"math"
	"time"

	"github.com/trellisdb/trellis/consistency"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// Encodings of what the Network carries between processes (wire ops
// OpExTrigger to OpExReport). Each is a msgpack array that starts with the
// format version; decoders bound every count before they allocate and
// refuse trailing bytes. Byte slices of a decoded value alias its input.

// Bounds of the network encodings.
const (
	// MaxReportKeys bounds the cached keys one report names.
	MaxReportKeys = 1 << 16
	// maxNatives bounds the native function names one report lists.
	maxNatives = 4096
)

// AppendBinary appends the trigger's encoding: [format, call id, attempt,
// bin: DAG, bin: call, [function, executor, ...], function, [arg...],
// [predecessor, result, ...], result key, reply to, deadline (Unix ns, 0 for
// none), [key, version, ...] (the snapshot)].
func (t *Trigger) AppendBinary(b []byte) []byte {
	b = pack.AppendArrayHeader(b, 13)
	b = pack.AppendUint(b, formatV1)
	b = pack.AppendUint(b, t.CallID)
	b = pack.AppendUint(b, uint64(t.Attempt))
	b = appendNested(b, t.DAG.AppendBinary)
	b = appendNested(b, t.Call.AppendBinary)
	b = pack.AppendArrayHeader(b, 2*len(t.Schedule))
	for f, a := range t.Schedule {
		b = pack.AppendString(pack.AppendString(b, f), a)
	}
	b = pack.AppendString(b, t.Fn)
	b = AppendArgs(b, t.Args)
	b = pack.AppendArrayHeader(b, 2*len(t.Inputs))
	for f, v := range t.Inputs {
		b = pack.AppendBytes(pack.AppendString(b, f), v)
	}
	b = pack.AppendString(b, t.ResultKey)
	b = pack.AppendString(b, t.ReplyTo)
	b = pack.AppendInt(b, unixNano(t.Deadline))
	return consistency.AppendVersions(b, t.Snapshot)
}

// appendNested appends what enc appends as one bin value.
func appendNested(b []byte, enc func([]byte) []byte) []byte {
	inner := enc(nil)
	return pack.AppendBytes(b, inner)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// DecodeTrigger decodes a trigger.
func DecodeTrigger(b []byte) (*Trigger, error) {
	rd := pack.NewReader(b)
	if err := header(&rd, 13, "trigger"); err != nil {
		return nil, err
	}
	t := &Trigger{}
	t.CallID, _ = rd.Uint()
	attempt, _ := rd.Uint()
	dagEnc, _ := rd.Bytes()
	callEnc, err := rd.Bytes()
	if err != nil || attempt > math.MaxUint32 {
		return nil, fmt.Errorf("%w: trigger header: %v", wire.ErrBadRequest, err)
	}
	t.Attempt = uint32(attempt)
	d, err := DecodeDAG(dagEnc)
	if err != nil {
		return nil, err
	}
	call, err := DecodeCall(callEnc)
	if err != nil {
		return nil, err
	}
	t.DAG, t.Call = &d, &call
	sched, err := readStrings(&rd, 2*MaxDAGFunctions, "schedule")
	if err != nil {
		return nil, err
	}
	if len(sched)%2 != 0 {
		return nil, fmt.Errorf("%w: trigger schedule: odd number of names", wire.ErrBadRequest)
	}
	t.Schedule = make(map[string]string, len(sched)/2)
	for i := 0; i < len(sched); i += 2 {
		t.Schedule[sched[i]] = sched[i+1]
	}
	if t.Fn, err = rd.String(); err != nil {
		return nil, fmt.Errorf("%w: trigger function: %w", wire.ErrBadRequest, err)
	}
	if t.Args, err = decodeArgs(&rd); err != nil {
		return nil, err
	}
	n, err := rd.ArrayLen()
	if err != nil || n%2 != 0 || n > 2*MaxDAGFunctions {
		return nil, fmt.Errorf("%w: trigger inputs: want an even list of at most %d elements", wire.ErrBadRequest, 2*MaxDAGFunctions)
	}
	if n > 0 {
		t.Inputs = make(map[string][]byte, n/2)
	}
	for range n / 2 {
		f, _ := rd.String()
		v, err := rd.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: trigger input: %w", wire.ErrBadRequest, err)
		}
		t.Inputs[f] = v
	}
	t.ResultKey, _ = rd.String()
	t.ReplyTo, _ = rd.String()
	deadline, err := rd.Int()
	if err != nil {
		return nil, fmt.Errorf("%w: trigger: %w", wire.ErrBadRequest, err)
	}
	t.Deadline = fromUnixNano(deadline)
	if t.Snapshot, err = consistency.ReadVersions(&rd); err != nil {
		return nil, err
	}
	return t, trailing(&rd, "trigger")
}

// AppendBinary appends the result's encoding: [format, call id, attempt,
// value (bin, or nil for none), code, message, executor, failed].
func (r *Result) AppendBinary(b []byte) []byte {
	b = pack.AppendArrayHeader(b, 8)
	b = pack.AppendUint(b, formatV1)
	b = pack.AppendUint(b, r.CallID)
	b = pack.AppendUint(b, uint64(r.Attempt))
	if r.Value == nil {
		b = pack.AppendNil(b)
	} else {
		b = pack.AppendBytes(b, r.Value)
	}
	b = pack.AppendUint(b, uint64(r.Code))
	b = pack.AppendString(b, r.Msg)
	b = pack.AppendString(b, r.Executor)
	return pack.AppendString(b, r.Failed)
}

// DecodeResult decodes a result.
func DecodeResult(b []byte) (*Result, error) {
	rd := pack.NewReader(b)
	if err := header(&rd, 8, "result"); err != nil {
		return nil, err
	}
	r := &Result{}
	r.CallID, _ = rd.Uint()
	attempt, _ := rd.Uint()
	if !rd.Nil() {
		v, _ := rd.Bytes()
		r.Value = nonNil(v)
	}
	code, _ := rd.Uint()
	r.Msg, _ = rd.String()
	r.Executor, _ = rd.String()
	failed, err := rd.String()
	if err != nil || attempt > math.MaxUint32 || code > math.MaxUint8 {
		return nil, fmt.Errorf("%w: result: %v", wire.ErrBadRequest, err)
	}
	r.Attempt, r.Code, r.Failed = uint32(attempt), wire.Code(code), failed
	return r, trailing(&rd, "result")
}

// nonNil keeps an empty value distinct from no value.
func nonNil(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return v
}

// AppendBinary appends the message's encoding: [format, call id, attempt,
// to, body, deadline (Unix ns)].
func (m *Message) AppendBinary(b []byte) []byte {
	b = pack.AppendArrayHeader(b, 6)
	b = pack.AppendUint(b, formatV1)
	b = pack.AppendUint(b, m.CallID)
	b = pack.AppendUint(b, uint64(m.Attempt))
	b = pack.AppendString(b, m.To)
	b = pack.AppendBytes(b, m.Body)
	return pack.AppendInt(b, unixNano(m.Deadline))
}

// DecodeMessage decodes a message.
func DecodeMessage(b []byte) (*Message, error) {
	rd := pack.NewReader(b)
	if err := header(&rd, 6, "message"); err != nil {
		return nil, err
	}
	m := &Message{}
	m.CallID, _ = rd.Uint()
	attempt, _ := rd.Uint()
	m.To, _ = rd.String()
	body, _ := rd.Bytes()
	deadline, err := rd.Int()
	if err != nil || attempt > math.MaxUint32 {
		return nil, fmt.Errorf("%w: message: %v", wire.ErrBadRequest, err)
	}
	m.Attempt, m.Body, m.Deadline = uint32(attempt), nonNil(body), fromUnixNano(deadline)
	return m, trailing(&rd, "message")
}

// AppendBinary appends the report's encoding: [format, address, load,
// [key...], [native...]].
func (r *Report) AppendBinary(b []byte) []byte {
	b = pack.AppendArrayHeader(b, 5)
	b = pack.AppendUint(b, formatV1)
	b = pack.AppendString(b, r.Addr)
	b = pack.AppendFloat(b, r.Load)
	b = pack.AppendArrayHeader(b, len(r.Keys))
	for _, k := range r.Keys {
		b = pack.AppendString(b, k)
	}
	b = pack.AppendArrayHeader(b, len(r.Natives))
	for _, n := range r.Natives {
		b = pack.AppendString(b, n)
	}
	return b
}

// DecodeReport decodes a report.
func DecodeReport(b []byte) (*Report, error) {
	rd := pack.NewReader(b)
	if err := header(&rd, 5, "report"); err != nil {
		return nil, err
	}
	r := &Report{}
	r.Addr, _ = rd.String()
	load, err := rd.Float()
	if err != nil || math.IsNaN(load) || load < 0 || load > 1e6 {
		return nil, fmt.Errorf("%w: report load: %v", wire.ErrBadRequest, err)
	}
	r.Load = load
	if r.Keys, err = readStrings(&rd, MaxReportKeys, "report keys"); err != nil {
		return nil, err
	}
	if r.Natives, err = readStrings(&rd, maxNatives, "report natives"); err != nil {
		return nil, err
	}
	return r, trailing(&rd, "report")
}
