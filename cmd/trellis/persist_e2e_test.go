package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/resp"
)

// A node with a data directory keeps its data across a clean restart.
func TestUpPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "--addr", "127.0.0.1:0", "--resp-addr", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn")
	for _, c := range [][]string{{"set", "greeting", "hello"}, {"incr", "visits"}, {"incr", "visits"},
		{"sadd", "tags", "go", "lattice"}, {"set", "doomed", "x"}, {"del", "doomed"}} {
		_, code := cli(t, n.native, "", c...)
		require.Zero(t, code, "%v", c)
	}
	// Redis semantics (a string holding an integer becomes a counter, under a
	// new delete epoch) come through the Redis port.
	require.Equal(t, "+OK", respDo(t, n.redis, "SET", "n", "10"))
	require.Equal(t, ":11", respDo(t, n.redis, "INCR", "n"))
	n.stop(t)

	r := startNode(t, "--addr", "127.0.0.1:0", "--resp-addr", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn")
	require.Equal(t, n.id, r.id)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "greeting"}, "\"hello\"\n"},
		{[]string{"get", "visits"}, "(integer) 2\n"},
		{[]string{"smembers", "tags"}, "1) \"go\"\n2) \"lattice\"\n"},
		{[]string{"get", "doomed"}, "(nil)\n"},
		{[]string{"get", "n"}, "(integer) 11\n"},
	} {
		out, code := cli(t, r.native, "", c.args...)
		require.Zero(t, code, "%v", c.args)
		require.Equal(t, c.want, out, "%v", c.args)
	}
	r.stop(t)
}

// Writes acknowledged as durable survive SIGKILL: nothing gets the chance
// to flush on the way down.
func TestDurableWritesSurviveKill(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, "--addr", "127.0.0.1:0", "--resp-addr", "off", "--data-dir", dir, "--log-level", "warn")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.native, client.Options{})
	require.NoError(t, err)
	durable := c.WithAck(client.AckDurable)
	const keys = 200
	for i := range keys {
		require.NoError(t, durable.Set(ctx, fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("v%d", i))))
	}
	_, err = durable.CounterAdd(ctx, "ctr", 7)
	require.NoError(t, err)
	c.Close()
	require.NoError(t, n.cmd.Process.Signal(syscall.SIGKILL))
	<-n.exited

	r := startNode(t, "--addr", "127.0.0.1:0", "--resp-addr", "off", "--data-dir", dir, "--log-level", "warn")
	c, err = client.Dial(ctx, r.native, client.Options{})
	require.NoError(t, err)
	defer c.Close()
	for i := range keys {
		v, err := c.GetBytes(ctx, fmt.Sprintf("k%d", i))
		require.NoError(t, err, "k%d", i)
		require.Equal(t, fmt.Sprintf("v%d", i), string(v))
	}
	v, err := c.CounterValue(ctx, "ctr")
	require.NoError(t, err)
	require.EqualValues(t, 7, v)
	r.stop(t)
}

// A node with max-memory keeps about that much of its keys in memory and
// the rest in its disk tier, reads them back when they are used, and starts
// again with them.
func TestUpMaxMemory(t *testing.T) {
	const budget = 64 << 10
	dir := t.TempDir()
	args := []string{"--addr", "127.0.0.1:0", "--resp-addr", "127.0.0.1:0", "--data-dir", dir, "--log-level", "warn",
		"--max-memory", fmt.Sprint(budget)}
	n := startNode(t, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, n.native, client.Options{})
	require.NoError(t, err)
	const keys = 3000
	value := func(i int) string { return fmt.Sprintf("%04d%s", i, strings.Repeat("v", 96)) }
	for i := range keys {
		require.NoError(t, c.Set(ctx, fmt.Sprintf("k%d", i), []byte(value(i))))
	}
	info := respInfo(t, n.redis)
	require.Equal(t, fmt.Sprint(budget), info["maxmemory"])
	// The flusher moves clean keys out within a few flushes (10 ms apart).
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		info = respInfo(c, n.redis)
		require.LessOrEqual(c, atoiInfo(c, info, "used_memory_dataset"), budget, "memory comes down to the budget")
	}, 20*time.Second, 10*time.Millisecond)
	require.Greater(t, atoiInfo(t, info, "keys_on_disk_only"), keys/2)
	require.Equal(t, "db0:keys=3000,expires=0,avg_ttl=0", "db0:"+info["db0"])
	for i := range keys {
		v, err := c.GetBytes(ctx, fmt.Sprintf("k%d", i))
		require.NoError(t, err)
		require.Equal(t, value(i), string(v))
	}
	require.Positive(t, atoiInfo(t, respInfo(t, n.redis), "keys_read_back"))
	c.Close()
	n.stop(t)

	r := startNode(t, args...)
	info = respInfo(t, r.redis)
	require.Greater(t, atoiInfo(t, info, "keys_on_disk_only"), keys/2, "left on disk at start")
	c, err = client.Dial(ctx, r.native, client.Options{})
	require.NoError(t, err)
	defer c.Close()
	for i := range keys {
		v, err := c.GetBytes(ctx, fmt.Sprintf("k%d", i))
		require.NoError(t, err)
		require.Equal(t, value(i), string(v))
	}
	r.stop(t)
}

func atoiInfo(t require.TestingT, info map[string]string, key string) int {
	n, err := strconv.Atoi(info[key])
	require.NoError(t, err, "INFO %s", key)
	return n
}

// respDo sends one command to a Redis-protocol address and returns the first
// line of the reply, without its CRLF.
func respDo(t require.TestingT, addr string, args ...string) string {
	_, raw := respRaw(t, addr, args...)
	line, _, _ := strings.Cut(string(raw), "\r\n")
	return line
}

// respCall sends one command to a Redis-protocol address and returns its
// reply.
func respCall(t require.TestingT, addr string, args ...string) resp.Reply {
	r, _ := respRaw(t, addr, args...)
	return r
}

// respRaw sends one command on a new connection and returns the reply and
// its encoding.
func respRaw(t require.TestingT, addr string, args ...string) (resp.Reply, []byte) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	_, err = conn.Write(resp.AppendCommandString(nil, args...))
	require.NoError(t, err)
	r, raw, err := resp.ReadReply(conn, nil, resp.Limits{})
	require.NoError(t, err)
	return r, raw
}
