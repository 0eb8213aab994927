// Package memnet is an in-memory network for running many Trellis nodes in
// one process: a node attaches a Handler under an address, and others call
// it through an Endpoint, as they would over TCP with the native protocol.
// Requests and responses cross as encoded frames, so a callee never shares
// memory with its caller.
//
// Faults are injected with hooks: requests or responses dropped, requests
// delivered twice, delivery delayed, the network partitioned into groups, a
// node detached (crashed), calls to a node held and then released in a
// shuffled order. Fault decisions for the calls from one address to another
// come from a source seeded by the network's seed and the two addresses, so
// a test whose calls between each pair happen in a fixed order sees the same
// faults every run, however calls between different pairs interleave.
//
// Everything is safe for concurrent use.
package memnet

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/trellisdb/trellis/wire"
)

// Errors a call can return. A lost request or response shows up as
// ErrUnreachable, as a timeout would over TCP, without the wait.
var (
	ErrUnreachable = errors.New("memnet: unreachable")
	ErrNoHandler   = errors.New("memnet: nothing attached at address")
)

// Handler serves the calls addressed to a node. Serve executes req (sent by
// the node at from) and appends its response frame (wire's AppendFrame or
// Append*Result functions) to out. It may be called concurrently.
type Handler interface {
	Serve(ctx context.Context, from string, req *wire.Request, out []byte) []byte
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, from string, req *wire.Request, out []byte) []byte

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, from string, req *wire.Request, out []byte) []byte {
	return f(ctx, from, req, out)
}

// Faults are the probabilities and bounds of injected faults. The zero value
// injects none.
type Faults struct {
	DropRequest  float64       // a request is lost; the callee never sees it
	DropResponse float64       // a response is lost; the callee has acted on the request
	Duplicate    float64       // a request is delivered twice (the second response is discarded)
	MaxDelay     time.Duration // each delivery waits a random time up to this (real time)
}

// Stats count what the network did.
type Stats struct {
	Calls, Delivered, DroppedRequests, DroppedResponses, Duplicated, Unreachable uint64
}

// Network connects attached nodes. The zero value is not usable; use New.
type Network struct {
	mu       sync.Mutex
	seed     uint64
	rng      *rand.Rand               // Hold shuffles
	pairs    map[[2]string]*rand.Rand // fault decisions per (from, to)
	handlers map[string]Handler
	faults   Faults
	group    map[string]int // partition group of an address; absent = group 0
	parted   bool
	holds    map[string]*hold // calls to an address being held
	heldNote chan struct{}    // closed (and replaced) when a call joins a hold
	stats    Stats
}

type hold struct {
	waiting []*heldCall
}

// heldCall is a call waiting in a Hold. Release signals proceed, then waits
// for delivered, which the call closes once it has been delivered or has
// given up (its context ended).
type heldCall struct {
	proceed   chan struct{} // buffered: Release never blocks sending
	delivered chan struct{}
}

// New returns an empty network whose fault decisions come from seed.
func New(seed uint64) *Network {
	return &Network{
		seed:     seed,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		pairs:    map[[2]string]*rand.Rand{},
		handlers: map[string]Handler{},
		group:    map[string]int{},
		holds:    map[string]*hold{},
		heldNote: make(chan struct{}),
	}
}

// Attach makes h serve calls to addr, replacing what was there.
func (n *Network) Attach(addr string, h Handler) {
	n.mu.Lock()
	n.handlers[addr] = h
	n.mu.Unlock()
}

// Detach removes the node at addr: calls to it fail with ErrNoHandler, as
// to a crashed process.
func (n *Network) Detach(addr string) {
	n.mu.Lock()
	delete(n.handlers, addr)
	n.mu.Unlock()
}

// SetFaults sets the faults injected from now on.
func (n *Network) SetFaults(f Faults) {
	n.mu.Lock()
	n.faults = f
	n.mu.Unlock()
}

// Partition splits the network: addresses in different groups cannot reach
// each other. Addresses in no group (clients, say) are not cut off from
// anyone.
func (n *Network) Partition(groups ...[]string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.group)
	for i, g := range groups {
		for _, a := range g {
			n.group[a] = i + 1
		}
	}
	n.parted = true
}

// Heal ends a partition.
func (n *Network) Heal() {
	n.mu.Lock()
	clear(n.group)
	n.parted = false
	n.mu.Unlock()
}

// Hold makes calls to addr wait (their callers block) until Release.
func (n *Network) Hold(addr string) {
	n.mu.Lock()
	if n.holds[addr] == nil {
		n.holds[addr] = &hold{}
	}
	n.mu.Unlock()
}

// Held returns how many calls to addr are waiting in a Hold.
func (n *Network) Held(addr string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h := n.holds[addr]; h != nil {
		return len(h.waiting)
	}
	return 0
}

