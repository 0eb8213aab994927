package cluster_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/cluster"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/resp"
	"github.com/trellisdb/trellis/route"
)

// silentRESP accepts connections, reads a command and hangs up without an
// answer: a forwarded command whose reply is lost. It counts the commands.
func silentRESP(t *testing.T) (addr string, got *atomic.Int32) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	got = new(atomic.Int32)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			if n, _ := c.Read(buf); n > 0 {
				got.Add(1)
			}
			c.Close()
		}
	}()
	return ln.Addr().String(), got
}

// TestForwardRetriesOnlyIdempotentCommands: a forwarded SET whose answer
// is lost is tried on the key's next replica; an INCR is not (it may have
// been applied), and fails.
func TestForwardRetriesOnlyIdempotentCommands(t *testing.T) {
	store, err := kvs.NewStore(kvs.StoreConfig{NodeID: 1, Logger: quiet})
	require.NoError(t, err)
	n, err := cluster.New(cluster.Config{ID: 1, Store: store, Transport: cluster.NewTCPTransport(client.Options{}), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(n.Close)
	a2, got2 := silentRESP(t)
	a3, got3 := silentRESP(t)
	st := route.State{Epoch: 1, DefaultRF: 2, Members: []route.Member{
		{ID: 2, Addr: "127.0.0.1:1", RESPAddr: a2, State: route.Active},
		{ID: 3, Addr: "127.0.0.1:2", RESPAddr: a3, State: route.Active},
	}}
	require.NoError(t, n.SetState(st))
	ctx := context.Background()

	_, err = n.ForwardRESP(ctx, []byte("k"), resp.AppendCommandString(nil, "SET", "k", "v"), false)
	require.Error(t, err)
	require.EqualValues(t, 2, got2.Load()+got3.Load(), "a SET is tried on both replicas")

	_, err = n.ForwardRESP(ctx, []byte("k"), resp.AppendCommandString(nil, "INCR", "k"), true)
	require.ErrorContains(t, err, "may have been applied")
	require.EqualValues(t, 3, got2.Load()+got3.Load(), "an INCR is sent once")
}
