package kvs

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
)

// fakeClock is a settable wall clock for stores under test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTestStore(t testing.TB) (*Store, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	s, err := NewStore(StoreConfig{NodeID: 7, Shards: 4, Now: clk.Now})
	require.NoError(t, err)
	return s, clk
}

func getString(t *testing.T, s *Store, key string) string {
	t.Helper()
	v, err := s.GetString([]byte(key), nil)
	require.NoError(t, err)
	return string(v)
}

func TestSetGetOverwrite(t *testing.T) {
	s, _ := newTestStore(t)
	k := []byte("k")
	_, err := s.GetString(k, nil)
	require.ErrorIs(t, err, ErrNotFound)

	require.NoError(t, s.SetLWW(k, []byte("one")))
	require.Equal(t, "one", getString(t, s, "k"))
	// Same size: rewritten in place.
	require.NoError(t, s.SetLWW(k, []byte("two")))
	require.Equal(t, "two", getString(t, s, "k"))
	// Larger and much smaller values reallocate.
	big := bytes.Repeat([]byte("x"), 1000)
	require.NoError(t, s.SetLWW(k, big))
	require.Equal(t, string(big), getString(t, s, "k"))
	require.NoError(t, s.SetLWW(k, []byte("s")))
	require.Equal(t, "s", getString(t, s, "k"))
	require.Equal(t, 1, s.Len())

	// The native GET returns the register's encoding.
	enc, err := s.Get(k, nil)
	require.NoError(t, err)
	v, err := lattice.Decode(enc)
	require.NoError(t, err)
	require.Equal(t, []byte("s"), v.(*lattice.LWW).Value)
	require.EqualValues(t, 7, v.(*lattice.LWW).Writer)
}

// The store must not keep references to the caller's buffers.
func TestStoreCopiesInputs(t *testing.T) {
	s, _ := newTestStore(t)
	k, v := []byte("key"), []byte("value")
	require.NoError(t, s.SetLWW(k, v))
	copy(k, "XXX")
	copy(v, "XXXXX")
	require.Equal(t, "value", getString(t, s, "key"))

	m := []byte("member")
	_, err := s.SetAdd([]byte("set"), [][]byte{m})
	require.NoError(t, err)
	copy(m, "XXXXXX")
	ok, err := s.IsMember([]byte("set"), []byte("member"))
	require.NoError(t, err)
	require.True(t, ok)
}

// An LWW write with an older stamp loses; equal stamps break ties by value,
// so replicas agree whatever the arrival order.
func TestPutLWWOrder(t *testing.T) {
	s, _ := newTestStore(t)
	k := []byte("k")
	newer := &lattice.LWW{TS: lattice.MakeTimestamp(2000, 0), Writer: 1, Value: []byte("new")}
	older := &lattice.LWW{TS: lattice.MakeTimestamp(1000, 0), Writer: 9, Value: []byte("old")}
	require.NoError(t, s.Put(k, newer))
	require.NoError(t, s.Put(k, older))
	require.Equal(t, "new", getString(t, s, "k"))

	tieA := &lattice.LWW{TS: lattice.MakeTimestamp(3000, 0), Writer: 1, Value: []byte("a")}
	tieB := &lattice.LWW{TS: lattice.MakeTimestamp(3000, 0), Writer: 1, Value: []byte("b")}
	s2, _ := newTestStore(t)
	require.NoError(t, s.Put(k, tieB))
	require.NoError(t, s.Put(k, tieA))
	require.NoError(t, s2.Put(k, tieA))
	require.NoError(t, s2.Put(k, tieB))
	require.Equal(t, getString(t, s, "k"), getString(t, s2, "k"))
	require.Equal(t, "b", getString(t, s, "k"))
}

