//go:build linux

package resp_test

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/resp"
)

// guarded returns a len-byte buffer whose bytes from readable on cannot be
// read: touching them kills the test process. It proves how far a parser
// looks into its input.
func guarded(t *testing.T, size, readable int) []byte {
	t.Helper()
	page := syscall.Getpagesize()
	readable = (readable + page - 1) / page * page
	mem, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Munmap(mem) })
	for i := range readable {
		mem[i] = '1'
	}
	require.NoError(t, syscall.Mprotect(mem[readable:], syscall.PROT_NONE))
	return mem
}

// An 8 MiB line without a newline is refused without reading past the
// limit.
func TestLongLinesAreRefusedUnread(t *testing.T) {
	const size = 8 << 20
	cases := []struct {
		prefix, msg string
	}{
		{"", errTooBigInline},
		{"*", errTooBigMbulk},
		{"*1\r\n$", errTooBigBulk},
	}
	for _, tc := range cases {
		buf := guarded(t, size, 64<<10+len(tc.prefix)+1)
		copy(buf, tc.prefix)
		_, _, err := resp.ParseCommand(buf, nil, resp.Limits{})
		require.ErrorIs(t, err, resp.ErrProtocol)
		require.Equal(t, tc.msg, err.Error())
	}
	for _, prefix := range []string{"+", "-", ":", "$", "*", "*1\r\n+"} {
		buf := guarded(t, size, 64<<10+len(prefix)+2)
		copy(buf, prefix)
		_, _, err := resp.ParseReply(buf, resp.Limits{MaxBulk: 64 << 10})
		require.ErrorIs(t, err, resp.ErrProtocol, prefix)
	}
}
