package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// Ping checks that the node answers.
func (c *Client) Ping(ctx context.Context) error {
	cl, err := c.do(ctx, &wire.Request{Op: wire.OpPing})
	if err != nil {
		return err
	}
	cl.release()
	return nil
}

// Get returns key's value. ErrNotFound if the key holds none.
func (c *Client) Get(ctx context.Context, key string) (lattice.Lattice, error) {
	enc, err := c.getEncoded(ctx, key)
	if err != nil {
		return nil, err
	}
	v, err := lattice.Decode(enc)
	if err != nil {
		return nil, fmt.Errorf("trellis: get %q: %w", key, err)
	}
	return v, nil
}

// getEncoded returns a copy of key's encoded value.
func (c *Client) getEncoded(ctx context.Context, key string) ([]byte, error) {
	cl, err := c.do(ctx, &wire.Request{Op: wire.OpGet, Key: []byte(key)})
	if err != nil {
		return nil, err
	}
	defer cl.release()
	b, err := cl.resp.Bytes()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

// Put merges v into key's value. ErrTypeMismatch if the key holds a lattice
// of another type (nothing changes).
func (c *Client) Put(ctx context.Context, key string, v lattice.Lattice) error {
	enc, err := v.AppendBinary(nil)
	if err != nil {
		return err
	}
	return c.nilOp(ctx, &wire.Request{Op: wire.OpPut, Key: []byte(key), Value: enc})
}

// Delete deletes key and reports whether it held a value. The delete wins
// over concurrent writes that did not see it.
func (c *Client) Delete(ctx context.Context, key string) (bool, error) {
	n, err := c.intOp(ctx, &wire.Request{Op: wire.OpDelete, Key: []byte(key)})
	return n == 1, err
}

// Set writes value to key's last-writer-wins register, stamped by the
// server's clock. ErrTypeMismatch if the key holds another lattice type.
func (c *Client) Set(ctx context.Context, key string, value []byte) error {
	return c.nilOp(ctx, &wire.Request{Op: wire.OpSet, Key: []byte(key), Value: value})
}

// GetBytes returns the value of key's last-writer-wins register.
// ErrTypeMismatch if the key holds another lattice type.
func (c *Client) GetBytes(ctx context.Context, key string) ([]byte, error) {
	enc, err := c.getEncoded(ctx, key)
	if err != nil {
		return nil, err
	}
	if len(enc) == 0 || lattice.Type(enc[0]) != lattice.TypeLWW {
		return nil, typeError(key, enc, lattice.TypeLWW)
	}
	_, _, v, err := lattice.ParseLWW(enc)
	if err != nil {
		return nil, fmt.Errorf("trellis: get %q: %w", key, err)
	}
	return v, nil
}

func typeError(key string, enc []byte, want lattice.Type) error {
	have := "an unknown type"
	if len(enc) > 0 {
		have = lattice.Type(enc[0]).String()
	}
	return fmt.Errorf("%w: key %q holds %s, not %s", ErrTypeMismatch, key, have, want)
}

// SetAdd adds members to the observed-remove set at key and returns how many
// were new.
func (c *Client) SetAdd(ctx context.Context, key string, members ...[]byte) (int, error) {
	n, err := c.intOp(ctx, &wire.Request{Op: wire.OpSetAdd, Key: []byte(key), Members: members})
	return int(n), err
}

// SetRemove removes members from the observed-remove set at key and returns
// how many were present. A concurrent add of the same member wins.
func (c *Client) SetRemove(ctx context.Context, key string, members ...[]byte) (int, error) {
	n, err := c.intOp(ctx, &wire.Request{Op: wire.OpSetRemove, Key: []byte(key), Members: members})
	return int(n), err
}

// SetMembers returns the members of the set at key in byte order (an empty
// result for a missing key).
func (c *Client) SetMembers(ctx context.Context, key string) ([][]byte, error) {
	v, err := c.Get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	type elements interface{ Elements() [][]byte }
	s, ok := v.(elements)
	if !ok {
		return nil, fmt.Errorf("%w: key %q holds %s, not a set", ErrTypeMismatch, key, v.Type())
	}
	return s.Elements(), nil
}

// CounterAdd adds delta to the PN-counter at key and returns its new value.
func (c *Client) CounterAdd(ctx context.Context, key string, delta int64) (int64, error) {
	return c.intOp(ctx, &wire.Request{Op: wire.OpCounterAdd, Key: []byte(key), Int: delta})
}

// CounterValue returns the value of the PN-counter at key (0 for a missing
// key).
func (c *Client) CounterValue(ctx context.Context, key string) (int64, error) {
	v, err := c.Get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, err
	}
	ctr, ok := v.(*lattice.Counter)
	if !ok {
		return 0, fmt.Errorf("%w: key %q holds %s, not a counter", ErrTypeMismatch, key, v.Type())
	}
	return ctr.Value(), nil
}

// Result is one key's outcome in a batch call.
type Result struct {
	Value lattice.Lattice // GetMany: the value, nil on error
	Err   error           // ErrNotFound, ErrTypeMismatch, ...
}