func TestPutEncodedFastPathMatchesDecodedPath(t *testing.T) {
	s, _ := newTestStore(t)
	w := &lattice.LWW{TS: lattice.MakeTimestamp(5000, 3), Writer: 4, Value: []byte("hello")}
	require.NoError(t, s.PutEncoded([]byte("a"), lattice.Encode(w)))
	require.NoError(t, s.Put([]byte("b"), w))
	ea, err := s.Get([]byte("a"), nil)
	require.NoError(t, err)
	eb, err := s.Get([]byte("b"), nil)
	require.NoError(t, err)
	require.Equal(t, ea, eb)
	require.Equal(t, lattice.Encode(w), ea)

	err = s.PutEncoded([]byte("c"), []byte{byte(lattice.TypeLWW), 1, 0x93})
	require.Error(t, err)
	require.False(t, s.Exists([]byte("c")))
}

// Writing one lattice type onto a key holding another is an error, and the
// stored value is untouched.
func TestTypeMismatchLeavesValue(t *testing.T) {
	s, _ := newTestStore(t)
	str, set, ctr := []byte("str"), []byte("set"), []byte("ctr")
	require.NoError(t, s.SetLWW(str, []byte("v")))
	_, err := s.SetAdd(set, [][]byte{[]byte("m")})
	require.NoError(t, err)
	_, err = s.CounterAdd(ctr, 5)
	require.NoError(t, err)

	_, err = s.SetAdd(str, [][]byte{[]byte("x")})
	require.ErrorIs(t, err, ErrTypeMismatch)
	_, err = s.CounterAdd(str, 1)
	require.ErrorIs(t, err, ErrTypeMismatch)
	require.ErrorIs(t, s.SetLWW(set, []byte("x")), ErrTypeMismatch)
	require.ErrorIs(t, s.Put(ctr, lattice.NewGSet([]byte("g"))), ErrTypeMismatch)
	require.ErrorIs(t, s.PutEncoded(str, lattice.Encode(&lattice.Max{Value: 3})), ErrTypeMismatch)
	_, err = s.SetRemove(ctr, [][]byte{[]byte("m")})
	require.ErrorIs(t, err, ErrTypeMismatch)
	_, err = s.GetString(set, nil)
	require.ErrorIs(t, err, ErrTypeMismatch)

	require.Equal(t, "v", getString(t, s, "str"))
	ms, err := s.Members(set)
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("m")}, ms)
	require.Equal(t, "5", getString(t, s, "ctr"))
}

func TestSets(t *testing.T) {
	s, _ := newTestStore(t)
	k := []byte("s")
	n, err := s.SetAdd(k, [][]byte{[]byte("a"), []byte("b"), []byte("a")})
	require.NoError(t, err)
	require.Equal(t, 2, n)
	n, err = s.SetRemove(k, [][]byte{[]byte("a"), []byte("zz")})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	card, err := s.Card(k)
	require.NoError(t, err)
	require.Equal(t, 1, card)
	card, err = s.Card([]byte("missing"))
	require.NoError(t, err)
	require.Zero(t, card)
	ms, err := s.Members([]byte("missing"))
	require.NoError(t, err)
	require.Empty(t, ms)
	// A grow-only set accepts adds but not removes.
	require.NoError(t, s.Put([]byte("g"), lattice.NewGSet([]byte("x"))))
	n, err = s.SetAdd([]byte("g"), [][]byte{[]byte("y")})
	require.NoError(t, err)
	require.Equal(t, 1, n)
	_, err = s.SetRemove([]byte("g"), [][]byte{[]byte("y")})
	require.ErrorIs(t, err, ErrTypeMismatch)
}

func TestCounters(t *testing.T) {
	s, _ := newTestStore(t)
	k := []byte("c")
	v, err := s.CounterAdd(k, 10)
	require.NoError(t, err)
	require.EqualValues(t, 10, v)
	v, err = s.CounterAdd(k, -15)
	require.NoError(t, err)
	require.EqualValues(t, -5, v)
	_, err = s.CounterAdd(k, math.MinInt64)
	require.ErrorIs(t, err, ErrOverflow)
	require.Equal(t, "-5", getString(t, s, "c"), "a failed add changes nothing")
	_, err = s.CounterAdd([]byte("m"), math.MaxInt64)
	require.NoError(t, err)
	_, err = s.CounterAdd([]byte("m"), 1)
	require.ErrorIs(t, err, ErrOverflow)
}

