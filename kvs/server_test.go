package kvs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/internal/leakcheck"
	"github.com/trellisdb/trellis/resp"
	"github.com/trellisdb/trellis/wire"
)

func TestMain(m *testing.M) { leakcheck.VerifyTestMain(m) }

// testNode is a storage node serving on loopback ports the OS picked.
type testNode struct {
	srv  *Server
	stop func()
}

func startNode(t testing.TB, scfg StoreConfig, cfg ServerConfig) *testNode {
	t.Helper()
	store, err := NewStore(scfg)
	require.NoError(t, err)
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.RESPAddr == "" {
		cfg.RESPAddr = "127.0.0.1:0"
	}
	srv, err := NewServer(store, cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("server did not become ready")
	}
	n := &testNode{srv: srv}
	stopped := false
	n.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	}
	t.Cleanup(n.stop)
	return n
}

// respConnT is a raw RESP client for tests.
type respConnT struct {
	t   testing.TB
	c   net.Conn
	buf []byte
}

func dialRESP(t testing.TB, addr string) *respConnT {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return &respConnT{t: t, c: c}
}

func (r *respConnT) send(args ...string) {
	r.t.Helper()
	_, err := r.c.Write(resp.AppendCommandString(nil, args...))
	require.NoError(r.t, err)
}

func (r *respConnT) read() resp.Reply {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	chunk := make([]byte, 64<<10)
	for {
		if len(r.buf) > 0 {
			rep, n, err := resp.ParseReply(r.buf, resp.Limits{})
			if err == nil {
				r.buf = r.buf[n:]
				return rep
			}
			require.ErrorIs(r.t, err, resp.ErrIncomplete)
		}
		n, err := r.c.Read(chunk)
		require.NoError(r.t, err)
		r.buf = append(r.buf, chunk[:n]...)
	}
}

// do sends a command and returns its reply rendered like redis-cli.
func (r *respConnT) do(args ...string) string {
	r.t.Helper()
	r.send(args...)
	return r.read().String()
}

// closed reports whether the server closed the connection (after any
// pending replies).
func (r *respConnT) closed() bool {
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(r.c)
	return err == nil
}

