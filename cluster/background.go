package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/trellisdb/trellis/pack"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// Run gossips every GossipEvery and, every AntiEntropyEvery, runs
// anti-entropy with every peer and hands off the copies this node no longer
// replicates, until ctx ends; then it waits for replication calls in flight.
// A new epoch (SetState) starts a hand-off at once, repeated after
// handoffRetry, then twice as long each time (up to the anti-entropy
// period: each pass reads the whole store), while copies remain that the
// replicas did not confirm yet (they may not route by the new epoch yet),
// rather than waiting for the next anti-entropy period.
func (n *Node) Run(ctx context.Context) error {
	gossip := time.NewTicker(n.cfg.GossipEvery)
	defer gossip.Stop()
	ae := time.NewTicker(n.cfg.AntiEntropyEvery)
	defer ae.Stop()
	defer n.bg.Wait()
	var retry <-chan time.Time // a hand-off pass left copies to retry
	delay := handoffRetry      // before the next retry: doubles while copies remain
	handoff := func() {
		s := n.HandoffOnce(ctx)
		if s.Orphans > 0 {
			n.log.Info("hand-off", "orphans", s.Orphans, "dropped", s.Dropped, "kept", s.Kept, "errors", s.Errors)
		}
		retry = nil
		if s.Kept > 0 || s.Errors > 0 {
			retry = time.After(min(delay, n.cfg.AntiEntropyEvery))
			delay *= 2
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-gossip.C:
			n.GossipOnce(ctx)
		case <-n.moved:
			delay = handoffRetry
			handoff()
		case <-retry:
			handoff()
		case <-ae.C:
			n.AntiEntropyOnce(ctx)
			handoff()
		}
	}
}

// handoffRetry is how soon a hand-off pass that left copies runs again.
const handoffRetry = 500 * time.Millisecond

// GossipOnce sends the cells of the keys queued for gossip to every replica
// of each (on the current and the pending ring), batched per peer, and
// returns how many keys it sent. Keys whose batch fails are queued again.
func (n *Node) GossipOnce(ctx context.Context) int {
	n.mu.Lock()
	keys := slices.Collect(maps.Keys(n.pending))
	clear(n.pending)
	n.mu.Unlock()
	if len(keys) == 0 {
		return 0
	}
	slices.Sort(keys) // a deterministic order for deterministic tests
	v := n.view.Load()
	batches := map[string]*wire.Request{}
	var addrs []string
	var buf []route.Member
	for _, k := range keys {
		cell, ok := n.store.Cell([]byte(k), nil)
		if !ok {
			continue
		}
		buf = v.allReplicas([]byte(k), buf[:0])
		for _, m := range buf {
			if m.ID == n.cfg.ID {
				continue
			}
			b := batches[m.Addr]
			if b == nil {
				b = &wire.Request{Op: wire.OpGossip, Opts: wire.Options{Epoch: v.state.Epoch}}
				batches[m.Addr] = b
				addrs = append(addrs, m.Addr)
			}
			b.Keys = append(b.Keys, []byte(k))
			b.Values = append(b.Values, cell)
		}
	}
	slices.Sort(addrs)
	sent := 0
	for _, a := range addrs {
		b := batches[a]
		for _, part := range chunks(b.Keys, b.Values) {
			r := &wire.Request{Op: b.Op, Opts: b.Opts, Keys: b.Keys[part.from:part.to], Values: b.Values[part.from:part.to]}
			if err := n.call(ctx, a, r); err != nil {
				for _, k := range r.Keys {
					n.enqueue(k)
				}
				continue
			}
			sent += len(r.Keys)
		}
	}
	return sent
}

// Limits of one batch of keys (and cells) sent to a peer, well inside any
// frame limit: a node with a million keys to move sends many calls, not one
// that no peer accepts.
var (
	maxBatchKeys  = 1024
	maxBatchBytes = 1 << 20
)

// span is a half-open range of indexes.
type span struct{ from, to int }

// chunks splits keys (with values, if any: len(values) is len(keys) or 0)
// into consecutive spans of at most maxBatchKeys keys and about
// maxBatchBytes bytes (a single larger entry gets a span of its own).
func chunks(keys, values [][]byte) []span {
	var out []span
	from, size := 0, 0
	for i, k := range keys {
		sz := len(k) + 16
		if len(values) > 0 {
			sz += len(values[i])
		}
		if i > from && (i-from >= maxBatchKeys || size+sz > maxBatchBytes) {
			out = append(out, span{from, i})
			from, size = i, 0
		}
		size += sz
	}
	if from < len(keys) {
		out = append(out, span{from, len(keys)})
	}
	return out
}

// call makes a call bounded by ReplicaTimeout and returns its error, the
// transport's or the peer's.
func (n *Node) call(ctx context.Context, addr string, req *wire.Request) error {
	_, err := n.callResp(ctx, addr, req)
	return err
}

func (n *Node) callResp(ctx context.Context, addr string, req *wire.Request) (*wire.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.ReplicaTimeout)
	defer cancel()
	resp, err := n.cfg.Transport.Call(ctx, addr, req)
	if err != nil {
		return nil, err
	}
	return resp, resp.Err()
}

// AESummary is what one anti-entropy exchange did.
type AESummary struct {
	Peers           int // peers compared with
	DiffBuckets     int // buckets whose digests differed
	Fetched, Pushed int // keys taken from and sent to peers
	Changed         int // of the keys taken, those whose merge changed this node's copy
	Errors          int // peers that could not be compared
}

