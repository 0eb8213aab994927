// Package wireserver serves the native protocol (package wire) for the
// control-plane roles: routing nodes now, coordinators later. It owns the
// listener, the connections and their framing; a Handler owns what a
// request means.
//
// Why not gnet, as the storage nodes (kvs) use: control-plane roles carry a
// few requests per storage node per second (heartbeats, ring fetches, the
// odd membership command), and their handlers block (a Raft commit). A plain
// net listener with one goroutine per connection serves that with simple,
// blocking handler code; an event loop would only add a hand-off to worker
// goroutines. Connections are capped (Config.MaxConns), and so are requests
// in flight per connection (Config.Concurrency), so goroutines are too.
//
// # Connections
//
// Each connection is served by one goroutine: it reads a frame (its length
// is checked against Config.MaxFrame before anything is allocated for it,
// and the body buffer grows only as bytes arrive), decodes it into a reused
// wire.Request, calls the Handler, and queues the response. By default
// (Config.Concurrency 1) requests of one connection are handled one at a
// time, so responses come in request order; queued responses are written
// when no complete request is left in the read buffer, so a pipelining client
// gets its answers in few writes.
//
// A body that does not decode is answered with its code (bad request,
// usually) and the connection stays open. A length above MaxFrame is
// answered with a "too large" error with request id 0 and the connection is
// closed, since the stream cannot be resynchronised. A connection beyond
// MaxConns gets an "unavailable" error with id 0 and is closed. A connection
// that sends nothing, or accepts none of its responses, for
// Config.IdleTimeout is closed.
//
// # Concurrent requests
//
// A coordinator's handler blocks for a whole DAG run, so handling one
// request at a time would run a pipelining client's calls one after
// another. With Config.Concurrency above 1, the connection's goroutine only
// reads and decodes: each request is decoded from a body buffer of its own
// (wire.Request aliases it) and handled on a goroutine of its own, while a
// writer goroutine writes the responses, still in request order: a response
// waits for the ones before it. The writer batches, writing when the next
// response is not ready yet (its frame not received, or its handler still
// running) or the batch reaches 64 KiB. At most Concurrency requests are in
// flight, from the read of their frame until their response is in the
// writer's batch; beyond that the reader stops reading, so a connection holds
// at most Concurrency bodies and responses and as many handler goroutines.
//
// The rules above hold with these differences: a connection with requests
// in flight is not idle (IdleTimeout counts from its last response); a
// too-large frame is answered after the responses before it; a write that
// fails closes the connection and cancels the context of its handlers. When
// the peer stops sending, the requests already read are still answered. In
// every case the connection's goroutine waits for its handler goroutines
// before it ends.
//
// # Lifecycle
//
// New validates the configuration; Run listens, closes Ready once the
// listener is bound (Addr then reports it), and serves until its context
// ends. Then it closes the listener and every connection, cancels the
// context handlers receive, and returns once every connection goroutine has
// finished: a Handler that ignores its context delays Run's return.
package wireserver
