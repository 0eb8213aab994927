package kvs

import (
	"strconv"
	"sync"
	"testing"
)

// These benchmarks measure how a request can cross from a network event loop
// to the goroutine or lock that owns a shard; docs/decisions.md records the
// results and the choice they led to. The shard work is a map write of a
// 100-byte value, so the differences are the crossing's cost.
//
//	go test -run XXX -bench Crossing -cpu 1,2 ./kvs/

type crossOp struct {
	key   string
	value []byte
}

type crossShard struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *crossShard) apply(op crossOp) {
	if old, ok := s.m[op.key]; ok && len(old) == len(op.value) {
		copy(old, op.value)
		return
	}
	s.m[op.key] = append([]byte(nil), op.value...)
}

func crossKeys() []crossOp {
	ops := make([]crossOp, 1024)
	v := make([]byte, 100)
	for i := range ops {
		ops[i] = crossOp{key: "key:" + strconv.Itoa(i), value: v}
	}
	return ops
}

// Inline: the event loop locks the shard and does the work itself.
func BenchmarkCrossingInlineMutex(b *testing.B) {
	ops := crossKeys()
	s := &crossShard{m: map[string][]byte{}}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			s.mu.Lock()
			s.apply(ops[i&1023])
			s.mu.Unlock()
			i++
		}
	})
}

// ChannelPerOp: a goroutine owns the shard; each operation is sent over a
// channel and the caller waits for its completion.
func BenchmarkCrossingChannelPerOp(b *testing.B) {
	ops := crossKeys()
	s := &crossShard{m: map[string][]byte{}}
	type req struct {
		op   crossOp
		done chan struct{}
	}
	in := make(chan req, 64)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case r := <-in:
				s.apply(r.op)
				r.done <- struct{}{}
			case <-stop:
				return
			}
		}
	}()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan struct{}, 1)
		i := 0
		for pb.Next() {
			in <- req{op: ops[i&1023], done: done}
			<-done
			i++
		}
	})
	close(stop)
	wg.Wait()
}

// ChannelBatch16: as ChannelPerOp, but the event loop sends 16 operations
// (one pipelined read's worth) per crossing.
func BenchmarkCrossingChannelBatch16(b *testing.B) {
	ops := crossKeys()
	s := &crossShard{m: map[string][]byte{}}
	type req struct {
		ops  []crossOp
		done chan struct{}
	}
	in := make(chan req, 64)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case r := <-in:
				for _, op := range r.ops {
					s.apply(op)
				}
				r.done <- struct{}{}
			case <-stop:
				return
			}
		}
	}()
	b.RunParallel(func(pb *testing.PB) {
		done := make(chan struct{}, 1)
		batch := make([]crossOp, 0, 16)
		i := 0
		for pb.Next() {
			batch = append(batch, ops[i&1023])
			i++
			if len(batch) == 16 {
				in <- req{ops: batch, done: done}
				<-done
				batch = batch[:0]
			}
		}
	})
	close(stop)
	wg.Wait()
}
