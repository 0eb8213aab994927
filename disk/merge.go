package disk

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/trellisdb/trellis/lattice"
)

// mergerName names the merge operator, and with it the format of the stored
// values. Pebble records it and refuses to open a store written with another
// one. A change to what a stored value means (a new cell or lattice format
// version that older binaries cannot read) gets a new name.
const mergerName = "trellis.cell.v1"

// poisonTag starts a poisoned value: what the merge operator stores for a key
// when one of its operands is not a cell encoding. No cell encoding starts
// with it (lattice type tags are below 0x40 and the cell tag is 0x40), so a
// poisoned value never decodes; the bytes after it are a message saying what
// was wrong. Poison absorbs every later merge, so the key reads as corrupt
// until it is deleted.
const poisonTag = 0xff

// maxPoisonMsg bounds the message stored in a poisoned value.
const maxPoisonMsg = 256

// maxPooledBuf is the largest buffer a merger keeps when it is recycled.
const maxPooledBuf = 64 << 10

// userKey returns the user key in a Pebble key.
func userKey(k []byte) []byte {
	if len(k) > 0 && k[0] == cellPrefix {
		return k[1:]
	}
	return k
}

func isPoison(v []byte) bool { return len(v) == 0 || v[0] == poisonTag }

// poisonErr returns the error a read of the poisoned value v of key reports.
func poisonErr(key, v []byte) error {
	msg := "empty value"
	if len(v) > 0 {
		msg = string(v[1:])
	}
	return fmt.Errorf("%w: key %q: %s", ErrCorrupt, key, msg)
}

// newMerger returns the cell merge operator. Its mergers are recycled
// through a pool once Pebble is done with their result. It logs, at Warn,
// each operand that does not decode.
func newMerger(log *slog.Logger) *pebble.Merger {
	pool := &sync.Pool{}
	return &pebble.Merger{
		Name: mergerName,
		Merge: func(key, value []byte) (pebble.ValueMerger, error) {
			m, _ := pool.Get().(*cellMerger)
			if m == nil {
				m = &cellMerger{pool: pool, log: log}
			}
			m.key = append(m.key[:0], key...)
			m.add(value)
			return m, nil
		},
	}
}

// Merger states.
const (
	stEmpty  = iota
	stLWW    // every operand so far is a plain LWW encoding; buf holds the greatest
	stCell   // cell holds the join; with one operand, buf holds it as it came
	stPoison // an operand did not decode; poison holds the value to store
)

// cellMerger joins the cell encodings of one key, as lattice.Cell.Merge does.
//
// The join is associative, commutative and idempotent, so the order and
// grouping in which Pebble hands over operands (newer or older, a partial
// stack during a compaction, the result of an earlier partial merge) do not
// matter, and MergeNewer and MergeOlder do the same thing. Finish encodes
// the join whether or not the stack included the key's oldest operand: a
// partial join is itself a cell, and joining it with the older operands later
// gives the same result.
//
// Costs: while every operand is a plain LWW register (a cell without a
// delete epoch holding an LWW is encoded as the LWW), the merger validates
// each with lattice.ParseLWW and keeps the greatest encoding as it is,
// without decoding or allocating. Otherwise operands are decoded as they
// arrive and joined in decoded form, and the result is encoded once, in
// Finish; a lone operand is validated and returned as it came (encodings are
// canonical, so it equals its re-encoding). Mergers and their buffers are
// recycled when Pebble closes the result.
//
// The merger never returns an error: a failure would fail the flush or
// compaction running it, again and again, and stall the store's writes. An
// operand that does not decode (or a panic while joining) poisons the
// result instead (see poisonTag); reads report a poisoned value as
// ErrCorrupt.
type cellMerger struct {
	pool *sync.Pool
	log  *slog.Logger
	key  []byte // the Pebble key, for logs

	state int
	n     int // operands so far

	buf    []byte            // stLWW: the greatest LWW; stCell with n == 1: the operand
	ts     lattice.Timestamp // stLWW: buf's timestamp, writer and value
	writer uint64
	value  []byte

	cell   lattice.Cell // stCell: the join
	out    []byte       // Finish's encoding of cell
	poison []byte
}

func (m *cellMerger) MergeNewer(value []byte) error { m.add(value); return nil }
func (m *cellMerger) MergeOlder(value []byte) error { m.add(value); return nil }