func TestRESPCommands(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{})
	r := dialRESP(t, n.srv.RESPAddr())
	steps := []struct {
		cmd  []string
		want string
	}{
		{[]string{"PING"}, "PONG"},
		{[]string{"ping", "hi"}, `"hi"`},
		{[]string{"ECHO", "x y"}, `"x y"`},
		{[]string{"GET", "k"}, "(nil)"},
		{[]string{"SET", "k", "v"}, "OK"},
		{[]string{"GET", "k"}, `"v"`},
		{[]string{"SET", "k", "v", "EX", "10"}, "(error) ERR SET option 'EX' is not supported by Trellis yet"},
		{[]string{"SET", "k", "v", "BOGUS"}, "(error) ERR syntax error"},
		{[]string{"GET"}, "(error) ERR wrong number of arguments for 'get' command"},
		{[]string{"SADD", "k", "m"}, "(error) WRONGTYPE Operation against a key holding the wrong kind of value"},
		{[]string{"GET", "k"}, `"v"`},
		{[]string{"SADD", "s", "a", "b", "a"}, "(integer) 2"},
		{[]string{"SISMEMBER", "s", "a"}, "(integer) 1"},
		{[]string{"SREM", "s", "a"}, "(integer) 1"},
		{[]string{"SMEMBERS", "s"}, `1) "b"`},
		{[]string{"SCARD", "s"}, "(integer) 1"},
		{[]string{"GET", "s"}, "(error) WRONGTYPE Operation against a key holding the wrong kind of value"},
		{[]string{"INCR", "s"}, "(error) WRONGTYPE Operation against a key holding the wrong kind of value"},
		{[]string{"INCR", "c"}, "(integer) 1"},
		{[]string{"INCRBY", "c", "41"}, "(integer) 42"},
		{[]string{"DECR", "c"}, "(integer) 41"},
		{[]string{"DECRBY", "c", "40"}, "(integer) 1"},
		{[]string{"GET", "c"}, `"1"`},
		{[]string{"INCRBY", "c", "x"}, "(error) ERR value is not an integer or out of range"},
		{[]string{"SET", "n", "10"}, "OK"},
		{[]string{"INCR", "n"}, "(integer) 11"},
		{[]string{"SET", "word", "abc"}, "OK"},
		{[]string{"INCR", "word"}, "(error) ERR value is not an integer or out of range"},
		{[]string{"SET", "big", "9223372036854775807"}, "OK"},
		{[]string{"INCR", "big"}, "(error) ERR increment or decrement would overflow"},
		{[]string{"TYPE", "s"}, "set"},
		{[]string{"TYPE", "c"}, "string"},
		{[]string{"TYPE", "nope"}, "none"},
		{[]string{"MSET", "a", "1", "b", "2"}, "OK"},
		{[]string{"MSET", "a", "1", "b"}, "(error) ERR wrong number of arguments for 'mset' command"},
		{[]string{"MGET", "a", "nope", "s", "b"}, "1) \"1\"\n2) (nil)\n3) (nil)\n4) \"2\""},
		{[]string{"EXISTS", "a", "a", "nope"}, "(integer) 2"},
		{[]string{"DEL", "a", "b", "nope"}, "(integer) 2"},
		{[]string{"EXISTS", "a"}, "(integer) 0"},
		{[]string{"DBSIZE"}, "(integer) 6"},
		{[]string{"SET", "s", "replaced"}, "OK"},
		{[]string{"GET", "s"}, `"replaced"`},
		{[]string{"SELECT", "0"}, "OK"},
		{[]string{"SELECT", "1"}, "(error) ERR DB index is out of range"},
		{[]string{"CONFIG", "GET", "save"}, "1) \"save\"\n2) \"\""},
		{[]string{"COMMAND", "DOCS"}, "(empty array)"},
		{[]string{"CLIENT", "SETNAME", "me"}, "OK"},
		{[]string{"CLIENT", "GETNAME"}, `"me"`},
		{[]string{"HELLO", "3"}, "(error) NOPROTO unsupported protocol version"},
		{[]string{"NOSUCH", "a", "b"}, "(error) ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' "},
	}
	for _, st := range steps {
		require.Equal(t, st.want, r.do(st.cmd...), "%v", st.cmd)
	}
	info := r.do("INFO")
	require.Contains(t, info, "redis_version:")
	require.Contains(t, info, "# Keyspace")
	require.Contains(t, info, "db0:keys=6")
	count := r.do("COMMAND", "COUNT")
	require.True(t, strings.HasPrefix(count, "(integer) "))
	require.Equal(t, "OK", r.do("QUIT"))
	require.True(t, r.closed())
}

// Many commands in one write come back in order.
func TestRESPPipelining(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{})
	r := dialRESP(t, n.srv.RESPAddr())
	var batch []byte
	for i := range 500 {
		batch = resp.AppendCommandString(batch, "SET", fmt.Sprintf("k%d", i), fmt.Sprintf("v%d", i))
		batch = resp.AppendCommandString(batch, "GET", fmt.Sprintf("k%d", i))
	}
	_, err := r.c.Write(batch)
	require.NoError(t, err)
	for i := range 500 {
		require.Equal(t, "OK", r.read().String())
		require.Equal(t, fmt.Sprintf("%q", fmt.Sprintf("v%d", i)), r.read().String())
	}
}

// A value arriving in many small writes is assembled without error.
func TestRESPLargeValueInPieces(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{})
	r := dialRESP(t, n.srv.RESPAddr())
	value := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB
	cmd := resp.AppendCommand(nil, []byte("SET"), []byte("big"), value)
	for len(cmd) > 0 {
		k := min(len(cmd), 8192)
		_, err := r.c.Write(cmd[:k])
		require.NoError(t, err)
		cmd = cmd[k:]
	}
	require.Equal(t, "OK", r.read().String())
	r.send("GET", "big")
	rep := r.read()
	require.Equal(t, value, rep.Str)
}

