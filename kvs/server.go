package kvs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/trellisdb/trellis/wire"
)

// ServerConfig configures a storage node's network side. The zero value
// serves both protocols on their default loopback ports.
type ServerConfig struct {
	// Addr is the native protocol's listen address. Default 127.0.0.1:7700;
	// "off" disables it.
	Addr string
	// RESPAddr is the Redis-compatible port's listen address. Default
	// 127.0.0.1:7379; "off" disables it.
	RESPAddr string
	// MaxConns bounds open client connections over both ports; a connection
	// beyond it gets an error reply and is closed. Default 10000.
	MaxConns int
	// MaxFrame bounds one native frame's body in bytes. Default 16 MiB.
	MaxFrame int
	// Loops is the number of event loops per port. Default GOMAXPROCS.
	Loops int
	// Version is reported by HELLO and INFO. Default "dev".
	Version string
	// Logger receives the server's logs. Default slog.Default().
	Logger *slog.Logger
	// Cluster, when set, makes the node a cluster member: reads of keys it
	// does not replicate answer wrong owner, and writes and storage-node
	// operations go through it (replication). Default none: a lone node.
	Cluster Cluster
	// Functions, when set, serves the function and DAG operations
	// (wire.Op.IsFunction) that arrive on the native port: `trellis up`
	// runs a coordinator in the node's process. Default none: they are
	// answered "not served here".
	Functions Functions
	// Reserved, when set, is a key prefix that clients may read but not
	// write (on either port): the namespace of function and DAG
	// definitions. Writes get an unauthorized error, except from a system
	// connection (SystemToken). Default none.
	Reserved string
	// SystemToken, when set, is the secret of the cluster's own roles: a
	// native connection whose HELLO carries it (wire.Options.Token) is a
	// system connection, which may write the Reserved namespace; a HELLO
	// carrying another token is answered unauthorized. The Redis port has
	// no system connections. Default none: no connection may.
	SystemToken string
	// MaxWatchKeys bounds the distinct keys one native connection watches
	// (wire.OpWatch); a WATCH that would pass it is answered too large and
	// changes nothing. Default 65536.
	MaxWatchKeys int
}

// Functions serves function and DAG requests. Serve blocks for as long as
// a call takes; it is called on goroutines of its own, never on an event
// loop, and appends exactly one response frame for req to out.
type Functions interface {
	Serve(ctx context.Context, req *wire.Request, out []byte) []byte
}

// Cluster is what a storage node that belongs to a cluster consults and
// delegates to (package cluster provides it). Responsible, Epoch, Inline,
// LocalAck, ServeOnLoop and ReplicateOnLoop are called on event loops and
// must not block; Serve and Replicate may block and are called on
// goroutines of their own, except where Inline or LocalAck say they return
// at once.
type Cluster interface {
	// Inline reports whether Serve completes req without waiting for
	// peers, the routing tier or a disk sync: then it runs on the event
	// loop, without a goroutine's hand-offs.
	Inline(req *wire.Request) bool
	// LocalAck reports whether a write asking for ack (AckDefault: the
	// cluster's default) is acknowledged by this node alone, so that
	// Replicate returns at once (it only queues the key for gossip).
	LocalAck(ack wire.Ack) bool
	// Responsible reports whether this node replicates key.
	Responsible(key []byte) bool
	// Epoch returns the routing epoch the node routes by.
	Epoch() uint64
	// Status names this node's state in the cluster (joining, active, ...).
	Status() string
	// Serve executes a write or a storage-node operation and appends its
	// response frame to out.
	Serve(ctx context.Context, from string, req *wire.Request, out []byte) []byte
	// ServeOnLoop serves a client write on the native port's event loop
	// that read it, when the cluster can without blocking: it applies the
	// write, reaches peers through loop (their answers come back on the
	// loop), and calls complete with req's response frame, once, on the
	// loop: possibly before it returns; work that must block runs on the
	// cluster's goroutines (bounded by ctx), and its outcome then reaches
	// complete through loop.Execute. It returns false, having done
	// nothing, for a request it leaves to Serve. req is valid only during
	// the call.
	ServeOnLoop(ctx context.Context, req *wire.Request, loop Loop, complete func(frame []byte)) bool
	// ReplicateOnLoop is Replicate for a caller on an event loop: it sends
	// key's cell, after a local write of it, to its other replicas through
	// loop and calls done, once, on the loop, when ack is satisfied or
	// cannot be (possibly before it returns; through loop.Execute after
	// work that had to block). It returns false, having done nothing, when
	// it cannot serve ack this way: the caller then uses Replicate. key is
	// valid only during the call.
	ReplicateOnLoop(ctx context.Context, key []byte, ack wire.Ack, loop Loop, done func(error)) bool
	// Replicate sends key's cell, after a local write of it, to its other
	// replicas, and returns once ack is satisfied.
	Replicate(ctx context.Context, key []byte, ack wire.Ack) error
	// ForwardRESP sends an encoded Redis command about key to the Redis port
	// of a node that replicates key and returns its raw reply. A command
	// sent once (not idempotent) is not sent to another replica after its
	// reply was lost.
	ForwardRESP(ctx context.Context, key, cmd []byte, once bool) ([]byte, error)
}

