package kvs

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trellisdb/trellis/lattice"
	"github.com/trellisdb/trellis/resp"
)

// respCmd is one Redis command. arity follows Redis: n > 0 means exactly n
// arguments including the name, n < 0 means at least -n.
type respCmd struct {
	name  string
	arity int
	flags []string // as COMMAND reports them
	first int      // first key argument (0: none)
	last  int      // last key argument (-1: the last argument)
	step  int
	write bool // changes data (set from flags)
	// once: applying it twice is not applying it once (it adds to a
	// value), so a forwarded copy whose reply was lost is not sent again.
	once bool
	fn   func(h *respHandler, st *respConn, args [][]byte, out []byte) []byte
}

// maxCommandName is the longest command name looked up.
const maxCommandName = 16

// Replies shared by several commands, verbatim from Redis 7.
const (
	errWrongType   = "WRONGTYPE Operation against a key holding the wrong kind of value"
	errNotInteger  = "ERR value is not an integer or out of range"
	errOverflow    = "ERR increment or decrement would overflow"
	errSyntax      = "ERR syntax error"
	errNoSuchSubFn = "ERR unknown subcommand '%s'. Try %s HELP."
)

// commandTable is the command table, keyed by lower-case name. A handler
// builds it once and never modifies it.
type commandTable map[string]*respCmd

func newCommandTable() commandTable {
	cmds := []*respCmd{
		{name: "ping", arity: -1, flags: []string{"fast"}, fn: cmdPing},
		{name: "echo", arity: 2, flags: []string{"fast"}, fn: cmdEcho},
		{name: "get", arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1, fn: cmdGet},
		{name: "set", arity: -3, flags: []string{"write", "denyoom"}, first: 1, last: 1, step: 1, fn: cmdSet},
		{name: "del", arity: -2, flags: []string{"write"}, first: 1, last: -1, step: 1, fn: cmdDel},
		{name: "unlink", arity: -2, flags: []string{"write", "fast"}, first: 1, last: -1, step: 1, fn: cmdDel},
		{name: "exists", arity: -2, flags: []string{"readonly", "fast"}, first: 1, last: -1, step: 1, fn: cmdExists},
		{name: "type", arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1, fn: cmdType},
		{name: "mget", arity: -2, flags: []string{"readonly", "fast"}, first: 1, last: -1, step: 1, fn: cmdMGet},
		{name: "mset", arity: -3, flags: []string{"write", "denyoom"}, first: 1, last: -1, step: 2, fn: cmdMSet},
		{name: "incr", arity: 2, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, once: true, fn: cmdIncr},
		{name: "decr", arity: 2, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, once: true, fn: cmdDecr},
		{name: "incrby", arity: 3, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, once: true, fn: cmdIncrBy},
		{name: "decrby", arity: 3, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, once: true, fn: cmdDecrBy},
		{name: "sadd", arity: -3, flags: []string{"write", "denyoom", "fast"}, first: 1, last: 1, step: 1, fn: cmdSAdd},
		{name: "srem", arity: -3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1, fn: cmdSRem},
		{name: "smembers", arity: 2, flags: []string{"readonly"}, first: 1, last: 1, step: 1, fn: cmdSMembers},
		{name: "sismember", arity: 3, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1, fn: cmdSIsMember},
		{name: "scard", arity: 2, flags: []string{"readonly", "fast"}, first: 1, last: 1, step: 1, fn: cmdSCard},
		{name: "dbsize", arity: 1, flags: []string{"readonly", "fast"}, fn: cmdDBSize},
		{name: "info", arity: -1, flags: []string{"loading", "stale"}, fn: cmdInfo},
		{name: "config", arity: -2, flags: []string{"admin", "loading", "stale"}, fn: cmdConfig},
		{name: "command", arity: -1, flags: []string{"loading", "stale"}, fn: cmdCommand},
		{name: "select", arity: 2, flags: []string{"loading", "stale", "fast"}, fn: cmdSelect},
		{name: "hello", arity: -1, flags: []string{"noscript", "loading", "stale", "fast"}, fn: cmdHello},
		{name: "client", arity: -2, flags: []string{"admin", "noscript", "loading", "stale"}, fn: cmdClient},
		{name: "quit", arity: -1, flags: []string{"fast"}}, // handled by exec
	}
	m := make(commandTable, len(cmds))
	for _, c := range cmds {
		c.write = slices.Contains(c.flags, "write")
		if len(c.name) > maxCommandName {
			panic("kvs: command name longer than maxCommandName: " + c.name)
		}
		m[c.name] = c
	}
	return m
}