// heapAfterGC returns the live heap after a collection.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// Hostile RESP input gets an error reply and a closed connection; the server
// keeps its data and serves other clients; memory stays bounded.
func TestRESPHostileInput(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{})
	good := dialRESP(t, n.srv.RESPAddr())
	require.Equal(t, "OK", good.do("SET", "keep", "me"))
	before := heapAfterGC()

	cases := map[string]struct {
		input []byte
		reply string
	}{
		"huge multibulk":   {[]byte("*2147483647\r\n"), "Protocol error: invalid multibulk length"},
		"huge bulk":        {[]byte("*1\r\n$2147483647\r\n"), "Protocol error: invalid bulk length"},
		"8 MiB no newline": {bytes.Repeat([]byte("a"), 8<<20), "Protocol error: too big inline request"},
		"bad bulk header":  {[]byte("*1\r\n+x\r\n"), "Protocol error: expected '$', got '+'"},
		"negative bulk":    {[]byte("*1\r\n$-5\r\n"), "Protocol error: invalid bulk length"},
		"unbalanced quote": {[]byte("SET \"abc\r\n"), "Protocol error: unbalanced quotes in request"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			bad := dialRESP(t, n.srv.RESPAddr())
			_, _ = bad.c.Write(c.input) // the server may close before reading it all
			rep := bad.read()
			require.Equal(t, resp.KindError, rep.Kind)
			require.Equal(t, "ERR "+c.reply, string(rep.Str))
			require.True(t, bad.closed())
			require.Equal(t, `"me"`, good.do("GET", "keep"), "other clients and data unaffected")
		})
	}
	// Truncated command, then the client disconnects.
	trunc := dialRESP(t, n.srv.RESPAddr())
	_, err := trunc.c.Write([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100\r\nabc"))
	require.NoError(t, err)
	trunc.c.Close()
	require.Equal(t, `"me"`, good.do("GET", "keep"))
	require.Less(t, int64(heapAfterGC())-int64(before), int64(32<<20), "memory stays bounded")
}

func dialNative(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// readResponse reads one native response frame.
func readResponse(t testing.TB, c net.Conn) *wire.Response {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [4]byte
	_, err := io.ReadFull(c, hdr[:])
	require.NoError(t, err)
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	_, err = io.ReadFull(c, body)
	require.NoError(t, err)
	var r wire.Response
	require.NoError(t, r.Decode(body, wire.Limits{}))
	return &r
}

func frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func be32(code byte, n uint32) []byte { return binary.BigEndian.AppendUint32([]byte{code}, n) }

// Hostile native frames: a bad body gets a bad-request reply and the
// connection stays usable; a bad length gets an error and a close.
func TestNativeHostileInput(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{})
	ok := dialNative(t, n.srv.Addr())
	set := (&wire.Request{ID: 1, Op: wire.OpSet, Key: []byte("keep"), Value: []byte("me")}).AppendFrame(nil)
	_, err := ok.Write(set)
	require.NoError(t, err)
	require.NoError(t, readResponse(t, ok).Err())
	before := heapAfterGC()

	get := (&wire.Request{ID: 2, Op: wire.OpGet, Key: []byte("keep")}).AppendFrame(nil)
	stillServes := func() {
		t.Helper()
		_, err := ok.Write(get)
		require.NoError(t, err)
		r := readResponse(t, ok)
		require.NoError(t, r.Err())
	}

	bodies := map[string][]byte{
		"bin32 2^31":   append([]byte{0x94, 0x05, 0x03, 0x80}, append(be32(0xc6, 1<<31), 'k')...),
		"array32 2^31": append([]byte{0x94, 0x06, 0x06, 0x80}, append(be32(0xdd, 1<<31), 0xc0)...),
		"map32 2^31":   append([]byte{0x93, 0x07, 0x03}, append(be32(0xdf, 1<<31), 0xc0)...),
		"100k deep":    append(bytes.Repeat([]byte{0x91}, 100_000), 0xc0),
		"garbage":      []byte("hello there, not msgpack"),
		"unknown op":   {0x93, 0x08, 0xcc, 0xee, 0x80},
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			c := dialNative(t, n.srv.Addr())
			_, err := c.Write(frame(body))
			require.NoError(t, err)
			r := readResponse(t, c)
			require.ErrorIs(t, r.Err(), wire.ErrBadRequest)
			// The connection is still usable.
			_, err = c.Write(get)
			require.NoError(t, err)
			require.NoError(t, readResponse(t, c).Err())
			stillServes()
		})
	}
	t.Run("4 GiB frame", func(t *testing.T) {
		c := dialNative(t, n.srv.Addr())
		_, err := c.Write([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3})
		require.NoError(t, err)
		r := readResponse(t, c)
		require.ErrorIs(t, r.Err(), wire.ErrTooLarge)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = io.ReadAll(c)
		require.NoError(t, err, "closed by the server")
		stillServes()
	})
	t.Run("truncated then hang up", func(t *testing.T) {
		c := dialNative(t, n.srv.Addr())
		_, err := c.Write([]byte{0, 0, 1, 0, 0x94, 0x01})
		require.NoError(t, err)
		c.Close()
		stillServes()
	})
	require.Less(t, int64(heapAfterGC())-int64(before), int64(32<<20), "memory stays bounded")
}