// AntiEntropyOnce compares digests with every other member and exchanges
// the cells that differ, in both directions.
func (n *Node) AntiEntropyOnce(ctx context.Context) AESummary {
	var sum AESummary
	v := n.view.Load()
	seen := map[uint64]bool{n.cfg.ID: true}
	for _, ms := range [][]route.Member{v.members, v.pmember} {
		for _, m := range ms {
			if seen[m.ID] {
				continue
			}
			seen[m.ID] = true
			sum.Peers++
			s, err := n.syncWith(ctx, m)
			if err != nil {
				sum.Errors++
				n.log.Debug("anti-entropy failed", "peer", m.ID, "err", err)
			}
			sum.DiffBuckets += s.DiffBuckets
			sum.Fetched += s.Fetched
			sum.Changed += s.Changed
			sum.Pushed += s.Pushed
		}
	}
	return sum
}

// syncWith runs one anti-entropy exchange with p.
func (n *Node) syncWith(ctx context.Context, p route.Member) (AESummary, error) {
	var sum AESummary
	bits := n.cfg.BucketBits
	local := n.digests(p.ID, bits)
	resp, err := n.callResp(ctx, p.Addr, &wire.Request{Op: wire.OpDigest, Uints: []uint64{n.cfg.ID, uint64(bits)}})
	if err != nil {
		return sum, err
	}
	raw, err := resp.Bytes()
	if err != nil || len(raw) != 8*len(local) {
		return sum, fmt.Errorf("cluster: bad digest from %d", p.ID)
	}
	diff := map[uint64]bool{}
	for b := range local {
		if binary.BigEndian.Uint64(raw[8*b:]) != local[b] {
			diff[uint64(b)] = true
		}
	}
	sum.DiffBuckets = len(diff)
	if len(diff) == 0 {
		return sum, nil
	}
	mine := n.bucketKeys(p.ID, bits, diff)
	theirs := make(map[string]uint64, len(mine)) // about as many: sized at once
	buckets := slices.Sorted(maps.Keys(diff))
	for len(buckets) > 0 {
		k := min(len(buckets), maxBucketsPerCall)
		req := &wire.Request{Op: wire.OpBucket, Uints: append([]uint64{n.cfg.ID, uint64(bits)}, buckets[:k]...)}
		buckets = buckets[k:]
		resp, err := n.callResp(ctx, p.Addr, req)
		if err != nil {
			return sum, err
		}
		if err := readKeyHashes(resp.Result, theirs); err != nil {
			return sum, fmt.Errorf("cluster: bad bucket from %d: %w", p.ID, err)
		}
	}
	var fetch, push [][]byte
	for k, h := range theirs {
		if mine[k] != h {
			fetch = append(fetch, []byte(k))
		}
	}
	for k, h := range mine {
		if th, ok := theirs[k]; !ok || th != h {
			push = append(push, []byte(k))
		}
	}
	slices.SortFunc(fetch, bytes.Compare)
	var items []wire.Item
	for len(fetch) > 0 {
		part := chunks(fetch, nil)[0]
		keys := fetch[part.from:part.to]
		fetch = fetch[part.to:]
		resp, err := n.callResp(ctx, p.Addr, &wire.Request{Op: wire.OpFetch, Keys: keys})
		if err != nil {
			return sum, err
		}
		items, err = resp.Items(items[:0])
		if err != nil || len(items) != len(keys) {
			return sum, fmt.Errorf("cluster: bad fetch reply from %d", p.ID)
		}
		var later [][]byte
		for i, it := range items {
			if err := it.Err(); err != nil {
				if errors.Is(err, wire.ErrUnavailable) && i > 0 {
					later = append(later, keys[i]) // past the reply's size bound: ask again
				}
				continue // (not found: gone since, nothing to take)
			}
			changed, err := n.store.MergeCell(keys[i], it.Value)
			if err != nil {
				return sum, err
			}
			sum.Fetched++
			if changed {
				sum.Changed++
			}
			if _, ok := mine[string(keys[i])]; ok {
				push = append(push, keys[i]) // both had it: send back the join
			}
		}
		fetch = append(later, fetch...)
	}
	if sum.Changed > 0 {
		n.aeIndex.invalidate()
	}
	slices.SortFunc(push, bytes.Compare)
	for len(push) > 0 {
		g := &wire.Request{Op: wire.OpGossip}
		size := 0
		for len(push) > 0 && len(g.Keys) < maxBatchKeys && size < maxBatchBytes {
			k := push[0]
			push = push[1:]
			if cell, ok := n.store.Cell(k, nil); ok {
				g.Keys = append(g.Keys, k)
				g.Values = append(g.Values, cell)
				size += len(k) + len(cell) + 16
			}
		}
		if len(g.Keys) == 0 {
			break
		}
		if err := n.call(ctx, p.Addr, g); err != nil {
			return sum, err
		}
		sum.Pushed += len(g.Keys)
	}
	return sum, nil
}

// maxBucketsPerCall bounds the buckets one OpBucket call asks for: with
// 2^10 buckets, a node holding a million keys answers about 60k keys' hashes
// per call.
var maxBucketsPerCall = 64 // (at most wire.MaxBuckets)

// readKeyHashes decodes a bucket reply, [[key, hash]...], into m.
func readKeyHashes(b []byte, m map[string]uint64) error {
	rd := pack.NewReader(b)
	n, err := rd.ArrayLen()
	if err != nil {
		return err
	}
	for range n {
		if l, err := rd.ArrayLen(); err != nil || l != 2 {
			return fmt.Errorf("bad entry")
		}
		k, err := rd.Bytes()
		if err != nil {
			return err
		}
		h, err := rd.Uint()
		if err != nil {
			return err
		}
		m[string(k)] = h
	}
	return nil
}