// Defaults for ServerConfig.
const (
	DefaultAddr     = "127.0.0.1:7700"
	DefaultRESPAddr = "127.0.0.1:7379"
	DefaultMaxConns = 10000
	// DefaultMaxWatchKeys is ServerConfig.MaxWatchKeys's default.
	DefaultMaxWatchKeys = 1 << 16
)

// AddrOff disables a listener.
const AddrOff = "off"

func (c ServerConfig) withDefaults() ServerConfig {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.RESPAddr == "" {
		c.RESPAddr = DefaultRESPAddr
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxFrame == 0 {
		c.MaxFrame = wire.DefaultMaxFrame
	}
	if c.Loops == 0 {
		c.Loops = runtime.GOMAXPROCS(0)
	}
	if c.MaxWatchKeys == 0 {
		c.MaxWatchKeys = DefaultMaxWatchKeys
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports whether c (after defaults) is usable.
func (c ServerConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Addr == AddrOff && c.RESPAddr == AddrOff:
		return errors.New("kvs: both listeners are off")
	case c.MaxConns < 1:
		return fmt.Errorf("kvs: max connections must be positive, got %d", c.MaxConns)
	case c.MaxFrame < 64:
		return fmt.Errorf("kvs: max frame must be at least 64 bytes, got %d", c.MaxFrame)
	case c.Loops < 1:
		return fmt.Errorf("kvs: loops must be positive, got %d", c.Loops)
	case c.MaxWatchKeys < 1:
		return fmt.Errorf("kvs: max watched keys must be positive, got %d", c.MaxWatchKeys)
	}
	for _, a := range []string{c.Addr, c.RESPAddr} {
		if a == AddrOff {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("kvs: listen address %q: %w", a, err)
		}
	}
	return nil
}

// Server serves a Store over the native protocol and the Redis protocol,
// each on its own gnet engine. Requests run on the event loop that read them:
// a command locks its key's shard, runs, and its reply is appended to the
// connection's output; one write per read. docs/decisions.md explains why
// shards are not goroutines.
type Server struct {
	cfg         ServerConfig
	store       *Store
	systemToken []byte // cfg.SystemToken
	log         *slog.Logger
	start       time.Time

	ready     chan struct{}
	addrMu    sync.Mutex
	addr      string // bound native address, once ready
	respAddr  string // bound RESP address, once ready
	conns     atomic.Int64
	totalConn atomic.Uint64
	rejected  atomic.Uint64
	commands  atomic.Uint64

	peers peerLoops // the loops' connections to peers (cluster members)

	outPool   sync.Pool // *[]byte reply buffers, shared by all loops
	batchPool sync.Pool // *nativeBatch, shared by all loops

	// Operations that run aside from the event loops (cluster writes):
	// started with goAsync, cancelled and waited for when Run stops.
	asyncCtx  context.Context
	asyncStop context.CancelFunc
	async     sync.WaitGroup
}

// NewServer returns a server for store. It listens when Run is called.
func NewServer(store *Store, cfg ServerConfig) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	s := &Server{cfg: cfg, store: store, systemToken: []byte(cfg.SystemToken), log: cfg.Logger, ready: make(chan struct{})}
	s.peers.srv = s
	s.asyncCtx, s.asyncStop = context.WithCancel(context.Background())
	return s, nil
}

// goAsync runs fn on a goroutine of its own, tracked so that Run waits for
// it; fn's context ends when Run stops.
func (s *Server) goAsync(fn func(ctx context.Context)) {
	s.async.Add(1)
	go func() {
		defer s.async.Done()
		fn(s.asyncCtx)
	}()
}

// Ready is closed once both listeners accept connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the bound native protocol address ("" before Ready or when
// off).
func (s *Server) Addr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.addr
}