func TestMaxConnections(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{MaxConns: 2})
	a := dialRESP(t, n.srv.RESPAddr())
	require.Equal(t, "PONG", a.do("PING"))
	b := dialNative(t, n.srv.Addr())
	_, err := b.Write((&wire.Request{ID: 1, Op: wire.OpPing}).AppendFrame(nil))
	require.NoError(t, err)
	require.NoError(t, readResponse(t, b).Err())

	c := dialRESP(t, n.srv.RESPAddr())
	rep := c.read()
	require.Equal(t, "ERR max number of clients reached", string(rep.Str))
	require.True(t, c.closed())
	d := dialNative(t, n.srv.Addr())
	require.ErrorIs(t, readResponse(t, d).Err(), wire.ErrUnavailable)

	// Closing one frees a slot.
	a.c.Close()
	require.Eventually(t, func() bool { return n.srv.conns.Load() == 1 }, 10*time.Second, 5*time.Millisecond)
	e := dialRESP(t, n.srv.RESPAddr())
	require.Equal(t, "PONG", e.do("PING"))
}

func TestServerStopsAndReleasesPorts(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{})
	addr, raddr := n.srv.Addr(), n.srv.RESPAddr()
	r := dialRESP(t, raddr)
	require.Equal(t, "PONG", r.do("PING"))
	n.stop()
	require.True(t, r.closed(), "open connections are closed on stop")
	// The ports are free again.
	for _, a := range []string{addr, raddr} {
		l, err := net.Listen("tcp", a)
		require.NoError(t, err)
		l.Close()
	}
}

func TestListenErrorIsReported(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	store, err := NewStore(StoreConfig{})
	require.NoError(t, err)
	srv, err := NewServer(store, ServerConfig{Addr: l.Addr().String(), RESPAddr: "127.0.0.1:0"})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = srv.Run(ctx)
	require.Error(t, err)
	require.Contains(t, err.Error(), l.Addr().String())
	require.False(t, errors.Is(err, context.DeadlineExceeded))
}

// A durable write is answered only once the disk has synced it, and the
// responses behind it keep their order.
func TestDurableAcknowledgement(t *testing.T) {
	d := newMemDisk()
	n := startNode(t, StoreConfig{Disk: d, FlushEvery: time.Hour, Logger: quiet}, ServerConfig{})
	c := dialNative(t, n.srv.Addr())
	var batch []byte
	batch = (&wire.Request{ID: 1, Op: wire.OpSet, Key: []byte("k"), Value: []byte("v"),
		Opts: wire.Options{Ack: wire.AckDurable}}).AppendFrame(batch)
	batch = (&wire.Request{ID: 2, Op: wire.OpGet, Key: []byte("k")}).AppendFrame(batch)
	_, err := c.Write(batch)
	require.NoError(t, err)
	r1 := readResponse(t, c)
	require.NoError(t, r1.Err())
	require.EqualValues(t, 1, r1.ID)
	_, ok := d.get("k")
	require.True(t, ok, "on disk before it was acknowledged")
	r2 := readResponse(t, c)
	require.EqualValues(t, 2, r2.ID)
	require.NoError(t, r2.Err())
}

// A node without a disk refuses a durable write and does not apply it.
func TestDurableWithoutDisk(t *testing.T) {
	n := startNode(t, StoreConfig{}, ServerConfig{})
	c := dialNative(t, n.srv.Addr())
	_, err := c.Write((&wire.Request{ID: 1, Op: wire.OpSet, Key: []byte("k"), Value: []byte("v"),
		Opts: wire.Options{Ack: wire.AckDurable}}).AppendFrame(nil))
	require.NoError(t, err)
	require.ErrorIs(t, readResponse(t, c).Err(), wire.ErrUnavailable)
	require.False(t, n.srv.Store().Exists([]byte("k")))
}
