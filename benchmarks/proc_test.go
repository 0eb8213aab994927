package benchmarks

import (
	"net"
	"os"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseVmRSS(t *testing.T) {
	rss, err := parseVmRSS([]byte("Name:\tredis-server\nVmHWM:\t  99 kB\nVmRSS:\t   12345 kB\nThreads: 4\n"))
	require.NoError(t, err)
	require.Equal(t, int64(12345*1024), rss)
	_, err = parseVmRSS([]byte("Name:\tkthreadd\n"))
	require.Error(t, err)
	_, err = parseVmRSS([]byte("VmRSS:\t12 MB\n"))
	require.Error(t, err)
}

func TestListeningInodes(t *testing.T) {
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1E14 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1E14 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 00000000:1CC8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0000000000000000 100 0 0 10 0
`
	require.Equal(t, []string{"4242"}, listeningInodes([]byte(table), 7700))
	require.Equal(t, []string{"777"}, listeningInodes([]byte(table), 7368))
	require.Empty(t, listeningInodes([]byte(table), 50000), "an established connection is not a listener")
}

func TestProcessRSSAndListenerPIDOfThisProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	rss, err := ProcessRSS(os.Getpid())
	require.NoError(t, err)
	require.Greater(t, rss, int64(1<<20))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	pid, err := ListenerPID(ln.Addr().String())
	require.NoError(t, err)
	require.Equal(t, os.Getpid(), pid)

	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, err = ListenerPID(addr)
	require.ErrorIs(t, err, ErrNoPID)
}