// appendStoreError appends the Redis reply for a store error.
func appendStoreError(out []byte, err error) []byte {
	switch {
	case errors.Is(err, ErrTypeMismatch):
		return resp.AppendError(out, errWrongType)
	case errors.Is(err, ErrNotInteger):
		return resp.AppendError(out, errNotInteger)
	case errors.Is(err, ErrOverflow):
		return resp.AppendError(out, errOverflow)
	case errors.Is(err, ErrTooLarge):
		return resp.AppendError(out, "ERR "+err.Error())
	}
	return resp.AppendError(out, "ERR "+err.Error())
}

func cmdPing(_ *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	switch len(args) {
	case 1:
		return resp.AppendSimple(out, "PONG")
	case 2:
		return resp.AppendBulk(out, args[1])
	}
	return resp.AppendError(out, "ERR wrong number of arguments for 'ping' command")
}

func cmdEcho(_ *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	return resp.AppendBulk(out, args[1])
}

func cmdGet(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	key := args[1]
	s := h.srv.store
	out, err := appendBulkFrom(out, func(dst []byte) ([]byte, error) { return s.GetString(key, dst) })
	switch {
	case err == nil:
		return out
	case errors.Is(err, ErrNotFound):
		return resp.AppendNull(out)
	}
	return appendStoreError(out, err)
}

func cmdSet(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	if len(args) > 3 {
		return appendSetOptionsError(out, args[3:])
	}
	if err := h.srv.store.Overwrite(args[1], args[2]); err != nil {
		return appendStoreError(out, err)
	}
	return resp.AppendSimple(out, "OK")
}

// appendSetOptionsError answers SET with options: those Redis knows get a
// clear "not supported yet", anything else a syntax error, as Redis would.
func appendSetOptionsError(out []byte, opts [][]byte) []byte {
	known := map[string]bool{"EX": true, "PX": true, "EXAT": true, "PXAT": true,
		"NX": true, "XX": true, "KEEPTTL": true, "GET": true}
	for _, o := range opts {
		if u := strings.ToUpper(string(o)); known[u] {
			return resp.AppendError(out, "ERR SET option '"+u+"' is not supported by Trellis yet")
		}
	}
	return resp.AppendError(out, errSyntax)
}

func cmdDel(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	n := int64(0)
	for _, k := range args[1:] {
		existed, err := h.srv.store.Delete(k)
		if err != nil {
			return appendStoreError(out, err)
		}
		n += b2i(existed)
	}
	return resp.AppendInt(out, n)
}

func cmdExists(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	n := int64(0)
	for _, k := range args[1:] {
		n += b2i(h.srv.store.Exists(k))
	}
	return resp.AppendInt(out, n)
}

func cmdType(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	t, ok := h.srv.store.Type(args[1])
	return resp.AppendSimple(out, redisType(t, ok))
}

// redisType names a lattice type the way Redis's TYPE would; lattices with
// no Redis counterpart are reported by their own name.
func redisType(t lattice.Type, ok bool) string {
	switch {
	case !ok:
		return "none"
	case t == lattice.TypeLWW || t == lattice.TypeCounter:
		return "string"
	case t == lattice.TypeORSet || t == lattice.TypeGSet || t == lattice.TypeOrderedSet:
		return "set"
	}
	return t.String()
}

func cmdMGet(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	s := h.srv.store
	out = resp.AppendArrayHeader(out, len(args)-1)
	for _, k := range args[1:] {
		var err error
		out, err = appendBulkFrom(out, func(dst []byte) ([]byte, error) { return s.GetString(k, dst) })
		if err != nil {
			out = resp.AppendNull(out) // Redis answers nil for missing keys and other types
		}
	}
	return out
}

func cmdMSet(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	if len(args)%2 != 1 {
		return resp.AppendError(out, "ERR wrong number of arguments for 'mset' command")
	}
	for i := 1; i < len(args); i += 2 {
		if err := h.srv.store.Overwrite(args[i], args[i+1]); err != nil {
			return appendStoreError(out, err)
		}
	}
	return resp.AppendSimple(out, "OK")
}