// GetMany returns the values of keys in one request, in order.
func (c *Client) GetMany(ctx context.Context, keys ...string) ([]Result, error) {
	req := wire.Request{Op: wire.OpGetMany, Keys: byteKeys(keys)}
	cl, err := c.do(ctx, &req)
	if err != nil {
		return nil, err
	}
	defer cl.release()
	items, err := cl.resp.Items(nil)
	if err != nil {
		return nil, err
	}
	if len(items) != len(keys) {
		return nil, fmt.Errorf("%w: %d results for %d keys", ErrConnLost, len(items), len(keys))
	}
	out := make([]Result, len(items))
	for i, it := range items {
		if out[i].Err = it.Err(); out[i].Err == nil {
			out[i].Value, out[i].Err = lattice.Decode(it.Value)
		}
	}
	return out, nil
}

// PutMany merges values[i] into keys[i] in one request and returns each
// key's error (nil on success).
func (c *Client) PutMany(ctx context.Context, keys []string, values []lattice.Lattice) ([]error, error) {
	if len(keys) != len(values) {
		return nil, fmt.Errorf("%w: %d keys but %d values", ErrBadRequest, len(keys), len(values))
	}
	req := wire.Request{Op: wire.OpPutMany, Keys: byteKeys(keys), Values: make([][]byte, len(values))}
	for i, v := range values {
		enc, err := v.AppendBinary(nil)
		if err != nil {
			return nil, err
		}
		req.Values[i] = enc
	}
	cl, err := c.do(ctx, &req)
	if err != nil {
		return nil, err
	}
	defer cl.release()
	items, err := cl.resp.Items(nil)
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(items))
	for i, it := range items {
		errs[i] = it.Err()
	}
	return errs, nil
}

// DeleteMany deletes keys in one request and returns how many held a value.
func (c *Client) DeleteMany(ctx context.Context, keys ...string) (int, error) {
	n, err := c.intOp(ctx, &wire.Request{Op: wire.OpDeleteMany, Keys: byteKeys(keys)})
	return int(n), err
}

// ShardStats is one shard's statistics as a node reports them.
type ShardStats struct {
	Keys, Tombstones int64
	Reads, Writes    uint64
	Bytes            int64
	BusyNanos        int64
}

// Stats is a node's statistics.
type Stats struct {
	NodeID              uint64
	Keys                int64
	Connections         int64
	Commands            uint64
	RejectedConnections uint64
	Shards              []ShardStats
}

// Stats returns the node's statistics.
func (c *Client) Stats(ctx context.Context) (Stats, error) {
	cl, err := c.do(ctx, &wire.Request{Op: wire.OpStats})
	if err != nil {
		return Stats{}, err
	}
	defer cl.release()
	return decodeStats(cl.resp.Result)
}

func decodeStats(b []byte) (Stats, error) {
	var st Stats
	rd := pack.NewReader(b)
	err := readMap(&rd, func(k string) error {
		var err error
		switch k {
		case "node":
			st.NodeID, err = rd.Uint()
		case "keys":
			st.Keys, err = rd.Int()
		case "connections":
			st.Connections, err = rd.Int()
		case "commands":
			st.Commands, err = rd.Uint()
		case "rejected_connections":
			st.RejectedConnections, err = rd.Uint()
		case "shards":
			var n int
			if n, err = rd.ArrayLen(); err != nil {
				return err
			}
			st.Shards = make([]ShardStats, n)
			for i := range st.Shards {
				sh := &st.Shards[i]
				err = readMap(&rd, func(k string) error {
					var err error
					switch k {
					case "keys":
						sh.Keys, err = rd.Int()
					case "tombstones":
						sh.Tombstones, err = rd.Int()
					case "reads":
						sh.Reads, err = rd.Uint()
					case "writes":
						sh.Writes, err = rd.Uint()
					case "bytes":
						sh.Bytes, err = rd.Int()
					case "busy_ns":
						sh.BusyNanos, err = rd.Int()
					default:
						err = rd.Skip()
					}
					return err
				})
				if err != nil {
					return err
				}
			}
		default:
			err = rd.Skip()
		}
		return err
	})
	return st, err
}

// readMap reads a map with string keys, calling field for each key; field
// reads the value.
func readMap(rd *pack.Reader, field func(k string) error) error {
	n, err := rd.MapLen()
	if err != nil {
		return err
	}
	for range n {
		k, err := rd.String()
		if err != nil {
			return err
		}
		if err := field(k); err != nil {
			return err
		}
	}
	return nil
}

func (c *Client) nilOp(ctx context.Context, req *wire.Request) error {
	cl, err := c.do(ctx, req)
	if err != nil {
		return err
	}
	cl.release()
	return nil
}

func (c *Client) intOp(ctx context.Context, req *wire.Request) (int64, error) {
	cl, err := c.do(ctx, req)
	if err != nil {
		return 0, err
	}
	defer cl.release()
	return cl.resp.Int()
}

func byteKeys(keys []string) [][]byte {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		out[i] = []byte(k)
	}
	return out
}
