package client_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/kvs"
)

// startNodeWith runs a storage node with cfg on loopback and returns its
// native address and a function that stops it.
func startNodeWith(t *testing.T, cfg kvs.ServerConfig) (string, func()) {
	t.Helper()
	store, err := kvs.NewStore(kvs.StoreConfig{})
	require.NoError(t, err)
	cfg.Addr, cfg.RESPAddr = "127.0.0.1:0", kvs.AddrOff
	srv, err := kvs.NewServer(store, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("node did not start: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return srv.Addr(), stop
}

func watcher(t *testing.T, c *client.Client) *client.Watcher {
	t.Helper()
	w, err := c.Watcher(ctx(t))
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	return w
}

func changed(t *testing.T, w *client.Watcher) []string {
	t.Helper()
	keys, err := w.Changed(ctx(t), []string{})
	require.NoError(t, err)
	slices.Sort(keys)
	return keys
}

func TestWatcher(t *testing.T) {
	addr, _ := startNode(t)
	c := dial(t, addr, client.Options{Conns: 1})
	ctx := ctx(t)
	w1, w2 := watcher(t, c), watcher(t, c)

	require.NoError(t, w1.Watch(ctx, []byte("a"), []byte("b")))
	require.NoError(t, w2.Watch(ctx, []byte("b"), []byte("c")))
	require.NoError(t, c.Set(ctx, "a", []byte("1")))
	require.NoError(t, c.Set(ctx, "b", []byte("1")))
	require.NoError(t, c.Set(ctx, "b", []byte("2")))
	_, err := c.Delete(ctx, "c")
	require.NoError(t, err)
	require.NoError(t, c.Set(ctx, "d", []byte("1")))

	require.Equal(t, []string{"a", "b"}, changed(t, w1), "each written key once")
	require.Equal(t, []string{}, changed(t, w1), "then forgotten")
	require.Equal(t, []string{"b", "c"}, changed(t, w2), "independent of w1")

	require.NoError(t, w1.Unwatch(ctx, []byte("a"), []byte("never")))
	require.NoError(t, c.Set(ctx, "a", []byte("2")))
	require.NoError(t, c.Set(ctx, "b", []byte("3")))
	require.Equal(t, []string{"b"}, changed(t, w1))

	keys, err := w1.Changed(ctx, []string{"kept"})
	require.NoError(t, err)
	require.Equal(t, []string{"kept"}, keys, "appends to dst")

	require.NoError(t, w1.Close())
	require.NoError(t, w1.Close())
	_, err = w1.Changed(ctx, nil)
	require.ErrorIs(t, err, client.ErrClosed)
	require.NoError(t, c.Ping(ctx), "the client is unaffected")
}

func TestWatcherLimits(t *testing.T) {
	addr, _ := startNodeWith(t, kvs.ServerConfig{MaxWatchKeys: 2})
	c := dial(t, addr, client.Options{})
	ctx := ctx(t)
	w := watcher(t, c)
	require.NoError(t, w.Watch(ctx, []byte("a")))
	require.ErrorIs(t, w.Watch(ctx, []byte("b"), []byte("c")), client.ErrTooLarge)
	require.ErrorIs(t, w.Watch(ctx, make([]byte, c.Info().MaxKey+1)), client.ErrTooLarge)
	require.NoError(t, w.Watch(ctx, []byte("b")), "the refused watch applied nothing")
}

// A lost connection takes the watches with it: the Watcher says so and
// does not quietly reconnect.
func TestWatcherConnectionLoss(t *testing.T) {
	addr, stop := startNode(t)
	c := dial(t, addr, client.Options{})
	ctx := ctx(t)
	w := watcher(t, c)
	require.NoError(t, w.Watch(ctx, []byte("a")))
	stop()
	_, err := w.Changed(ctx, nil)
	require.ErrorIs(t, err, client.ErrConnLost)
	require.ErrorIs(t, w.Watch(ctx, []byte("a")), client.ErrConnLost, "still lost")
}

func TestWatcherOfClosedClient(t *testing.T) {
	addr, _ := startNode(t)
	c := dial(t, addr, client.Options{})
	require.NoError(t, c.Close())
	_, err := c.Watcher(ctx(t))
	require.ErrorIs(t, err, client.ErrClosed)
}

func TestSystemToken(t *testing.T) {
	addr, _ := startNodeWith(t, kvs.ServerConfig{Reserved: "_trellis/", SystemToken: "s3cret"})
	ctx := ctx(t)

	_, err := client.Dial(ctx, addr, client.Options{Token: "guess"})
	require.ErrorIs(t, err, client.ErrUnauthorized)

	plain := dial(t, addr, client.Options{})
	require.ErrorIs(t, plain.Set(ctx, "_trellis/x", []byte("v")), client.ErrUnauthorized)

	sys := dial(t, addr, client.Options{Token: "s3cret", Conns: 3})
	for range 3 { // every pooled connection presented it
		require.NoError(t, sys.Set(ctx, "_trellis/x", []byte("v")))
	}
	v, err := plain.GetBytes(ctx, "_trellis/x")
	require.NoError(t, err)
	require.Equal(t, "v", string(v))

	// A Watcher dials with its client's token.
	w := watcher(t, sys)
	require.NoError(t, w.Watch(ctx, []byte("_trellis/x")))
}

func TestTokenWithoutSystemToken(t *testing.T) {
	addr, _ := startNode(t)
	_, err := client.Dial(ctx(t), addr, client.Options{Token: "anything"})
	require.ErrorIs(t, err, client.ErrUnauthorized)
}
