package executor

import (
	"context"

	"github.com/trellisdb/trellis/wire"
)

// KV is the key-value store that executors read and write through their
// caches and that coordinators keep definitions in. Values are lattice
// encodings (lattice.Encode). Implementations are safe for concurrent use;
// each method blocks until the store answered or ctx ended. kvs.Direct is
// the one of a storage node in the same process.
type KV interface {
	// Get returns key's value. An error wrapping wire.ErrNotFound if none.
	Get(ctx context.Context, key []byte) ([]byte, error)
	// Put merges the lattice encoded in enc into key's value.
	Put(ctx context.Context, key, enc []byte) error
	// Delete deletes key.
	Delete(ctx context.Context, key []byte) (existed bool, err error)
	// SetAdd adds member to the observed-remove set at key.
	SetAdd(ctx context.Context, key, member []byte) error
	// SetRemove removes member from the set at key.
	SetRemove(ctx context.Context, key, member []byte) error
	// Members returns the members of the set at key (none if no key).
	Members(ctx context.Context, key []byte) ([][]byte, error)
}

// AckPutter is a KV whose writes can wait for an acknowledgement level
// (Call.Ack). A KV without it writes with its store's default.
type AckPutter interface {
	PutAck(ctx context.Context, key, enc []byte, ack wire.Ack) error
}

// Watcher is a KV that tells a cache which of its keys changed: the KVS
// pushing updates of the keys a cache holds. kvs.Direct is one. A cache
// whose KV is a Watcher watches every key it holds and refreshes the ones
// that changed (Executor.Run, every Config.RefreshEvery).
type Watcher interface {
	Watch(key []byte)
	Unwatch(key []byte)
	TakeChanged(dst []string) []string
}
