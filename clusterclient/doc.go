// Package clusterclient is the Go client of a Trellis cluster: routing
// nodes that hold the cluster's state, and storage nodes that each
// replicate a share of the keys.
//
//	c, err := clusterclient.Dial(ctx, clusterclient.Options{Route: []string{"10.0.0.1:7710"}})
//	defer c.Close()
//	err = c.Set(ctx, "greeting", []byte("hello"))
//	v, err := c.GetBytes(ctx, "greeting")
//
// It has the single-key calls of package client (Get, GetBytes, Put, Set,
// Delete, SetAdd, SetRemove, SetMembers, CounterAdd, CounterValue) and a
// Batch of requests on many keys. Each call routes its key to a storage
// node and runs package client's method of the same name there, on a pool
// of connections kept per node.
//
// # Routing
//
// Dial fetches the routing state (route.State: the members, their
// addresses and states, the replication factors, the epoch) from any
// routing node; that is the client's address cache. A key is served by its
// responsible set: the first RF(key) members clockwise from the key's hash
// on the ring of the active and leaving members (docs/placement.md), the
// very set the storage nodes check requests against. A request goes to the
// first member of that set, so that, in normal operation, a read follows
// the writes of the same client on the same node (read-your-writes), and
// carries the epoch of the state it was routed by (wire.Options.Epoch). The
// connection pool of a node is dialled when a request first goes there and
// closed when the node leaves the ring.
//
// The client fetches the state again every Options.RefreshEvery (to learn
// of nodes that joined), when a node answers wrong owner with a newer epoch
// than the client's, and when no replica of a key served a request. One
// fetch is in flight at a time: concurrent callers wait for the same one.
//
// # Retries
//
// A call tries the key's replicas in order and moves on to the next one when
// a node cannot be reached (it is then tried last for Options.SuspectFor),
// when its connection is lost, when it answers unavailable or timeout (a
// write that reached too few replicas, a node shutting down), or when it
// answers wrong owner with an epoch no newer than the client's (the node is
// behind and catches up by itself). A wrong owner with a newer epoch makes
// the client fetch the state and route again. When every replica failed,
// the call pauses (Options.MinBackoff, doubling up to MaxBackoff), fetches
// the state, and starts over, until its context ends; a context without a
// deadline gets Options.Timeout (10 s).
//
// Any replica accepts a write, and writes merge (lattices), so retrying a
// write elsewhere is safe: a write that failed with ErrConnLost or
// ErrUnavailable may have been applied, and applying it again changes
// nothing more. A retried Set is stamped anew; a retried Delete or SetAdd
// may report fewer changes than the call made. CounterAdd is the exception:
// an increment applied twice counts twice, so it is retried only when it
// certainly was not applied (a wrong-owner answer, a node that could not be
// dialled); after a lost connection, a timeout or an unavailable answer it
// returns that error, and the increment may or may not have been applied.
//
// # Errors
//
// Errors match the sentinels of package client (re-exported here) with
// errors.Is:
//
//   - ErrNotFound, ErrTypeMismatch, ErrTooLarge, ErrBadRequest,
//     ErrUnauthorized, ErrInternal: the outcome of the request, returned at
//     once; retrying cannot change it.
//   - ErrTimeout (with context.DeadlineExceeded), or context.Canceled: the
//     call's context ended before a replica gave an outcome. The last
//     failure is in the chain too (errors.Is(err, ErrUnavailable): no
//     replica could take the request; ErrWrongOwner: the cluster's state
//     moved faster than the client could follow). A write that failed so
//     may have been applied.
//   - ErrConnLost, ErrUnavailable, ErrTimeout without a context error: only
//     from CounterAdd (see above).
//   - ErrClosed: the Client was closed.
//
// # Acknowledgements
//
// Writes ask for Options.Ack, by default client.AckQuorum: the write is
// acknowledged once a majority of the key's replicas hold it. WithAck
// returns a view with another level: client.AckLocal (one replica),
// client.AckDurable (a majority, synced to disk; nodes without a data
// directory refuse it with ErrUnavailable, which is retried like any
// unavailable answer until the deadline).
//
// # Fan-out
//
// A quorum Set or Put is sent by the client itself to a majority of the
// key's replicas at once (the first ones of its responsible set), each
// asked for a local acknowledgement, and is acknowledged when all of them
// have merged it: one round trip, where a node coordinating the write takes
// two (the client's to the node, the node's to the other replicas). Each of
// those replicas then gossips the key to the others, as after any write:
// the replicas beyond the quorum get it within a gossip period (50 ms by
// default), where a coordinating node sends it to every replica at once. A
// read through one of them meanwhile may see the previous value, which a
// quorum write read from one replica allows either way (the client itself
// reads from the key's first replica, which is one of the quorum).
// For this a Set is stamped by the client's own hybrid logical clock, with a
// random writer id drawn at Dial, instead of by a node's clock; the nodes'
// clocks observe the stamp, so their later writes order after it (across
// machines, as with any last-writer-wins register, writes closer together
// than the clocks' skew may order either way).
//
// Fan-out is not tried while a member is joining or leaving (the write must
// then reach the new owners too, which the coordinating node sees), nor
// when a target failed lately; a fan-out that a target does not acknowledge
// (wrong owner, unreachable, ...) is sent again the usual way, through one
// node, which is safe: a merge applied twice changes nothing more. Other
// writes (Delete, SetAdd, CounterAdd, ...), batches and local or durable
// acknowledgements always go through one node. Options.NoFanOut turns it
// off; Stats counts fan-outs and those that fell back.
package clusterclient
