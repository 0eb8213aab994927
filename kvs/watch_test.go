package kvs

import (
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/wire"
)

func watchStore(t *testing.T) *Store {
	t.Helper()
	s, _ := newTestStore(t)
	return s
}

func sorted(keys []string) []string {
	slices.Sort(keys)
	return keys
}

// Subscriptions are independent: a write is reported once to each
// subscription watching its key, and only to those.
func TestSubscriptionsAreIndependent(t *testing.T) {
	s := watchStore(t)
	a, b := s.Subscribe(), s.Subscribe()
	a.Watch([]byte("x"))
	b.Watch([]byte("x"))
	b.Watch([]byte("y"))
	require.Equal(t, 2, s.watchedKeys())

	for _, k := range []string{"x", "y", "z", "x"} {
		require.NoError(t, s.SetLWW([]byte(k), []byte("v")))
	}
	require.Equal(t, []string{"x"}, a.TakeChanged(nil))
	require.Empty(t, a.TakeChanged(nil), "taken once")
	require.Equal(t, []string{"x", "y"}, sorted(b.TakeChanged(nil)), "a's take leaves b's")

	a.Close()
	require.Equal(t, 2, s.watchedKeys(), "b still watches both")
	require.NoError(t, s.SetLWW([]byte("x"), []byte("w")))
	require.Empty(t, a.TakeChanged(nil), "closed")
	require.Equal(t, []string{"x"}, b.TakeChanged(nil))
	a.Watch([]byte("q"))
	require.Equal(t, 2, s.watchedKeys(), "a closed subscription watches nothing")
	b.Close()
	b.Close()
	require.Zero(t, s.watchedKeys())
}

// Watch calls count (an executor's caches sharing one subscription rely on
// it); the last Unwatch forgets a change not yet taken.
func TestSubscriptionWatchCounts(t *testing.T) {
	s := watchStore(t)
	sub := s.Subscribe()
	defer sub.Close()
	sub.Watch([]byte("k"))
	sub.Watch([]byte("k"))
	sub.Unwatch([]byte("k"))
	require.NoError(t, s.SetLWW([]byte("k"), []byte("1")))
	require.Equal(t, []string{"k"}, sub.TakeChanged(nil))
	require.NoError(t, s.SetLWW([]byte("k"), []byte("2")))
	sub.Unwatch([]byte("k"))
	sub.Unwatch([]byte("never"))
	require.Empty(t, sub.TakeChanged(nil))
	require.Zero(t, s.watchedKeys())
	require.NoError(t, s.SetLWW([]byte("k"), []byte("3")))
	require.Empty(t, sub.TakeChanged(nil))
}

// Directs made by NewDirect have subscriptions of their own; literals share
// the store's.
func TestDirectSubscriptions(t *testing.T) {
	s := watchStore(t)
	d1, d2 := NewDirect(s), NewDirect(s)
	defer d1.Close()
	defer d2.Close()
	lit1, lit2 := Direct{Store: s}, Direct{Store: s}
	for _, d := range []Direct{d1, d2, lit1} {
		d.Watch([]byte("k"))
	}
	require.NoError(t, s.SetLWW([]byte("k"), []byte("v")))
	require.Equal(t, []string{"k"}, d1.TakeChanged(nil))
	require.Equal(t, []string{"k"}, d2.TakeChanged(nil))
	require.Equal(t, []string{"k"}, lit2.TakeChanged(nil), "literals share one subscription")
	require.Empty(t, lit1.TakeChanged(nil))
}

// watchSet, the port's WATCH, is a set and all or nothing at its bound.
func TestWatchSetBound(t *testing.T) {
	s := watchStore(t)
	sub := s.Subscribe()
	defer sub.Close()
	keys := func(ks ...string) [][]byte {
		out := make([][]byte, len(ks))
		for i, k := range ks {
			out[i] = []byte(k)
		}
		return out
	}
	require.NoError(t, sub.watchSet(keys("a", "b", "a"), 3))
	require.NoError(t, sub.watchSet(keys("a", "b"), 3), "watched already: no more keys")
	err := sub.watchSet(keys("c", "d", "c"), 3)
	require.ErrorIs(t, err, ErrTooLarge)
	require.Equal(t, 2, sub.len(), "nothing applied")
	require.Equal(t, 2, s.watchedKeys())
	require.NoError(t, sub.watchSet(keys("c", "c"), 3))
	sub.unwatchSet(keys("a", "zz"))
	require.Equal(t, 2, sub.len(), "one unwatch undoes the set's watch")
}

