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
//
// A Direct is also an executor.Watcher: Watch, Unwatch and TakeChanged go
// to its subscription to the store's writes. NewDirect gives it one of its
// own; a Direct built as a literal (Direct{Store: s}) shares the store's
// single shared one with every other such literal, so two caches over
// literals take each other's changes.
type Direct struct {
	Store *Store
	sub   *Subscription // nil: the store's shared one
}

// NewDirect returns a Direct over s with a subscription of its own (for one
// cache). Close releases it.
func NewDirect(s *Store) Direct { return Direct{Store: s, sub: s.Subscribe()} }

// Close releases the subscription of a Direct made by NewDirect; it does
// nothing for a literal.
func (d Direct) Close() {
	if d.sub != nil {
		d.sub.Close()
	}
}

func (d Direct) subscription() *Subscription {
	if d.sub != nil {
		return d.sub
	}
	return d.Store.sharedSubscription()
}

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

// Watch makes TakeChanged report writes of key (a cache holds it). Calls
// count: Unwatch as many times.
func (d Direct) Watch(key []byte) { d.subscription().Watch(key) }

// Unwatch undoes one Watch.
func (d Direct) Unwatch(key []byte) { d.subscription().Unwatch(key) }

// TakeChanged appends the watched keys written since the last call.
func (d Direct) TakeChanged(dst []string) []string { return d.subscription().TakeChanged(dst) }