// RESPAddr returns the bound Redis-protocol address ("" before Ready or when
// off).
func (s *Server) RESPAddr() string {
	s.addrMu.Lock()
	defer s.addrMu.Unlock()
	return s.respAddr
}

// Store returns the store the server serves.
func (s *Server) Store() *Store { return s.store }

// Run listens and serves until ctx is cancelled, then closes every
// connection and returns. It also runs the store's maintenance (Store.Run:
// tombstone collection, writing behind to the disk), stopping it after the
// listeners so that the last writes are flushed and synced; do not run the
// store separately. It returns an error if a listener cannot start or the
// final flush fails.
func (s *Server) Run(ctx context.Context) error {
	s.start = time.Now()
	storeCtx, stopStore := context.WithCancel(context.Background())
	storeDone := make(chan error, 1)
	go func() { storeDone <- s.store.Run(storeCtx) }()
	err := s.serve(ctx)
	s.asyncStop()
	s.async.Wait()
	stopStore()
	if serr := <-storeDone; err == nil {
		err = serr
	}
	return err
}

func (s *Server) serve(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	var engines []*engine
	if s.cfg.Addr != AddrOff {
		engines = append(engines, &engine{name: "native", addr: s.cfg.Addr, handler: &nativeHandler{srv: s, peerEvents: peerEvents{s}}})
	}
	if s.cfg.RESPAddr != AddrOff {
		engines = append(engines, &engine{name: "resp", addr: s.cfg.RESPAddr, handler: &respHandler{srv: s, peerEvents: peerEvents{s}, cmds: newCommandTable()}})
	}
	// A cluster member's loops (of either port) have connections to peers,
	// whose calls' deadlines one engine's ticker sweeps.
	engines[0].ticker = s.cfg.Cluster != nil
	for _, e := range engines {
		e.booted = make(chan struct{})
		e.handler.setEngine(e)
		g.Go(func() error { return e.run(s) })
	}
	// Wait until every engine is listening (or one failed), then publish.
	for _, e := range engines {
		select {
		case <-e.booted:
		case <-gctx.Done():
			return s.stopAll(g, engines)
		}
	}
	s.addrMu.Lock()
	for _, e := range engines {
		switch e.name {
		case "native":
			s.addr = e.bound
		case "resp":
			s.respAddr = e.bound
		}
	}
	s.addrMu.Unlock()
	close(s.ready)
	<-gctx.Done()
	return s.stopAll(g, engines)
}

