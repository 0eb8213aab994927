package kvs

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/wire"
)

// fakeCluster makes a node responsible for keys starting with "mine",
// serves writes through its store (slowly, when told to block), records
// replications, and answers forwarded commands with a marker.
type fakeCluster struct {
	store *Store
	mu    sync.Mutex
	calls []string // ops served
	repl  []string // keys replicated
	gate  chan struct{}
	local bool // writes are acknowledged locally: served on the event loop
	// inline counts the writes served on the event loop (Serve called
	// from Inline's yes, or a RESP write replicated with AckLocal).
	inline int
	// onLoop, when set, serves ServeOnLoop (set before the server runs).
	onLoop func(req *wire.Request, loop Loop, complete func([]byte)) bool
}

func (f *fakeCluster) Inline(req *wire.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.local && req.Op.IsWrite() && f.gate == nil {
		f.inline++
		return true
	}
	return false
}

func (f *fakeCluster) LocalAck(wire.Ack) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.local
}

func (f *fakeCluster) Responsible(key []byte) bool { return bytes.HasPrefix(key, []byte("mine")) }
func (f *fakeCluster) Epoch() uint64               { return 42 }
func (f *fakeCluster) Status() string              { return "active" }

func (f *fakeCluster) Serve(_ context.Context, _ string, req *wire.Request, out []byte) []byte {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	f.mu.Lock()
	f.calls = append(f.calls, req.Op.String())
	f.mu.Unlock()
	out, _ = f.store.Exec(req, out)
	return out
}

func (f *fakeCluster) ServeOnLoop(_ context.Context, req *wire.Request, loop Loop, complete func([]byte)) bool {
	return f.onLoop != nil && f.onLoop(req, loop, complete)
}

func (f *fakeCluster) ReplicateOnLoop(context.Context, []byte, wire.Ack, Loop, func(error)) bool {
	return false
}

func (f *fakeCluster) Replicate(_ context.Context, key []byte, _ wire.Ack) error {
	f.mu.Lock()
	f.repl = append(f.repl, string(key))
	f.mu.Unlock()
	return nil
}

func (f *fakeCluster) ForwardRESP(_ context.Context, key, _ []byte, _ bool) ([]byte, error) {
	return []byte("$" + itoa(len("forwarded:"+string(key))) + "\r\nforwarded:" + string(key) + "\r\n"), nil
}

func itoa(n int) string { return string(appendInt(nil, n)) }

func appendInt(b []byte, n int) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}

func startClusterNode(t *testing.T) (*testNode, *fakeCluster) {
	store, err := NewStore(StoreConfig{})
	require.NoError(t, err)
	fc := &fakeCluster{store: store}
	srv, err := NewServer(store, ServerConfig{Addr: "127.0.0.1:0", RESPAddr: "127.0.0.1:0", Cluster: fc})
	require.NoError(t, err)
	n := runServer(t, srv)
	return n, fc
}

// runServer runs srv until the test ends.
func runServer(t *testing.T, srv *Server) *testNode {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	<-srv.Ready()
	n := &testNode{srv: srv}
	n.stop = func() { cancel(); require.NoError(t, <-done) }
	t.Cleanup(func() { cancel(); <-done })
	return n
}

