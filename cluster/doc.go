// Package cluster makes a storage node (a kvs.Store) a member of a cluster:
// it knows from the routing state which keys the node replicates, checks
// that requests reach a responsible node, replicates writes to the key's
// other replicas with the acknowledgement the client asked for, gossips
// what it could not replicate at once, and repairs replicas by
// anti-entropy. docs/cluster-design.md describes the protocol.
//
// A Node is driven from outside: SetState gives it each new routing state;
// Serve handles requests (client operations and the storage-node
// operations of package wire) however they arrived; Run does the periodic
// work, which tests can also do step by step with GossipOnce and
// AntiEntropyOnce. Peers are reached through a Transport (memnet in tests).
//
// A client write of the common kind (one key, a local or quorum
// acknowledgement, an epoch no newer than the node's) is served on the
// storage node's event loop that read it (ServeOnLoop): the REPLICATE
// calls go out over that loop's own peer connections (kvs.Loop) and their
// answers are counted there, with the same rules as Replicate (one round
// type, round, for both). Only a refusal for a newer epoch moves the
// write to a goroutine, for the refresh and the rounds after it.
//
// Replication moves whole cells (lattice.Cell: the value and its delete
// epoch), and every receiver merges them (kvs.Store.MergeCell), so repeated,
// reordered or concurrent deliveries converge.
package cluster