// A bounded take leaves what does not fit for the next one.
func TestTakeChangedBudget(t *testing.T) {
	s := watchStore(t)
	sub := s.Subscribe()
	defer sub.Close()
	var all []string
	for i := range 10 {
		k := strings.Repeat(string(rune('a'+i)), 100)
		all = append(all, k)
		sub.Watch([]byte(k))
		require.NoError(t, s.SetLWW([]byte(k), nil))
	}
	first := sub.takeChanged(nil, 50)
	require.Len(t, first, 1, "the first key always")
	second := sub.takeChanged(nil, 350)
	require.Len(t, second, 3)
	rest := sub.takeChanged(nil, 1<<20)
	require.Len(t, rest, 6)
	require.Equal(t, all, sorted(append(append(first, second...), rest...)))
}

// nativeT is a test's native connection: one request at a time.
type nativeT struct {
	t  *testing.T
	c  net.Conn
	id uint64
}

func dialNativeT(t *testing.T, addr string) *nativeT {
	return &nativeT{t: t, c: dialNative(t, addr)}
}

func (n *nativeT) do(req wire.Request) *wire.Response {
	n.t.Helper()
	n.id++
	req.ID = n.id
	_, err := n.c.Write(req.AppendFrame(nil))
	require.NoError(n.t, err)
	r := readResponse(n.t, n.c)
	require.Equal(n.t, n.id, r.ID)
	return r
}

func bkeys(ks ...string) [][]byte {
	out := make([][]byte, len(ks))
	for i, k := range ks {
		out[i] = []byte(k)
	}
	return out
}

func (n *nativeT) watch(keys ...string) error {
	return n.do(wire.Request{Op: wire.OpWatch, Keys: bkeys(keys...)}).Err()
}

func (n *nativeT) unwatch(keys ...string) error {
	return n.do(wire.Request{Op: wire.OpUnwatch, Keys: bkeys(keys...)}).Err()
}

func (n *nativeT) changed() []string {
	n.t.Helper()
	r := n.do(wire.Request{Op: wire.OpChanged})
	items, err := r.Items(nil)
	require.NoError(n.t, err)
	out := []string{}
	for _, it := range items {
		require.Equal(n.t, wire.CodeOK, it.Code)
		out = append(out, string(it.Value))
	}
	return sorted(out)
}

func (n *nativeT) set(key, value string) error {
	return n.do(wire.Request{Op: wire.OpSet, Key: []byte(key), Value: []byte(value)}).Err()
}

func (n *nativeT) hello(token string) error {
	req := wire.Request{Op: wire.OpHello, Int: ProtocolVersion, Value: []byte("test")}
	if token != "" {
		req.Opts.Token = []byte(token)
	}
	return n.do(req).Err()
}

// waitUnwatched waits until the store watches no key: a closed
// connection's subscription is released by its event loop, after the
// client's close.
func waitUnwatched(t *testing.T, s *Store) {
	t.Helper()
	require.Eventually(t, func() bool { return s.watchedKeys() == 0 }, 10*time.Second, time.Millisecond,
		"a closed connection's watches are released")
}

func TestNativeWatch(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{})
	store := n.srv.Store()
	a, b, w := dialNativeT(t, n.srv.Addr()), dialNativeT(t, n.srv.Addr()), dialNativeT(t, n.srv.Addr())

	require.Equal(t, []string{}, a.changed(), "no watch yet")
	require.NoError(t, a.watch("k1", "k2"))
	require.NoError(t, b.watch("k1", "k3"))
	require.Equal(t, 3, store.watchedKeys())

	require.NoError(t, w.set("k1", "v"))
	require.NoError(t, w.set("k1", "v2"))
	require.NoError(t, w.set("k3", "v"))
	require.NoError(t, w.set("unwatched", "v"))
	require.Equal(t, []string{"k1"}, a.changed(), "once, however many writes")
	require.Equal(t, []string{}, a.changed(), "then forgotten")
	require.Equal(t, []string{"k1", "k3"}, b.changed(), "b's own record")

	// A write through another path (a delete) counts too.
	require.NoError(t, w.do(wire.Request{Op: wire.OpDelete, Key: []byte("k2")}).Err())
	require.Equal(t, []string{"k2"}, a.changed())

	require.NoError(t, a.unwatch("k1", "not-watched"))
	require.NoError(t, w.set("k1", "v3"))
	require.Equal(t, []string{}, a.changed(), "unwatched")
	require.Equal(t, []string{"k1"}, b.changed(), "b still watches")
	require.NoError(t, a.watch("k2", "k2"))
	require.NoError(t, a.unwatch("k2"), "a set: one unwatch stops a key watched twice")
	require.NoError(t, w.set("k2", "v"))
	require.Equal(t, []string{}, a.changed())

	require.NoError(t, a.c.Close())
	require.NoError(t, b.c.Close())
	waitUnwatched(t, store)
}

