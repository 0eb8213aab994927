package disk

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors. Functions wrap them with detail; test with errors.Is.
var (
	// ErrNotFound: the key holds nothing on disk.
	ErrNotFound = errors.New("disk: key not found")
	// ErrCorrupt: a stored value does not decode as a cell (an operand that
	// was not a cell encoding, or a lattice format this binary does not
	// know), or Pebble reported corrupt data.
	ErrCorrupt = errors.New("disk: corrupt value")
	// ErrClosed: the DB has been closed.
	ErrClosed = errors.New("disk: closed")
)

// Options configures Open. The zero value means defaults.
type Options struct {
	// CacheSize is Pebble's block cache in bytes. Default 64 MiB.
	CacheSize int64
	// Logger receives Pebble's log lines: info at Debug, errors at Error,
	// write stalls, slow disk operations and low disk space at Warn.
	// Default slog.Default().
	Logger *slog.Logger
	// FS, when set, is the file system Pebble uses (tests pass vfs.NewMem()
	// or an errorfs). Default the operating system's.
	FS vfs.FS
}

// Defaults for Options, and fixed Pebble settings.
const (
	DefaultCacheSize = 64 << 20 // Options.CacheSize
	memTableSize     = 64 << 20
	bloomBitsPerKey  = 10
)

// cellPrefix starts the Pebble key of every user key: the store keeps key k
// under cellPrefix+k. It keeps Pebble keys non-empty (Pebble v2.1.7 panics
// flushing a table whose only key is the empty key) and leaves the other
// prefixes free for data that is not a user key's cell.
const cellPrefix = 0x01

// formatVersion is the Pebble on-disk format this package writes: the newest
// that Pebble v2.1.7 supports (a test checks that it still is). Open ratchets
// an older store up to it, and Pebble refuses a store written in a newer one.
// It is named rather than pebble.FormatNewest so that upgrading Pebble does
// not silently make stores unreadable by the previous binary.
const formatVersion = pebble.FormatValueSeparation

func (o Options) withDefaults() Options {
	if o.CacheSize == 0 {
		o.CacheSize = DefaultCacheSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.FS == nil {
		o.FS = vfs.Default
	}
	return o
}

// Validate reports whether o (after defaults) is usable.
func (o Options) Validate() error {
	if o.CacheSize < 0 {
		return fmt.Errorf("disk: cache size must not be negative, got %d", o.CacheSize)
	}
	return nil
}

// DB is a node's disk tier: for each key, the join of every cell encoding
// written to it since its last delete. Safe for concurrent use. Close waits
// for the calls in progress; calls made once Close has begun (a Scan
// callback's included) return ErrClosed.
type DB struct {
	pdb *pebble.DB
	dir string
	log *slog.Logger

	keyBufs sync.Pool // of *[]byte: the prefixed keys of Gets

	stalls      atomic.Int64 // write stalls begun
	corruptions atomic.Int64 // corruption reports from Pebble

	mu       sync.Mutex
	closed   bool       // guarded by mu; set by Close
	inflight int        // guarded by mu; calls in progress
	idle     *sync.Cond // on mu; signalled when inflight drops to 0 after Close
}

// enter registers a call, or reports false if the DB is closed.
func (d *DB) enter() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.inflight++
	return true
}

// exit ends a call that enter registered.
func (d *DB) exit() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inflight--
	if d.inflight == 0 && d.closed {
		d.idle.Broadcast()
	}
}

// Open opens the store in dir, creating it (and dir) if needed. It fails if
// dir holds a Pebble store written with another merge operator (not
// trellis.cell.v1) or in a newer Pebble format.
func Open(dir string, opts Options) (*DB, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	d := &DB{dir: dir, log: opts.Logger}
	d.idle = sync.NewCond(&d.mu)
	cache := pebble.NewCache(opts.CacheSize)
	defer cache.Unref() // Pebble holds its own reference
	po := &pebble.Options{
		Cache:              cache,
		FS:                 opts.FS,
		FormatMajorVersion: formatVersion,
		MemTableSize:       memTableSize,
		Merger:             newMerger(opts.Logger),
		Logger:             pebbleLogger{opts.Logger},
		EventListener:      d.eventListener(),
	}
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("disk: open %s: %w", dir, err)
	}
	d.pdb = pdb
	return d, nil
}

// Close releases the store, syncing the WAL first, so every Write that
// returned is durable after a clean Close. Calls in progress finish first;
// calls made once Close has begun return ErrClosed, and so does a second
// Close.
func (d *DB) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.closed = true
	for d.inflight > 0 {
		d.idle.Wait()
	}
	d.mu.Unlock()
	if err := d.pdb.Close(); err != nil {
		return fmt.Errorf("disk: close %s: %w", d.dir, err)
	}
	return nil
}

// Change is one key's update in a Write: Cell is a cell encoding
// (lattice.Cell.AppendBinary) to merge into the key's stored cell, or nil to
// delete the key outright (used when the store forgets an expired
// tombstone). A Cell that is not a cell encoding is stored all the same and
// makes the key read as corrupt (ErrCorrupt) until it is deleted.
type Change struct {
	Key, Cell []byte
}