func TestNativeClusterMode(t *testing.T) {
	n, fc := startClusterNode(t)
	c := dialNative(t, n.srv.Addr())
	send := func(reqs ...*wire.Request) {
		var b []byte
		for _, r := range reqs {
			b = r.AppendFrame(b)
		}
		_, err := c.Write(b)
		require.NoError(t, err)
	}
	// A read of a key the node does not replicate: wrong owner, with epoch.
	send(&wire.Request{ID: 1, Op: wire.OpGet, Key: []byte("theirs")})
	r := readResponse(t, c)
	require.ErrorIs(t, r.Err(), wire.ErrWrongOwner)
	require.EqualValues(t, 42, r.Epoch)

	// A write goes through the cluster and completes later; the read
	// pipelined behind it waits its turn.
	gate := make(chan struct{})
	fc.mu.Lock()
	fc.gate = gate
	fc.mu.Unlock()
	send(&wire.Request{ID: 2, Op: wire.OpSet, Key: []byte("mine:k"), Value: []byte("v")},
		&wire.Request{ID: 3, Op: wire.OpPing, Value: []byte("after")})
	close(gate)
	r = readResponse(t, c)
	require.EqualValues(t, 2, r.ID)
	require.NoError(t, r.Err())
	r = readResponse(t, c)
	require.EqualValues(t, 3, r.ID)
	fc.mu.Lock()
	require.Equal(t, []string{"set"}, fc.calls)
	fc.mu.Unlock()
	v, err := fc.store.GetString([]byte("mine:k"), nil)
	require.NoError(t, err)
	require.Equal(t, "v", string(v))

	// A read by a client that routes by a newer epoch than the node's goes
	// through the cluster (which refreshes first); one at the node's epoch
	// is served on the loop.
	send(&wire.Request{ID: 4, Op: wire.OpGet, Key: []byte("mine:k"), Opts: wire.Options{Epoch: 43}},
		&wire.Request{ID: 5, Op: wire.OpGet, Key: []byte("mine:k"), Opts: wire.Options{Epoch: 42}})
	for id := uint64(4); id <= 5; id++ {
		r = readResponse(t, c)
		require.EqualValues(t, id, r.ID)
		require.NoError(t, r.Err())
	}
	fc.mu.Lock()
	require.Equal(t, []string{"set", "get"}, fc.calls)
	fc.mu.Unlock()
}

func TestRESPClusterMode(t *testing.T) {
	n, fc := startClusterNode(t)
	r := dialRESP(t, n.srv.RESPAddr())
	require.Equal(t, "OK", r.do("SET", "mine:a", "1"))
	fc.mu.Lock()
	require.Equal(t, []string{"mine:a"}, fc.repl, "a local write is replicated")
	fc.mu.Unlock()
	require.Equal(t, `"1"`, r.do("GET", "mine:a"))
	require.Equal(t, `"forwarded:theirs"`, r.do("GET", "theirs"))
	require.Equal(t, `"forwarded:theirs"`, r.do("SET", "theirs", "x"))
	require.Equal(t, "1) \"1\"\n2) \"forwarded:theirs\"", r.do("MGET", "mine:a", "theirs"))
	require.Equal(t, "(integer) 11", r.do("INCRBY", "mine:a", "10"), "Redis semantics run where the key lives")
}

// With writes acknowledged locally, a write of a key the node replicates
// runs on the event loop: through Serve on the native port, through the
// command and Replicate (which only queues) on the Redis port. Others still
// go aside.
func TestClusterModeLocalWritesInline(t *testing.T) {
	n, fc := startClusterNode(t)
	fc.mu.Lock()
	fc.local = true
	fc.mu.Unlock()
	c := dialNative(t, n.srv.Addr())
	_, err := c.Write((&wire.Request{ID: 1, Op: wire.OpSet, Key: []byte("mine:n"), Value: []byte("v")}).AppendFrame(nil))
	require.NoError(t, err)
	r := readResponse(t, c)
	require.NoError(t, r.Err())
	rc := dialRESP(t, n.srv.RESPAddr())
	require.Equal(t, "OK", rc.do("SET", "mine:r", "1"))
	require.Equal(t, "(integer) 2", rc.do("INCR", "mine:r"))
	require.Equal(t, `"forwarded:theirs"`, rc.do("SET", "theirs", "x"))
	fc.mu.Lock()
	defer fc.mu.Unlock()
	require.Equal(t, 1, fc.inline, "the native write was served inline")
	require.Equal(t, []string{"set"}, fc.calls)
	require.Equal(t, []string{"mine:r", "mine:r"}, fc.repl, "the Redis writes were replicated (queued)")
	v, err := fc.store.GetString([]byte("mine:n"), nil)
	require.NoError(t, err)
	require.Equal(t, "v", string(v))
}
