package executor

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

// slowKV answers Gets once released, counting them.
type slowKV struct {
	KV
	gets    atomic.Int64
	release chan struct{}
	vals    map[string][]byte
}

func (s *slowKV) Get(ctx context.Context, key []byte) ([]byte, error) {
	s.gets.Add(1)
	<-s.release
	v, ok := s.vals[string(key)]
	if !ok {
		return nil, wire.ErrNotFound
	}
	return v, nil
}

func lww(ts uint64, v string) []byte {
	return lattice.Encode(lattice.NewLWW(lattice.Timestamp(ts), 1, []byte(v)))
}

func TestCacheCoalescesMissesAndMerges(t *testing.T) {
	kv := &slowKV{release: make(chan struct{}), vals: map[string][]byte{"k": lww(10, "old")}}
	c := NewCache(kv, 0)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := c.Get(context.Background(), []byte("k"))
			assert.NoError(t, err)
			assert.Equal(t, lww(10, "old"), v)
		}()
	}
	require.Eventually(t, func() bool { return kv.gets.Load() == 1 }, 5e9, 1e6)
	close(kv.release)
	wg.Wait()
	assert.LessOrEqual(t, kv.gets.Load(), int64(2), "concurrent misses share a fetch")

	// A pushed update merges (newer wins); an older one changes nothing.
	c.Update("k", lww(20, "new"))
	c.Update("k", lww(5, "older"))
	v, err := c.Get(context.Background(), []byte("k"))
	require.NoError(t, err)
	assert.Equal(t, lww(20, "new"), v)
	// Updates of keys not cached are not kept.
	c.Update("other", lww(1, "x"))
	_, ok := c.Peek([]byte("other"))
	assert.False(t, ok)
}

func TestCacheStaysWithinItsBudget(t *testing.T) {
	c := NewCache(&slowKV{release: make(chan struct{})}, 10_000)
	for i := range 1000 {
		c.Write(string(rune('a'+i%26))+string(rune(i)), lww(1, string(make([]byte, 100))))
	}
	st := c.Stats()
	assert.LessOrEqual(t, st.Bytes, int64(10_000))
	assert.Greater(t, st.Keys, 10)
	// The most recent keys stay.
	_, ok := c.Peek([]byte(string(rune('a'+999%26)) + string(rune(999))))
	assert.True(t, ok)
}
