package kvs

import (
	"context"

	"github.com/trellisdb/trellis/wire"
)

// Direct gives the roles that run in a storage node's process (the
// coordinator and executor of `trellis up`) the store through the
// context-taking methods of executor.KV, without a network hop. It writes
// the reserved namespace, which the node's ports refuse to clients. The
// contexts are ignored: the store never blocks on the network.
type Direct struct{ Store *Store }

// Get returns key's lattice encoding.
func (d Direct) Get(_ context.Context, key []byte) ([]byte, error) { return d.Store.Get(key, nil) }

// Put merges the lattice encoded in enc into key.
func (d Direct) Put(_ context.Context, key, enc []byte) error { return d.Store.PutEncoded(key, enc) }

// Delete deletes key.
func (d Direct) Delete(_ context.Context, key []byte) (bool, error) { return d.Store.Delete(key) }

// SetAdd adds member to the set at key.
func (d Direct) SetAdd(_ context.Context, key, member []byte) error {
	_, err := d.Store.SetAdd(key, [][]byte{member})
	return err
}

// SetRemove removes member from the set at key.
func (d Direct) SetRemove(_ context.Context, key, member []byte) error {
	_, err := d.Store.SetRemove(key, [][]byte{member})
	return err
}

// Members returns the members of the set at key (none if no key).
func (d Direct) Members(_ context.Context, key []byte) ([][]byte, error) {
	m, err := d.Store.Members(key)
	if wire.CodeOf(err) == wire.CodeNotFound {
		return nil, nil
	}
	return m, err
}

// Watch makes TakeChanged report writes of key (a cache holds it).
func (d Direct) Watch(key []byte) { d.Store.Watch(key) }

// Unwatch undoes one Watch.
func (d Direct) Unwatch(key []byte) { d.Store.Unwatch(key) }

// TakeChanged appends the watched keys written since the last call.
func (d Direct) TakeChanged(dst []string) []string { return d.Store.TakeChanged(dst) }