func (s *Server) stopAll(g *errgroup.Group, engines []*engine) error {
	var stopping sync.WaitGroup
	for _, e := range engines {
		stopping.Go(e.stop) // each takes a while: gnet polls for the end of its loops
	}
	stopping.Wait()
	err := g.Wait()
	s.peers.failAll() // the loops have stopped
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// engine runs one gnet engine for one listener.
type engine struct {
	name    string
	addr    string
	handler interface {
		gnet.EventHandler
		setEngine(*engine)
	}

	ticker bool // the handler's OnTick runs

	booted  chan struct{} // closed by OnBoot
	eng     gnet.Engine   // set before booted is closed
	bound   string        // the listener's address, set before booted is closed
	mu      sync.Mutex
	stopped bool
}

func (e *engine) run(s *Server) error {
	err := gnet.Run(e.handler, "tcp://"+e.addr,
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithReusePort(false),
		gnet.WithReuseAddr(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithTicker(e.ticker),
		gnet.WithLogger(gnetLogger{s.log.With("listener", e.name)}),
	)
	if err != nil {
		return fmt.Errorf("kvs: %s listener on %s: %w", e.name, e.addr, err)
	}
	e.mu.Lock()
	stopped := e.stopped
	e.mu.Unlock()
	if !stopped {
		return fmt.Errorf("kvs: %s listener on %s stopped unexpectedly", e.name, e.addr)
	}
	return nil
}

// onBoot records the engine and the address it bound.
func (e *engine) onBoot(eng gnet.Engine) gnet.Action {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stopped {
		return gnet.Shutdown // Run was cancelled while the engine started
	}
	e.eng = eng
	e.bound = e.addr
	if fd, err := eng.Dup(); err == nil {
		if sa, err := unix.Getsockname(fd); err == nil {
			switch a := sa.(type) {
			case *unix.SockaddrInet4:
				e.bound = net.JoinHostPort(net.IP(a.Addr[:]).String(), fmt.Sprint(a.Port))
			case *unix.SockaddrInet6:
				e.bound = net.JoinHostPort(net.IP(a.Addr[:]).String(), fmt.Sprint(a.Port))
			}
		}
		_ = unix.Close(fd)
	}
	close(e.booted)
	return gnet.None
}

func (e *engine) stop() {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	// onBoot holds mu while it checks stopped and closes booted, so either
	// booted is closed now or the engine will shut itself down.
	select {
	case <-e.booted:
	default:
		return // never booted: gnet.Run has returned or will return an error
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = e.eng.Stop(ctx)
}

// acceptConn counts a new connection; it reports false when the limit is
// reached.
func (s *Server) acceptConn() bool {
	if s.conns.Add(1) > int64(s.cfg.MaxConns) {
		s.conns.Add(-1)
		s.rejected.Add(1)
		return false
	}
	s.totalConn.Add(1)
	return true
}

func (s *Server) releaseConn() { s.conns.Add(-1) }

// maxPooledOut is the largest reply buffer kept for reuse.
const maxPooledOut = 1 << 20

func (s *Server) getOut() *[]byte {
	if p, ok := s.outPool.Get().(*[]byte); ok {
		return p
	}
	b := make([]byte, 0, 16<<10)
	return &b
}

func (s *Server) putOut(p *[]byte) {
	if cap(*p) > maxPooledOut {
		return
	}
	*p = (*p)[:0]
	s.outPool.Put(p)
}

func (s *Server) getBatch() *nativeBatch {
	if b, ok := s.batchPool.Get().(*nativeBatch); ok {
		return b
	}
	return &nativeBatch{}
}

// putBatch returns b to the pool, dropping references into the read buffer
// and slices a huge request grew.
func (s *Server) putBatch(b *nativeBatch) {
	for i := range b.used {
		r := &b.reqs[i]
		if cap(r.Keys) > 4096 || cap(r.Values) > 4096 || cap(r.Members) > 4096 {
			*r = wire.Request{}
			continue
		}
		clear(r.Keys[:cap(r.Keys)])
		clear(r.Values[:cap(r.Values)])
		clear(r.Members[:cap(r.Members)])
		r.Key, r.Value = nil, nil
	}
	clear(b.errs[:b.used])
	clear(b.keys[:cap(b.keys)])
	b.used = 0
	s.batchPool.Put(b)
}

// gnetLogger sends gnet's logs to slog, one level down (gnet is chatty at
// Info).
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...))) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...))) }
