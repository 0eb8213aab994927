package resp_test

import (
	"strings"
	"testing"

	"github.com/trellisdb/trellis/resp"
)

func benchParse(b *testing.B, buf []byte, commands int) {
	dst := make([][]byte, 0, 8)
	var p resp.Parser
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		for off, i := 0, 0; i < commands; i++ {
			args, n, err := p.ParseCommand(buf[off:], dst[:0])
			if err != nil || len(args) == 0 {
				b.Fatal(err)
			}
			off += n
		}
	}
}

// go test -run '^$' -bench . ./resp/
func BenchmarkParseCommand(b *testing.B) {
	value := strings.Repeat("v", 100)
	get := resp.AppendCommandString(nil, "GET", "key:000000000042")
	set := resp.AppendCommandString(nil, "SET", "key:000000000042", value)
	var pipe []byte
	for i := range 16 {
		if i%2 == 0 {
			pipe = append(pipe, get...)
		} else {
			pipe = append(pipe, set...)
		}
	}
	b.Run("GET", func(b *testing.B) { benchParse(b, get, 1) })
	b.Run("SET-100B", func(b *testing.B) { benchParse(b, set, 1) })
	b.Run("pipeline-16", func(b *testing.B) { benchParse(b, pipe, 16) })
	b.Run("inline-SET", func(b *testing.B) { benchParse(b, []byte("SET key:000000000042 "+value+"\r\n"), 1) })
	b.Run("inline-quoted", func(b *testing.B) { benchParse(b, []byte(`SET "key 42" "`+value+`"`+"\r\n"), 1) })
}

func BenchmarkAppendReply(b *testing.B) {
	value := []byte(strings.Repeat("v", 100))
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		out := resp.AppendSimple(buf, "OK")
		out = resp.AppendBulk(out, value)
		out = resp.AppendInt(out, 1234567)
		_ = resp.AppendNull(out)
	}
}

func BenchmarkParseReply(b *testing.B) {
	buf := resp.AppendArrayHeader(nil, 10)
	for range 10 {
		buf = resp.AppendBulkString(buf, strings.Repeat("v", 100))
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := resp.ParseReply(buf, resp.Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