// Write applies changes atomically, in order (a delete followed by a merge
// of the same key leaves only what was merged after the delete), and returns
// once they are visible to Get and Scan. With sync it returns only after the
// changes, and every write before them, are durable (the WAL is fsynced).
// Concurrent synced Writes share fsyncs: Pebble's WAL writer syncs once for
// every commit queued while the previous sync ran. With no changes and sync,
// Write is a barrier that makes every earlier write durable. Neither the
// slices nor the Changes are retained.
//
// A failure to write or sync the WAL is fatal: Pebble cannot go on after it
// and reports it through Logger.Fatalf, which logs it at Error and panics in
// the writing goroutine. The node must restart (and recovers from the WAL).
func (d *DB) Write(changes []Change, sync bool) error {
	if !d.enter() {
		return ErrClosed
	}
	defer d.exit()
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if len(changes) == 0 {
		if !sync {
			return nil
		}
		// An empty batch commits nothing and syncs nothing; a WAL-only
		// record makes the sync happen, covering every earlier record.
		if err := d.pdb.LogData(nil, wo); err != nil {
			return fmt.Errorf("disk: sync: %w", err)
		}
		return nil
	}
	size := 0
	for _, c := range changes {
		size += len(c.Key) + len(c.Cell) + 16
	}
	b := d.pdb.NewBatchWithSize(size)
	defer b.Close()
	for _, c := range changes {
		var op *pebble.DeferredBatchOp
		if c.Cell == nil {
			op = b.DeleteDeferred(1 + len(c.Key))
		} else {
			op = b.MergeDeferred(1+len(c.Key), len(c.Cell))
			copy(op.Value, c.Cell)
		}
		op.Key[0] = cellPrefix
		copy(op.Key[1:], c.Key)
		if err := op.Finish(); err != nil {
			return fmt.Errorf("disk: write: %w", err)
		}
	}
	if err := b.Commit(wo); err != nil {
		return fmt.Errorf("disk: write: %w", err)
	}
	return nil
}

// Get appends the stored cell encoding of key (the join of everything
// written to it since its last delete) to dst and returns the result. It
// returns ErrNotFound if the key holds nothing, and an error wrapping
// ErrCorrupt if the stored value does not decode; dst is returned unchanged
// with either.
func (d *DB) Get(key, dst []byte) ([]byte, error) {
	if !d.enter() {
		return dst, ErrClosed
	}
	defer d.exit()
	kb, _ := d.keyBufs.Get().(*[]byte)
	if kb == nil {
		kb = new([]byte)
	}
	defer d.keyBufs.Put(kb) // after closer.Close: Pebble reads the key until then
	*kb = append(append((*kb)[:0], cellPrefix), key...)
	v, closer, err := d.pdb.Get(*kb)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return dst, ErrNotFound
		}
		return dst, wrapReadErr(err)
	}
	defer closer.Close()
	if isPoison(v) {
		return dst, poisonErr(key, v)
	}
	return append(dst, v...), nil // v is Pebble's until closer.Close: copy it
}

// ReadCell is Get in the form a store with a memory budget reads evicted
// keys back with (kvs.DiskReader): it appends key's stored cell encoding to
// dst, and found is false, with no error, if the key holds nothing. It sees
// every Write that has returned. dst is returned unchanged unless found.
func (d *DB) ReadCell(key, dst []byte) (out []byte, found bool, err error) {
	out, err = d.Get(key, dst)
	switch {
	case errors.Is(err, ErrNotFound):
		return dst, false, nil
	case err != nil:
		return dst, false, err
	}
	return out, true, nil
}

// Scan calls fn with every key and its cell encoding, in key order, until fn
// returns an error, which Scan returns. The slices are valid only during the
// call. Scan sees the store as it was when it started: concurrent Writes are
// not visible. A value that does not decode stops the scan with an error
// wrapping ErrCorrupt that names its key.
func (d *DB) Scan(fn func(key, cell []byte) error) error {
	if !d.enter() {
		return ErrClosed
	}
	defer d.exit()
	it, err := d.pdb.NewIter(&pebble.IterOptions{
		LowerBound: []byte{cellPrefix},
		UpperBound: []byte{cellPrefix + 1},
	})
	if err != nil {
		return wrapReadErr(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			break // it.Error reports it
		}
		key := it.Key()[1:]
		if isPoison(v) {
			err = poisonErr(key, v)
			_ = it.Close()
			return err
		}
		if err := fn(key, v); err != nil {
			_ = it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return wrapReadErr(err)
	}
	return nil
}

// wrapReadErr wraps an error from a Pebble read, as ErrCorrupt when Pebble
// found corrupt data.
func wrapReadErr(err error) error {
	if pebble.IsCorruptionError(err) {
		return fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return fmt.Errorf("disk: read: %w", err)
}