func (m *cellMerger) add(v []byte) {
	if m.state == stPoison {
		return
	}
	m.n++
	defer m.recoverPanic()
	if isPoison(v) {
		m.poison = append([]byte{poisonTag}, v[min(1, len(v)):]...)
		if len(v) == 0 {
			m.poison = append(m.poison, "empty value"...)
		}
		m.state = stPoison
		return
	}
	if v[0] == byte(lattice.TypeLWW) && (m.state == stEmpty || m.state == stLWW) {
		ts, writer, value, err := lattice.ParseLWW(v)
		if err != nil {
			m.setPoison(err)
			return
		}
		if m.state == stLWW && compareLWW(ts, writer, value, m.ts, m.writer, m.value) <= 0 {
			return
		}
		m.buf = append(m.buf[:0], v...)
		m.ts, m.writer, m.value = ts, writer, m.buf[len(v)-len(value):]
		m.state = stLWW
		return
	}
	switch m.state {
	case stEmpty:
		m.buf = append(m.buf[:0], v...) // returned as is if it stays alone
		c, err := lattice.DecodeCell(v)
		if err != nil {
			m.setPoison(err)
			return
		}
		m.cell, m.state = c, stCell
		return
	case stLWW: // the registers so far join a cell
		c, err := lattice.DecodeCell(m.buf)
		if err != nil {
			m.setPoison(err)
			return
		}
		m.cell, m.state = c, stCell
	}
	c, err := lattice.DecodeCell(v)
	if err != nil {
		m.setPoison(err)
		return
	}
	if m.cell.Epoch.Compare(c.Epoch) < 0 {
		m.cell = c // c is a fresh decode: take it rather than clone it
		return
	}
	m.cell.Merge(c)
}

// compareLWW orders LWW registers as lattice.LWW.Compare does: by
// timestamp, writer, then value bytes.
func compareLWW(ts1 lattice.Timestamp, w1 uint64, v1 []byte, ts2 lattice.Timestamp, w2 uint64, v2 []byte) int {
	if c := cmp.Compare(ts1, ts2); c != 0 {
		return c
	}
	if c := cmp.Compare(w1, w2); c != 0 {
		return c
	}
	return bytes.Compare(v1, v2)
}

func (m *cellMerger) setPoison(err error) {
	msg := err.Error()
	if len(msg) > maxPoisonMsg {
		msg = msg[:maxPoisonMsg]
	}
	m.poison = append([]byte{poisonTag}, msg...)
	m.state = stPoison
	if m.log != nil {
		m.log.Warn("disk: a stored cell does not decode; the key reads as corrupt until deleted",
			"key", fmt.Sprintf("%q", userKey(m.key)), "err", err)
	}
}

// recoverPanic turns a panic while joining (a bug in a lattice type) into
// poison rather than a crash of Pebble's background goroutine.
func (m *cellMerger) recoverPanic() {
	if r := recover(); r != nil {
		m.setPoison(fmt.Errorf("panic while merging cells: %v", r))
	}
}

// Finish returns the join of the operands, or the poisoned value. The join
// of a partial stack (includesBase false) is a cell like any other. The
// result is valid until Pebble closes the returned Closer (the merger).
func (m *cellMerger) Finish(bool) ([]byte, io.Closer, error) {
	switch m.state {
	case stLWW:
		return m.buf, m, nil
	case stCell:
		if m.n == 1 {
			return m.buf, m, nil
		}
		if m.encode() {
			return m.out, m, nil
		}
	}
	return m.poison, m, nil
}

// encode encodes the join into out, or poisons the merge.
func (m *cellMerger) encode() (ok bool) {
	defer m.recoverPanic()
	out, err := m.cell.AppendBinary(m.out[:0])
	if err != nil {
		m.setPoison(err)
		return false
	}
	m.out = out
	return true
}

// Close recycles the merger; its result must no longer be used.
func (m *cellMerger) Close() error {
	m.state, m.n, m.cell, m.poison, m.value = stEmpty, 0, lattice.Cell{}, nil, nil
	if cap(m.buf) > maxPooledBuf {
		m.buf = nil
	}
	if cap(m.out) > maxPooledBuf {
		m.out = nil
	}
	m.pool.Put(m)
	return nil
}