func incr(h *respHandler, key []byte, delta int64, out []byte) []byte {
	n, err := h.srv.store.IncrBy(key, delta)
	if err != nil {
		return appendStoreError(out, err)
	}
	return resp.AppendInt(out, n)
}

func cmdIncr(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	return incr(h, args[1], 1, out)
}

func cmdDecr(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	return incr(h, args[1], -1, out)
}

func cmdIncrBy(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	d, err := parseRedisInt(args[2])
	if err != nil {
		return resp.AppendError(out, errNotInteger)
	}
	return incr(h, args[1], d, out)
}

func cmdDecrBy(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	d, err := parseRedisInt(args[2])
	if err != nil {
		return resp.AppendError(out, errNotInteger)
	}
	if d == math.MinInt64 {
		return resp.AppendError(out, "ERR decrement would overflow")
	}
	return incr(h, args[1], -d, out)
}

func cmdSAdd(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	n, err := h.srv.store.SetAdd(args[1], args[2:])
	if err != nil {
		return appendStoreError(out, err)
	}
	return resp.AppendInt(out, int64(n))
}

func cmdSRem(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	n, err := h.srv.store.SetRemove(args[1], args[2:])
	if err != nil {
		return appendStoreError(out, err)
	}
	return resp.AppendInt(out, int64(n))
}

func cmdSMembers(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	ms, err := h.srv.store.Members(args[1])
	if err != nil {
		return appendStoreError(out, err)
	}
	out = resp.AppendArrayHeader(out, len(ms))
	for _, m := range ms {
		out = resp.AppendBulk(out, m)
	}
	return out
}

func cmdSIsMember(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	ok, err := h.srv.store.IsMember(args[1], args[2])
	if err != nil {
		return appendStoreError(out, err)
	}
	return resp.AppendInt(out, b2i(ok))
}

func cmdSCard(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	n, err := h.srv.store.Card(args[1])
	if err != nil {
		return appendStoreError(out, err)
	}
	return resp.AppendInt(out, int64(n))
}

func cmdDBSize(h *respHandler, _ *respConn, _ [][]byte, out []byte) []byte {
	return resp.AppendInt(out, int64(h.srv.store.Len()))
}

func cmdSelect(_ *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	if string(args[1]) == "0" {
		return resp.AppendSimple(out, "OK")
	}
	if _, err := parseRedisInt(args[1]); err != nil {
		return resp.AppendError(out, errNotInteger)
	}
	return resp.AppendError(out, "ERR DB index is out of range")
}

