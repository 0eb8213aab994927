package clusterclient

import (
	"context"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/lattice"
)

// Each method routes its key (see the package doc) and runs the method of
// the same name of package client on the chosen node; results and errors
// are that method's, after retries.

// Get returns key's value. ErrNotFound if the key holds none.
func (c *Client) Get(ctx context.Context, key string) (lattice.Lattice, error) {
	var v lattice.Lattice
	err := c.do(ctx, "get", key, true, func(ctx context.Context, n *client.Client) (err error) {
		v, err = n.Get(ctx, key)
		return err
	})
	return v, err
}

// GetBytes returns the value of key's last-writer-wins register.
// ErrNotFound if the key holds none, ErrTypeMismatch if it holds another
// lattice type.
func (c *Client) GetBytes(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := c.do(ctx, "get", key, true, func(ctx context.Context, n *client.Client) (err error) {
		v, err = n.GetBytes(ctx, key)
		return err
	})
	return v, err
}

// Put merges v into key's value. ErrTypeMismatch if the key holds a lattice
// of another type (nothing changes). A quorum write goes to a quorum of the
// key's replicas at once (see "Fan-out" in the package doc).
func (c *Client) Put(ctx context.Context, key string, v lattice.Lattice) error {
	ctx, cancel := c.deadlines.bound(ctx) // one bound for the fan-out and what follows
	defer cancel()
	if c.fanOut(ctx, key, v) {
		return nil
	}
	return c.do(ctx, "put", key, true, func(ctx context.Context, n *client.Client) error {
		return n.Put(ctx, key, v)
	})
}

// Set writes value to key's last-writer-wins register. ErrTypeMismatch if
// the key holds another lattice type. A quorum write is stamped by the
// client's own clock and sent to a quorum of the key's replicas at once
// (see "Fan-out" in the package doc); any other is stamped by the clock of
// the node that takes it.
func (c *Client) Set(ctx context.Context, key string, value []byte) error {
	if c.fansOut() {
		return c.Put(ctx, key, &lattice.LWW{TS: c.clock.Now(), Writer: c.writer, Value: value})
	}
	return c.do(ctx, "set", key, true, func(ctx context.Context, n *client.Client) error {
		return n.Set(ctx, key, value)
	})
}

// Delete deletes key and reports whether it held a value. After a retry
// (of an attempt whose outcome was lost) it may report false for a key
// that the lost attempt deleted.
func (c *Client) Delete(ctx context.Context, key string) (bool, error) {
	var existed bool
	err := c.do(ctx, "delete", key, true, func(ctx context.Context, n *client.Client) (err error) {
		existed, err = n.Delete(ctx, key)
		return err
	})
	return existed, err
}

// SetAdd adds members to the observed-remove set at key and returns how many
// were new (after a retry, possibly fewer than the call added).
func (c *Client) SetAdd(ctx context.Context, key string, members ...[]byte) (int, error) {
	var added int
	err := c.do(ctx, "setadd", key, true, func(ctx context.Context, n *client.Client) (err error) {
		added, err = n.SetAdd(ctx, key, members...)
		return err
	})
	return added, err
}

// SetRemove removes members from the observed-remove set at key and returns
// how many were present. A concurrent add of the same member wins.
func (c *Client) SetRemove(ctx context.Context, key string, members ...[]byte) (int, error) {
	var removed int
	err := c.do(ctx, "setremove", key, true, func(ctx context.Context, n *client.Client) (err error) {
		removed, err = n.SetRemove(ctx, key, members...)
		return err
	})
	return removed, err
}

// SetMembers returns the members of the set at key in byte order (an empty
// result for a missing key).
func (c *Client) SetMembers(ctx context.Context, key string) ([][]byte, error) {
	var ms [][]byte
	err := c.do(ctx, "get", key, true, func(ctx context.Context, n *client.Client) (err error) {
		ms, err = n.SetMembers(ctx, key)
		return err
	})
	return ms, err
}

// CounterAdd adds delta to the PN-counter at key and returns its new value
// as the node that took it sees it.
//
// An increment is not idempotent, so it is retried only when it certainly
// was not applied (a wrong-owner answer, a node that could not be reached):
// on ErrConnLost, ErrTimeout or ErrUnavailable from a node it returns at
// once, and the increment may or may not have been applied.
func (c *Client) CounterAdd(ctx context.Context, key string, delta int64) (int64, error) {
	var v int64
	err := c.do(ctx, "counteradd", key, false, func(ctx context.Context, n *client.Client) (err error) {
		v, err = n.CounterAdd(ctx, key, delta)
		return err
	})
	return v, err
}

// CounterValue returns the value of the PN-counter at key (0 for a missing
// key).
func (c *Client) CounterValue(ctx context.Context, key string) (int64, error) {
	var v int64
	err := c.do(ctx, "get", key, true, func(ctx context.Context, n *client.Client) (err error) {
		v, err = n.CounterValue(ctx, key)
		return err
	})
	return v, err
}
