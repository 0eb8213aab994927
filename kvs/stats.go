package kvs

import "github.com/trellisdb/trellis/pack"

// appendStats appends the node's statistics as a msgpack map (the result of
// the native STATS operation; docs/protocol.md lists its fields).
func (s *Server) appendStats(out []byte) []byte {
	shards := s.store.Stats()
	keys := 0
	for _, st := range shards {
		keys += st.Keys
	}
	out = pack.AppendMapHeader(out, 6)
	out = pack.AppendUint(pack.AppendString(out, "node"), s.store.cfg.NodeID)
	out = pack.AppendInt(pack.AppendString(out, "keys"), int64(keys))
	out = pack.AppendInt(pack.AppendString(out, "connections"), s.conns.Load())
	out = pack.AppendUint(pack.AppendString(out, "commands"), s.commands.Load())
	out = pack.AppendUint(pack.AppendString(out, "rejected_connections"), s.rejected.Load())
	out = pack.AppendArrayHeader(pack.AppendString(out, "shards"), len(shards))
	for _, st := range shards {
		out = pack.AppendMapHeader(out, 6)
		out = pack.AppendInt(pack.AppendString(out, "keys"), int64(st.Keys))
		out = pack.AppendInt(pack.AppendString(out, "tombstones"), int64(st.Tombstones))
		out = pack.AppendUint(pack.AppendString(out, "reads"), st.Reads)
		out = pack.AppendUint(pack.AppendString(out, "writes"), st.Writes)
		out = pack.AppendInt(pack.AppendString(out, "bytes"), st.Bytes)
		out = pack.AppendInt(pack.AppendString(out, "busy_ns"), int64(st.Busy))
	}
	return out
}