// WaitHeld waits until at least count calls to addr are held, or ctx ends.
func (n *Network) WaitHeld(ctx context.Context, addr string, count int) error {
	for {
		n.mu.Lock()
		have := 0
		if h := n.holds[addr]; h != nil {
			have = len(h.waiting)
		}
		note := n.heldNote
		n.mu.Unlock()
		if have >= count {
			return nil
		}
		select {
		case <-note:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Release ends a Hold on addr and lets the held calls proceed, in an order
// shuffled by the network's seed (each is let go only after the previous one
// has been delivered, so the order is the delivery order).
func (n *Network) Release(addr string) {
	n.mu.Lock()
	h := n.holds[addr]
	delete(n.holds, addr)
	var order []*heldCall
	if h != nil {
		order = h.waiting
		n.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	}
	n.mu.Unlock()
	for _, c := range order {
		c.proceed <- struct{}{}
		<-c.delivered
	}
}

// Stats returns the counts so far.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Endpoint is the calling side of the node at an address.
type Endpoint struct {
	net  *Network
	addr string
}

// Endpoint returns the calling side of the node at addr (attached or not).
func (n *Network) Endpoint(addr string) *Endpoint { return &Endpoint{net: n, addr: addr} }

// Addr returns the endpoint's address.
func (e *Endpoint) Addr() string { return e.addr }

// decision is what the network decided to do with one call.
type decision struct {
	h                       Handler
	unreachable, noHandler  bool
	dropReq, dropResp, dupe bool
	delay                   time.Duration
	hold                    *heldCall
}

func (n *Network) decide(from, to string) decision {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stats.Calls++
	var d decision
	gf, inF := n.group[from]
	gt, inT := n.group[to]
	if n.parted && inF && inT && gf != gt {
		d.unreachable = true
		n.stats.Unreachable++
		return d
	}
	d.h = n.handlers[to]
	if d.h == nil {
		d.noHandler = true
		n.stats.Unreachable++
		return d
	}
	f := n.faults
	rng := n.pairRand(from, to)
	// Draw every decision, used or not, so that one pair's sequence of
	// decisions does not depend on which faults are switched on.
	p1, p2, p3, p4 := rng.Float64(), rng.Float64(), rng.Float64(), rng.Uint64()
	d.dropReq = p1 < f.DropRequest
	d.dropResp = !d.dropReq && p2 < f.DropResponse
	d.dupe = !d.dropReq && p3 < f.Duplicate
	if f.MaxDelay > 0 {
		d.delay = time.Duration(p4 % uint64(f.MaxDelay))
	}
	switch {
	case d.dropReq:
		n.stats.DroppedRequests++
	case d.dropResp:
		n.stats.DroppedResponses++
	}
	if d.dupe {
		n.stats.Duplicated++
	}
	if h := n.holds[to]; h != nil {
		d.hold = &heldCall{proceed: make(chan struct{}, 1), delivered: make(chan struct{})}
		h.waiting = append(h.waiting, d.hold)
		close(n.heldNote)
		n.heldNote = make(chan struct{})
	}
	return d
}

// pairRand returns the fault source of calls from one address to another.
// n.mu is held.
func (n *Network) pairRand(from, to string) *rand.Rand {
	k := [2]string{from, to}
	r := n.pairs[k]
	if r == nil {
		h := fnv64(from) ^ bits.RotateLeft64(fnv64(to), 17)
		r = rand.New(rand.NewPCG(n.seed, h))
		n.pairs[k] = r
	}
	return r
}

// fnv64 is FNV-1a, enough to derive per-pair seeds.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// Call sends req to the node at to and returns its decoded response. The
// response owns its memory. A response carrying a server error is returned
// as a response, not as an error; err is for transport failures.
func (e *Endpoint) Call(ctx context.Context, to string, req *wire.Request) (*wire.Response, error) {
	d := e.net.decide(e.addr, to)
	if d.unreachable {
		return nil, fmt.Errorf("%w: %s cannot reach %s (partition)", ErrUnreachable, e.addr, to)
	}
	if d.noHandler {
		return nil, fmt.Errorf("%w: %s", ErrNoHandler, to)
	}
	if d.hold != nil {
		defer close(d.hold.delivered) // Release waits for this before letting the next call go
		select {
		case <-d.hold.proceed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if d.delay > 0 {
		t := time.NewTimer(d.delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	if d.dropReq {
		return nil, fmt.Errorf("%w: request from %s to %s lost", ErrUnreachable, e.addr, to)
	}
	frame := req.AppendFrame(nil)
	resp, err := e.deliver(ctx, to, d.h, frame)
	if err != nil {
		return nil, err
	}
	if d.dupe {
		_, _ = e.deliver(ctx, to, d.h, frame)
	}
	e.net.mu.Lock()
	e.net.stats.Delivered++
	e.net.mu.Unlock()
	if d.dropResp {
		return nil, fmt.Errorf("%w: response from %s to %s lost", ErrUnreachable, to, e.addr)
	}
	return resp, nil
}

// deliver decodes the request frame as the callee sees it, serves it, and
// decodes the response frame as the caller sees it.
func (e *Endpoint) deliver(ctx context.Context, to string, h Handler, frame []byte) (*wire.Response, error) {
	body, _, err := wire.SplitFrame(frame, wire.Limits{})
	if err != nil {
		return nil, err
	}
	var req wire.Request
	if err := req.Decode(body, wire.Limits{}); err != nil {
		return nil, err
	}
	out := h.Serve(ctx, e.addr, &req, nil)
	rbody, _, err := wire.SplitFrame(out, wire.Limits{})
	if err != nil {
		return nil, fmt.Errorf("memnet: handler at %s wrote a bad frame: %w", to, err)
	}
	var resp wire.Response
	if err := resp.Decode(rbody, wire.Limits{}); err != nil {
		return nil, fmt.Errorf("memnet: handler at %s wrote a bad response: %w", to, err)
	}
	return &resp, nil
}
