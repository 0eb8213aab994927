package kvs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/trellisdb/trellis/resp"
)

// BenchmarkRESPPipeline measures the RESP command path without the network:
// parse, dispatch, store, reply, for 16-command batches of SET or GET on
// 100k random keys with 100-byte values (redis-benchmark -P 16 -r 100000
// -d 100). ns/op is per command.
func BenchmarkRESPPipeline(b *testing.B) {
	for _, cmd := range []string{"SET", "GET"} {
		b.Run(cmd, func(b *testing.B) {
			store, err := NewStore(StoreConfig{})
			if err != nil {
				b.Fatal(err)
			}
			srv := &Server{store: store}
			h := &respHandler{srv: srv, cmds: newCommandTable()}
			value := bytes.Repeat([]byte("x"), 100)
			for i := range 100_000 {
				_ = store.Overwrite([]byte(fmt.Sprintf("key:%012d", i)), value)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			const batches = 1024
			bufs := make([][]byte, batches)
			for i := range bufs {
				for range 16 {
					k := fmt.Sprintf("key:%012d", rng.IntN(100_000))
					if cmd == "SET" {
						bufs[i] = resp.AppendCommandString(bufs[i], "SET", k, string(value))
					} else {
						bufs[i] = resp.AppendCommandString(bufs[i], "GET", k)
					}
				}
			}
			st := &respConn{parser: resp.Parser{Limits: h.limits()}}
			out := make([]byte, 0, 64<<10)
			b.ResetTimer()
			for i := 0; i < b.N; i += 16 {
				buf := bufs[(i/16)%batches]
				out = out[:0]
				for off := 0; off < len(buf); {
					args, n, err := st.parser.ParseCommand(buf[off:], st.args[:0])
					if err != nil {
						b.Fatal(err)
					}
					off += n
					st.args = args
					out, _, _ = h.exec(nil, st, args, out)
				}
			}
		})
	}
}
