package executor

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/wire"
)

func sampleTrigger() *Trigger {
	d := Chain("chain", "increment", "native/square")
	call := Call{Args: map[string][]Arg{"": {Value([]byte("3"))}, "native/square": {Ref("k")}}, ResultKey: "out"}
	return &Trigger{
		CallID: 7, Attempt: 2, DAG: &d, Call: &call,
		Schedule: map[string]string{"increment": "127.0.0.1:1", "native/square": "127.0.0.1:2"},
		Fn:       "native/square", Args: []Arg{Ref("k")},
		Inputs:    map[string][]byte{"increment": []byte("4")},
		ResultKey: "out", ReplyTo: "127.0.0.1:3", Deadline: time.Unix(0, 1_700_000_000_123_456_789),
	}
}

func TestNetworkEncodingsRoundTrip(t *testing.T) {
	tr := sampleTrigger()
	got, err := DecodeTrigger(tr.AppendBinary(nil))
	require.NoError(t, err)
	require.True(t, tr.Deadline.Equal(got.Deadline))
	got.Deadline = tr.Deadline
	require.Equal(t, tr, got)

	for _, r := range []*Result{
		{CallID: 1, Attempt: 3, Value: []byte("16"), Executor: "e1"},
		{CallID: 2, Value: []byte{}, Executor: "e1"},
		{CallID: 3, Code: wire.CodeUnavailable, Msg: "executor e2 failed", Executor: "e1", Failed: "e2"},
		{CallID: 4}, // no value: the result went to a result key
	} {
		got, err := DecodeResult(r.AppendBinary(nil))
		require.NoError(t, err)
		require.Equal(t, r, got)
	}

	m := &Message{CallID: 9, Attempt: 1, To: "square", Body: []byte("hi"), Deadline: time.Unix(5, 0)}
	gm, err := DecodeMessage(m.AppendBinary(nil))
	require.NoError(t, err)
	require.True(t, m.Deadline.Equal(gm.Deadline))
	gm.Deadline = m.Deadline
	require.Equal(t, m, gm)

	rep := &Report{Addr: "127.0.0.1:4", Load: 0.25, Keys: []string{"a", "b"}, Natives: []string{"native/increment"}}
	gr, err := DecodeReport(rep.AppendBinary(nil))
	require.NoError(t, err)
	require.Equal(t, rep, gr)
}

func TestNetworkEncodingsRefuseGarbage(t *testing.T) {
	enc := sampleTrigger().AppendBinary(nil)
	for i := range len(enc) - 1 {
		_, err := DecodeTrigger(enc[:i])
		require.ErrorIs(t, err, wire.ErrBadRequest, "prefix of %d bytes", i)
	}
	_, err := DecodeTrigger(append(enc, 0))
	require.ErrorIs(t, err, wire.ErrBadRequest, "trailing byte")
	_, err = DecodeReport((&Report{Addr: "a", Load: -1}).AppendBinary(nil))
	require.ErrorIs(t, err, wire.ErrBadRequest, "negative load")
}

func FuzzDecodeTrigger(f *testing.F) {
	f.Add(sampleTrigger().AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeTrigger(b)
		if err != nil {
			return
		}
		again, err := DecodeTrigger(got.AppendBinary(nil))
		require.NoError(t, err)
		require.Equal(t, got.Fn, again.Fn)
		require.Equal(t, got.Schedule, again.Schedule)
		require.Equal(t, got.Inputs, again.Inputs)
	})
}

func FuzzDecodeResult(f *testing.F) {
	f.Add((&Result{CallID: 1, Value: []byte("16"), Executor: "e"}).AppendBinary(nil))
	f.Add((&Result{CallID: 1, Code: wire.CodeTimeout, Msg: "late"}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeResult(b)
		if err != nil {
			return
		}
		again, err := DecodeResult(got.AppendBinary(nil))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

func FuzzDecodeMessage(f *testing.F) {
	f.Add((&Message{CallID: 1, To: "f", Body: []byte("x"), Deadline: time.Unix(1, 0)}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeMessage(b)
		if err != nil {
			return
		}
		again, err := DecodeMessage(got.AppendBinary(nil))
		require.NoError(t, err)
		require.Equal(t, got.Body, again.Body)
		require.True(t, got.Deadline.Equal(again.Deadline))
	})
}

func FuzzDecodeReport(f *testing.F) {
	f.Add((&Report{Addr: "a", Load: 0.5, Keys: []string{"k"}, Natives: []string{"native/square"}}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := DecodeReport(b)
		if err != nil {
			return
		}
		again, err := DecodeReport(got.AppendBinary(nil))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}