func TestNativeWatchLimits(t *testing.T) {
	n := startNode(t, StoreConfig{MaxKey: 8}, ServerConfig{MaxWatchKeys: 3})
	store := n.srv.Store()
	a, w := dialNativeT(t, n.srv.Addr()), dialNativeT(t, n.srv.Addr())

	require.ErrorIs(t, a.watch("ok", "123456789"), wire.ErrTooLarge, "a key over max_key")
	require.Zero(t, store.watchedKeys(), "nothing applied")
	require.NoError(t, a.watch("a", "b"))
	require.ErrorIs(t, a.watch("c", "d"), wire.ErrTooLarge, "a fourth key")
	require.NoError(t, w.set("d", "v"))
	require.NoError(t, w.set("c", "v"))
	require.Equal(t, []string{}, a.changed(), "nothing of the refused watch applied")
	require.NoError(t, a.watch("a", "c"), "a third key fits")
	require.NoError(t, w.set("c", "v"))
	require.Equal(t, []string{"c"}, a.changed())

	// A connection is unusable by no means: other requests still work.
	require.NoError(t, a.set("e", "v"))
	require.NoError(t, a.c.Close())
	waitUnwatched(t, store)
}

// On a cluster member the watch operations are the connection's, served
// before routing; a write that goes through the cluster is reported.
func TestNativeWatchClusterMember(t *testing.T) {
	n, _ := startClusterNode(t)
	a, w := dialNativeT(t, n.srv.Addr()), dialNativeT(t, n.srv.Addr())
	require.NoError(t, a.watch("mine:k", "theirs"), "no wrong owner for a watch")
	require.NoError(t, w.set("mine:k", "v"))
	require.Equal(t, []string{"mine:k"}, a.changed())
	require.NoError(t, a.unwatch("mine:k"))
	require.NoError(t, w.set("mine:k", "v2"))
	require.Equal(t, []string{}, a.changed())
	require.NoError(t, a.c.Close())
	waitUnwatched(t, n.srv.Store())
}

func TestSystemToken(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{Reserved: "_r/", SystemToken: "s3cret"})

	plain := dialNativeT(t, n.srv.Addr())
	require.NoError(t, plain.hello(""))
	require.ErrorIs(t, plain.set("_r/x", "v"), wire.ErrUnauthorized)
	require.NoError(t, plain.set("x", "v"), "outside the namespace")

	wrong := dialNativeT(t, n.srv.Addr())
	require.ErrorIs(t, wrong.hello("guess"), wire.ErrUnauthorized)
	require.ErrorIs(t, wrong.set("_r/x", "v"), wire.ErrUnauthorized, "not a system connection")

	sys := dialNativeT(t, n.srv.Addr())
	require.NoError(t, sys.hello("s3cret"))
	require.NoError(t, sys.set("_r/x", "v"))
	require.NoError(t, sys.do(wire.Request{Op: wire.OpPutMany, Keys: bkeys("_r/y"),
		Values: [][]byte{lattice.Encode(lattice.NewLWW(1, 1, []byte("v")))}}).Err())
	v, err := n.srv.Store().GetString([]byte("_r/x"), nil)
	require.NoError(t, err)
	require.Equal(t, "v", string(v))

	// A later HELLO with another token ends the connection's system status.
	require.ErrorIs(t, sys.hello("guess"), wire.ErrUnauthorized)
	require.ErrorIs(t, sys.set("_r/x", "w"), wire.ErrUnauthorized)

	// The Redis port has no system connections.
	r := dialRESP(t, n.srv.RESPAddr())
	require.True(t, strings.HasPrefix(r.do("SET", "_r/x", "v"), "(error) NOPERM"))
}

func TestNoSystemToken(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{Reserved: "_r/"})
	c := dialNativeT(t, n.srv.Addr())
	require.ErrorIs(t, c.hello("anything"), wire.ErrUnauthorized, "no token matches an empty system token")
	require.ErrorIs(t, c.set("_r/x", "v"), wire.ErrUnauthorized)
	require.NoError(t, c.hello(""), "a HELLO without a token is served")
	require.ErrorIs(t, c.set("_r/x", "v"), wire.ErrUnauthorized)
}

// A system connection writes the reserved namespace on a cluster member
// too (through the cluster, like any write).
func TestSystemTokenClusterMember(t *testing.T) {
	store := watchStore(t)
	fc := &fakeCluster{store: store}
	srv, err := NewServer(store, ServerConfig{Addr: "127.0.0.1:0", RESPAddr: AddrOff, Cluster: fc,
		Reserved: "mine:_r/", SystemToken: "s3cret"})
	require.NoError(t, err)
	n := runServer(t, srv)
	plain, sys := dialNativeT(t, n.srv.Addr()), dialNativeT(t, n.srv.Addr())
	require.ErrorIs(t, plain.set("mine:_r/x", "v"), wire.ErrUnauthorized)
	require.NoError(t, sys.hello("s3cret"))
	require.NoError(t, sys.set("mine:_r/x", "v"))
	fc.mu.Lock()
	require.Equal(t, []string{"set"}, fc.calls)
	fc.mu.Unlock()
}