// Redis semantics: INCR on a string holding an integer converts it; SET
// replaces any type.
func TestRedisConversions(t *testing.T) {
	s, _ := newTestStore(t)
	require.NoError(t, s.Overwrite([]byte("n"), []byte("10")))
	v, err := s.IncrBy([]byte("n"), 1)
	require.NoError(t, err)
	require.EqualValues(t, 11, v)
	require.Equal(t, "11", getString(t, s, "n"))
	typ, ok := s.Type([]byte("n"))
	require.True(t, ok)
	require.Equal(t, lattice.TypeCounter, typ)

	for _, bad := range []string{"abc", "", " 1", "+1", "01", "1.5", "99999999999999999999", "-0"} {
		key := []byte("bad:" + bad)
		require.NoError(t, s.Overwrite(key, []byte(bad)))
		_, err := s.IncrBy(key, 1)
		require.ErrorIs(t, err, ErrNotInteger, "value %q", bad)
		require.Equal(t, bad, getString(t, s, string(key)), "unchanged")
	}
	require.NoError(t, s.Overwrite([]byte("max"), []byte(strconv.FormatInt(math.MaxInt64, 10))))
	_, err = s.IncrBy([]byte("max"), 1)
	require.ErrorIs(t, err, ErrOverflow)

	// SET over a set and over a counter.
	_, err = s.SetAdd([]byte("s"), [][]byte{[]byte("m")})
	require.NoError(t, err)
	require.NoError(t, s.Overwrite([]byte("s"), []byte("now a string")))
	require.Equal(t, "now a string", getString(t, s, "s"))
	require.NoError(t, s.Overwrite([]byte("n"), []byte("x")))
	require.Equal(t, "x", getString(t, s, "n"))
	// ...but the native SetLWW refuses.
	_, err = s.CounterAdd([]byte("c"), 1)
	require.NoError(t, err)
	require.ErrorIs(t, s.SetLWW([]byte("c"), []byte("x")), ErrTypeMismatch)
	require.Equal(t, 12, s.Len(), "n, max, s, c and the eight bad:* keys")
}

func TestDeleteAndTombstones(t *testing.T) {
	s, clk := newTestStore(t)
	k := []byte("k")
	require.NoError(t, s.SetLWW(k, []byte("v")))
	existed, err := s.Delete(k)
	require.NoError(t, err)
	require.True(t, existed)
	existed, err = s.Delete(k)
	require.NoError(t, err)
	require.False(t, existed)
	require.False(t, s.Exists(k))
	require.Zero(t, s.Len())
	_, err = s.Get(k, nil)
	require.ErrorIs(t, err, ErrNotFound)

	// A write stamped before the delete loses; the tombstone wins.
	stale := &lattice.LWW{TS: lattice.MakeTimestamp(clk.Now().Add(-time.Second).UnixMilli(), 0), Writer: 99, Value: []byte("stale")}
	require.NoError(t, s.Put(k, stale))
	// It merged into the tombstone's epoch, so it is visible: a write that
	// arrives at this replica after the delete is a write after the delete.
	require.Equal(t, "stale", getString(t, s, "k"))

	// Deleting a set, then adding: only the new member.
	_, err = s.SetAdd([]byte("s"), [][]byte{[]byte("old")})
	require.NoError(t, err)
	_, err = s.Delete([]byte("s"))
	require.NoError(t, err)
	_, err = s.SetAdd([]byte("s"), [][]byte{[]byte("new")})
	require.NoError(t, err)
	ms, err := s.Members([]byte("s"))
	require.NoError(t, err)
	require.Equal(t, [][]byte{[]byte("new")}, ms)

	// Delete of a never-written key leaves a tombstone until the grace ends.
	_, err = s.Delete([]byte("ghost"))
	require.NoError(t, err)
	tombs := func() int {
		n := 0
		for _, st := range s.Stats() {
			n += st.Tombstones
		}
		return n
	}
	require.Equal(t, 1, tombs())
	require.Zero(t, s.Collect(clk.Now()))
	clk.Advance(DefaultTombstoneGrace + time.Second)
	require.Equal(t, 3, s.Collect(clk.Now()), "ghost's tombstone and the two delete epochs")
	require.Zero(t, tombs())
	// The re-written register went back to the fast path and still reads.
	require.Equal(t, "stale", getString(t, s, "k"))
	require.Equal(t, 2, s.Len())
}

