// Package consistency holds the session guarantees a DAG call may ask for
// (executor.Call.Consistency), and the snapshot that gives a call
// repeatable reads.
//
//   - LWW (the default): every read returns what the executor's cache holds
//     at that moment, kept fresh by the storage nodes; two functions of one
//     call may read two versions of a key.
//   - RepeatableRead: every function of a call reads, for each key, the
//     version that the call's first read of it returned (or what the call
//     itself wrote over it). The versions read travel with the call, from a
//     function to its successors (a Snapshot); where two branches of a DAG
//     read two versions of one key, their join fails with ErrConflict and
//     the coordinator runs the call again.
//   - Causal: repeatable read, plus every version read respects the
//     dependencies of the others (see causal.go).
package consistency

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/wire"
)

// Level is a session guarantee.
type Level uint8

// Levels, by the names a call gives them.
const (
	LWW            Level = iota // "" or "lww"
	RepeatableRead              // "repeatable-read"
	Causal                      // "causal"
)

func (l Level) String() string {
	switch l {
	case RepeatableRead:
		return "repeatable-read"
	case Causal:
		return "causal"
	}
	return "lww"
}

// Parse returns the level a call names; a bad request for an unknown name
// and for a level not served yet.
func Parse(name string) (Level, error) {
	switch name {
	case "", "lww":
		return LWW, nil
	case "repeatable-read":
		return RepeatableRead, nil
	case "causal":
		return Causal, nil
	}
	return LWW, fmt.Errorf("%w: unknown consistency %q (lww, repeatable-read or causal)", wire.ErrBadRequest, name)
}

// ErrConflict: two functions of a repeatable-read call read two versions
// of one key.
var ErrConflict = wire.ErrConflict

// MaxKeys bounds the keys one call's snapshot holds (and what a decoder
// accepts).
const MaxKeys = 4096

// Snapshot is the versions of keys a repeatable-read call has read or
// written: key → lattice encoding. Safe for concurrent use.
type Snapshot struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewSnapshot returns a snapshot holding a copy of versions (nil: none).
func NewSnapshot(versions map[string][]byte) *Snapshot {
	return &Snapshot{m: maps.Clone(versions)}
}

// Read returns key's version: the one the snapshot holds, or the one fetch
// returns, which the snapshot then holds. A fetch of a key that does not
// exist (an error wrapping wire.ErrNotFound) is remembered as absent (an
// empty version), so later reads find it absent too.
func (s *Snapshot) Read(key string, fetch func() ([]byte, error)) ([]byte, error) {
	if v, ok := s.held(key); ok {
		return found(key, v)
	}
	v, err := fetch()
	if err != nil && wire.CodeOf(err) != wire.CodeNotFound {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pinLocked(key, v)
}

// held returns the version the snapshot holds of key, if any.
func (s *Snapshot) held(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok
}

// found returns a held version, or not found for one held as absent (empty).
func found(key string, v []byte) ([]byte, error) {
	if len(v) == 0 {
		return nil, fmt.Errorf("%w: key %q (absent in this call's snapshot)", wire.ErrNotFound, key)
	}
	return v, nil
}

// pinLocked makes the snapshot hold v as key's version (nil: absent),
// unless a concurrent read of the call pinned one first, and returns the
// version held. Locked by the caller.
func (s *Snapshot) pinLocked(key string, v []byte) ([]byte, error) {
	if have, ok := s.m[key]; ok { // a concurrent read of the call won
		return found(key, have)
	}
	if len(s.m) >= MaxKeys {
		return nil, fmt.Errorf("%w: a call reads at most %d keys", wire.ErrTooLarge, MaxKeys)
	}
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	if v == nil {
		v = []byte{}
	}
	s.m[key] = v
	return found(key, v)
}

// Wrote records that the call wrote key, which now holds version (the
// write merged into what the call had): later reads of the call see it.
func (s *Snapshot) Wrote(key string, version []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	s.m[key] = version
}

// Versions returns a copy of the versions held.
func (s *Snapshot) Versions() map[string][]byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.m)
}

// Join returns the versions of two branches of a call that meet (a
// function with several predecessors): their union. ErrConflict if they
// hold different versions of one key.
func Join(a, b map[string][]byte) (map[string][]byte, error) {
	out := maps.Clone(a)
	if out == nil && len(b) > 0 {
		out = make(map[string][]byte, len(b))
	}
	for k, v := range b {
		if have, ok := out[k]; ok && !bytes.Equal(have, v) {
			return nil, fmt.Errorf("%w: two functions of the call read two versions of key %q", ErrConflict, k)
		}
		out[k] = v
	}
	return out, nil
}

// AppendVersions appends versions' encoding: [key, version, ...], sorted by
// key.
func AppendVersions(b []byte, versions map[string][]byte) []byte {
	b = pack.AppendArrayHeader(b, 2*len(versions))
	for _, k := range slices.Sorted(maps.Keys(versions)) {
		b = pack.AppendBytes(pack.AppendString(b, k), versions[k])
	}
	return b
}

// ReadVersions reads an AppendVersions encoding (nil for none). The
// versions alias the input.
func ReadVersions(rd *pack.Reader) (map[string][]byte, error) {
	n, err := rd.ArrayLen()
	if err != nil || n%2 != 0 || n > 2*MaxKeys {
		return nil, fmt.Errorf("%w: snapshot: want an even list of at most %d elements", wire.ErrBadRequest, 2*MaxKeys)
	}
	if n == 0 {
		return nil, nil
	}
	out := make(map[string][]byte, n/2)
	for range n / 2 {
		k, _ := rd.String()
		v, err := rd.Bytes()
		if err != nil {
			return nil, fmt.Errorf("%w: snapshot: %w", wire.ErrBadRequest, err)
		}
		if v == nil {
			v = []byte{}
		}
		out[k] = v
	}
	return out, nil
}
