package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/lattice"
)

func TestSplitLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want []string
	}{
		{"set k v\n", []string{"set", "k", "v"}},
		{"  SET   k   v  \r\n", []string{"SET", "k", "v"}},
		{`set k "hello world"`, []string{"set", "k", "hello world"}},
		{`set k 'it''s'`, nil}, // a closing quote must be followed by a blank
		{`set k 'a "b" \'c\''`, []string{"set", "k", `a "b" 'c'`}},
		{`set k "tab\there\x41\x7a\n"`, []string{"set", "k", "tab\thereAz\n"}},
		{`set k ""`, []string{"set", "k", ""}},
		{`*3 is not multibulk`, []string{"*3", "is", "not", "multibulk"}},
		{"", []string{}},
		{"   \n", []string{}},
	} {
		got, ok := splitLine(tc.line)
		if tc.want == nil {
			assert.False(t, ok, "%q", tc.line)
			continue
		}
		require.True(t, ok, "%q", tc.line)
		assert.Equal(t, tc.want, got, "%q", tc.line)
	}
	for _, bad := range []string{`get "k`, `get 'k`, `get "k"x`} {
		_, ok := splitLine(bad)
		assert.False(t, ok, "%q is unbalanced", bad)
	}
}

func TestQuote(t *testing.T) {
	assert.Equal(t, `"hello"`, quote([]byte("hello")))
	assert.Equal(t, `""`, quote(nil))
	assert.Equal(t, `"a\"b\\c\n\r\t\a\b"`, quote([]byte("a\"b\\c\n\r\t\a\b")))
	assert.Equal(t, `"\x00\xff\xc3\xa9~"`, quote([]byte("\x00\xff\u00e9~")))
}

func TestNumbered(t *testing.T) {
	assert.Equal(t, replyEmpty, numbered(nil))
	assert.Equal(t, "1) a\n2) b", numbered([]string{"a", "b"}))
	items := make([]string, 10)
	for i := range items {
		items[i] = "x"
	}
	lines := strings.Split(numbered(items), "\n")
	assert.Equal(t, " 1) x", lines[0])
	assert.Equal(t, "10) x", lines[9])
}

func TestRenderValue(t *testing.T) {
	var ctr lattice.Counter
	_, err := ctr.Add(1, 7)
	require.NoError(t, err)
	_, err = ctr.Add(2, -2)
	require.NoError(t, err)
	var ors lattice.ORSet
	ors.Add(1, []byte("b"), []byte("a"))
	var gs lattice.GSet
	var empty lattice.ORSet
	var vc lattice.VClock
	vc.Increment(9)
	vc.Increment(2)
	vc.Increment(9)
	var m lattice.Map
	m.Update("n", &lattice.Max{Value: 3})
	m.Update("s", lattice.NewLWW(1, 1, []byte("v")))

	for _, tc := range []struct {
		v    lattice.Lattice
		want string
	}{
		{lattice.NewLWW(1, 1, []byte("hello world")), `"hello world"`},
		{&ctr, "(integer) 5"},
		{&ors, "1) \"a\"\n2) \"b\""},
		{&empty, "(empty array)"},
		{&gs, "(empty array)"},
		{&lattice.Max{Value: -4}, "(max) -4"},
		{&lattice.BoolOr{Value: true}, "(boolor) true"},
		{lattice.NewMinPriority(2, []byte("job")), `(minpriority) priority 2 "job"`},
		{&vc, "(vclock) {2:1, 9:2}"},
		{&m, "1) \"n\" => (max) 3\n2) \"s\" => \"v\""},
		{&lattice.Map{}, "(empty map)"},
		{lattice.NewSingleCausal(&vc, []byte("x")), "(singlecausal) 1 version\n1) \"x\""},
	} {
		assert.Equal(t, tc.want, renderValue(tc.v), "%T", tc.v)
	}
}

func TestRenderStats(t *testing.T) {
	out := renderStats(client.Stats{
		NodeID: 42, Keys: 3, Connections: 1, Commands: 9,
		Shards: []client.ShardStats{{Keys: 1, Reads: 2, Writes: 3, Bytes: 100}, {Keys: 2, Tombstones: 1, Writes: 4, Bytes: 50}},
	})
	lines := strings.Split(out, "\n")
	require.Len(t, lines, 5, out)
	assert.Equal(t, "node 42: 3 keys, 1 connections, 9 commands, 0 rejected connections", lines[0])
	assert.Equal(t, []string{"shard", "keys", "tombstones", "reads", "writes", "bytes", "busy"}, strings.Fields(lines[1]))
	assert.Equal(t, []string{"0", "1", "0", "2", "3", "100", "0s"}, strings.Fields(lines[2]))
	assert.Equal(t, []string{"total", "3", "1", "2", "7", "150", "0s"}, strings.Fields(lines[4]))
}