func TestLimits(t *testing.T) {
	clk := &fakeClock{now: time.Now()}
	s, err := NewStore(StoreConfig{MaxKey: 8, MaxValue: 16, Now: clk.Now})
	require.NoError(t, err)
	require.ErrorIs(t, s.SetLWW([]byte("123456789"), []byte("v")), ErrTooLarge)
	require.ErrorIs(t, s.SetLWW([]byte("k"), make([]byte, 17)), ErrTooLarge)
	_, err = s.SetAdd([]byte("k"), [][]byte{make([]byte, 17)})
	require.ErrorIs(t, err, ErrTooLarge)
	require.Zero(t, s.Len())

	_, err = NewStore(StoreConfig{Shards: -1})
	require.Error(t, err)
}

// Concurrent writers and readers on overlapping keys (run with -race).
func TestConcurrentAccess(t *testing.T) {
	s, _ := newTestStore(t)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := []byte(fmt.Sprintf("k%d", i%50))
				switch (w + i) % 4 {
				case 0:
					_ = s.Overwrite(k, []byte(fmt.Sprintf("v%d", i)))
				case 1:
					_, _ = s.GetString(k, nil)
				case 2:
					_, _ = s.IncrBy([]byte(fmt.Sprintf("c%d", i%10)), 1)
				default:
					_, _ = s.Delete(k)
				}
			}
		}()
	}
	wg.Wait()
	total := int64(0)
	for i := range 10 {
		v, err := s.GetString([]byte(fmt.Sprintf("c%d", i)), nil)
		if err == nil {
			n, _ := strconv.ParseInt(string(v), 10, 64)
			total += n
		}
	}
	require.EqualValues(t, 8*500/4, total, "every INCR counted once")
}

func TestSetGetAllocations(t *testing.T) {
	s, _ := newTestStore(t)
	k, v := []byte("key:000000012345"), bytes.Repeat([]byte("v"), 100)
	require.NoError(t, s.SetLWW(k, v))
	buf := make([]byte, 0, 512)
	require.Zero(t, testing.AllocsPerRun(200, func() { _ = s.SetLWW(k, v) }), "overwrite in place")
	require.Zero(t, testing.AllocsPerRun(200, func() { buf, _ = s.GetString(k, buf[:0]) }))
	require.Zero(t, testing.AllocsPerRun(200, func() { buf, _ = s.Get(k, buf[:0]) }))
}

func BenchmarkStoreSet(b *testing.B) {
	s, _ := newTestStore(b)
	keys := make([][]byte, 100_000)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%012d", i))
	}
	v := bytes.Repeat([]byte("v"), 100)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		_ = s.Overwrite(keys[i%len(keys)], v)
		i++
	}
}

func BenchmarkStoreGet(b *testing.B) {
	s, _ := newTestStore(b)
	keys := make([][]byte, 100_000)
	v := bytes.Repeat([]byte("v"), 100)
	for i := range keys {
		keys[i] = []byte(fmt.Sprintf("key:%012d", i))
		_ = s.Overwrite(keys[i], v)
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		buf, _ = s.GetString(keys[i%len(keys)], buf[:0])
		i++
	}
}