func cmdHello(h *respHandler, st *respConn, args [][]byte, out []byte) []byte {
	if len(args) >= 2 {
		v, err := parseRedisInt(args[1])
		if err != nil {
			return resp.AppendError(out, "ERR Protocol version is not an integer or out of range")
		}
		if v != 2 {
			return resp.AppendError(out, "NOPROTO unsupported protocol version")
		}
		for i := 2; i < len(args); i++ {
			switch strings.ToUpper(string(args[i])) {
			case "SETNAME":
				if i+1 >= len(args) {
					return resp.AppendError(out, errSyntax)
				}
				st.name = bytes.Clone(args[i+1])
				i++
			case "AUTH":
				return resp.AppendError(out, "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
			default:
				return resp.AppendError(out, errSyntax)
			}
		}
	}
	out = resp.AppendArrayHeader(out, 14)
	out = resp.AppendBulkString(resp.AppendBulkString(out, "server"), "redis")
	out = resp.AppendBulkString(resp.AppendBulkString(out, "version"), redisCompatVersion)
	out = resp.AppendInt(resp.AppendBulkString(out, "proto"), 2)
	out = resp.AppendInt(resp.AppendBulkString(out, "id"), int64(st.id))
	out = resp.AppendBulkString(resp.AppendBulkString(out, "mode"), "standalone")
	out = resp.AppendBulkString(resp.AppendBulkString(out, "role"), "master")
	out = resp.AppendArrayHeader(resp.AppendBulkString(out, "modules"), 0)
	return out
}

func cmdClient(_ *respHandler, st *respConn, args [][]byte, out []byte) []byte {
	sub := strings.ToUpper(string(args[1]))
	switch {
	case sub == "SETNAME" && len(args) == 3:
		st.name = bytes.Clone(args[2])
		return resp.AppendSimple(out, "OK")
	case sub == "GETNAME" && len(args) == 2:
		if st.name == nil {
			return resp.AppendNull(out)
		}
		return resp.AppendBulk(out, st.name)
	case sub == "ID" && len(args) == 2:
		return resp.AppendInt(out, int64(st.id))
	case sub == "SETINFO" && len(args) == 4:
		return resp.AppendSimple(out, "OK")
	}
	return resp.AppendError(out, fmt.Sprintf(errNoSuchSubFn, args[1], "CLIENT"))
}

// redisCompatVersion is the Redis version reported to clients that check it.
const redisCompatVersion = "7.0.0"

// configParams are the CONFIG GET parameters answered, with their values.
func (h *respHandler) configParams() [][2]string {
	scfg := h.srv.store.cfg
	_, port, _ := strings.Cut(h.srv.RESPAddr(), ":")
	return [][2]string{
		{"appendonly", "no"},
		{"bind", hostOf(h.srv.RESPAddr())},
		{"databases", "1"},
		{"maxclients", strconv.Itoa(h.srv.cfg.MaxConns)},
		{"maxmemory", strconv.FormatInt(scfg.MemoryBudget, 10)},
		{"port", port},
		{"proto-max-bulk-len", strconv.Itoa(scfg.MaxValue)},
		{"save", ""},
	}
}

func hostOf(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 {
		return addr[:i]
	}
	return addr
}

func cmdConfig(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	sub := strings.ToUpper(string(args[1]))
	switch sub {
	case "GET":
		if len(args) < 3 {
			return resp.AppendError(out, "ERR wrong number of arguments for 'config|get' command")
		}
		var pairs [][2]string
		for _, p := range h.configParams() {
			for _, pat := range args[2:] {
				if ok, _ := path.Match(strings.ToLower(string(pat)), p[0]); ok {
					pairs = append(pairs, p)
					break
				}
			}
		}
		out = resp.AppendArrayHeader(out, 2*len(pairs))
		for _, p := range pairs {
			out = resp.AppendBulkString(resp.AppendBulkString(out, p[0]), p[1])
		}
		return out
	case "SET", "REWRITE":
		return resp.AppendError(out, "ERR CONFIG "+sub+" is not supported by Trellis: configure the node with flags, TRELLIS_* variables or its config file")
	case "RESETSTAT":
		return resp.AppendSimple(out, "OK")
	}
	return resp.AppendError(out, fmt.Sprintf(errNoSuchSubFn, args[1], "CONFIG"))
}

func cmdCommand(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	cmds := h.cmds
	if len(args) == 1 {
		out = resp.AppendArrayHeader(out, len(cmds))
		for _, name := range cmds.names() {
			out = appendCommandInfo(out, cmds[name])
		}
		return out
	}
	switch strings.ToUpper(string(args[1])) {
	case "COUNT":
		return resp.AppendInt(out, int64(len(cmds)))
	case "DOCS":
		// redis-cli asks for docs to show hints; an empty map means "none".
		return resp.AppendArrayHeader(out, 0)
	case "INFO":
		out = resp.AppendArrayHeader(out, len(args)-2)
		for _, a := range args[2:] {
			if c, ok := cmds[strings.ToLower(string(a))]; ok {
				out = appendCommandInfo(out, c)
			} else {
				out = resp.AppendNullArray(out)
			}
		}
		return out
	case "LIST":
		names := cmds.names()
		out = resp.AppendArrayHeader(out, len(names))
		for _, n := range names {
			out = resp.AppendBulkString(out, n)
		}
		return out
	}
	return resp.AppendError(out, fmt.Sprintf(errNoSuchSubFn, args[1], "COMMAND"))
}

// names returns the command names in order.
func (t commandTable) names() []string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// appendCommandInfo appends a command's entry in Redis 7's COMMAND format:
// name, arity, flags, first key, last key, step, ACL categories, tips, key
// specs, subcommands.
func appendCommandInfo(out []byte, c *respCmd) []byte {
	out = resp.AppendArrayHeader(out, 10)
	out = resp.AppendBulkString(out, c.name)
	out = resp.AppendInt(out, int64(c.arity))
	out = resp.AppendArrayHeader(out, len(c.flags))
	for _, f := range c.flags {
		out = resp.AppendSimple(out, f)
	}
	out = resp.AppendInt(out, int64(c.first))
	out = resp.AppendInt(out, int64(c.last))
	out = resp.AppendInt(out, int64(c.step))
	for range 4 {
		out = resp.AppendArrayHeader(out, 0)
	}
	return out
}

func cmdInfo(h *respHandler, _ *respConn, args [][]byte, out []byte) []byte {
	want := map[string]bool{}
	for _, a := range args[1:] {
		want[strings.ToLower(string(a))] = true
	}
	all := len(want) == 0 || want["all"] || want["everything"] || want["default"]
	var b strings.Builder
	section := func(name string, lines ...string) {
		if !all && !want[strings.ToLower(name)] {
			return
		}
		if b.Len() > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + name + "\r\n")
		for _, l := range lines {
			b.WriteString(l + "\r\n")
		}
	}
	srv, st := h.srv, h.srv.store
	stats := st.Stats()
	var keys, onDisk int
	var mem int64
	var evictions, readBacks uint64
	for _, s := range stats {
		keys += s.Keys
		mem += s.Bytes
		onDisk += s.Evicted
		evictions += s.Evictions
		readBacks += s.ReadBacks
	}
	_, port, _ := strings.Cut(srv.RESPAddr(), ":")
	exe, _ := os.Executable()
	section("Server",
		"redis_version:"+redisCompatVersion,
		"trellis_version:"+srv.cfg.Version,
		"redis_mode:standalone",
		"os:"+runtime.GOOS+" "+runtime.GOARCH,
		"arch_bits:64",
		"go_version:"+runtime.Version(),
		"process_id:"+strconv.Itoa(os.Getpid()),
		"tcp_port:"+port,
		"native_addr:"+srv.Addr(),
		"node_id:"+strconv.FormatUint(st.cfg.NodeID, 10),
		"uptime_in_seconds:"+strconv.Itoa(int(time.Since(srv.start).Seconds())),
		"executable:"+exe,
	)
	var ms runtime.MemStats
	if all || want["memory"] {
		runtime.ReadMemStats(&ms)
	}
	section("Clients",
		"connected_clients:"+strconv.FormatInt(srv.conns.Load(), 10),
		"maxclients:"+strconv.Itoa(srv.cfg.MaxConns),
	)
	section("Memory",
		"used_memory:"+strconv.FormatUint(ms.HeapAlloc, 10),
		"used_memory_dataset:"+strconv.FormatInt(mem, 10),
		"used_memory_sys:"+strconv.FormatUint(ms.Sys, 10),
		"maxmemory:"+strconv.FormatInt(st.cfg.MemoryBudget, 10),
	)
	section("Stats",
		"total_connections_received:"+strconv.FormatUint(srv.totalConn.Load(), 10),
		"total_commands_processed:"+strconv.FormatUint(srv.commands.Load(), 10),
		"rejected_connections:"+strconv.FormatUint(srv.rejected.Load(), 10),
		"evicted_keys:"+strconv.FormatUint(evictions, 10),
	)
	disk := "no"
	if st.HasDisk() {
		disk = "yes"
	}
	section("Persistence",
		"disk:"+disk,
		"unflushed_writes:"+strconv.FormatUint(st.UnflushedWrites(), 10),
		"keys_on_disk_only:"+strconv.Itoa(onDisk),
		"keys_read_back:"+strconv.FormatUint(readBacks, 10),
	)
	clusterLines := []string{"cluster_enabled:0"}
	if cl := srv.cfg.Cluster; cl != nil {
		clusterLines = []string{"cluster_enabled:1", "epoch:" + strconv.FormatUint(cl.Epoch(), 10),
			"member_state:" + cl.Status()}
	}
	section("Cluster", clusterLines...)
	shardLines := make([]string, len(stats))
	for i, s := range stats {
		shardLines[i] = fmt.Sprintf("shard%d:keys=%d,tombstones=%d,reads=%d,writes=%d,bytes=%d,busy_us=%d",
			i, s.Keys, s.Tombstones, s.Reads, s.Writes, s.Bytes, s.Busy.Microseconds())
	}
	section("Shards", shardLines...)
	if keys > 0 {
		section("Keyspace", fmt.Sprintf("db0:keys=%d,expires=0,avg_ttl=0", keys))
	} else {
		section("Keyspace")
	}
	return resp.AppendBulkString(out, b.String())
}
