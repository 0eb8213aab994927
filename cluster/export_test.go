package cluster

// SetBatchLimits sets the limits of batches sent to peers, for tests that
// want many small batches, and returns a function that restores them.
func SetBatchLimits(keys, bytes, buckets int) (restore func()) {
	k, b, bu := maxBatchKeys, maxBatchBytes, maxBucketsPerCall
	maxBatchKeys, maxBatchBytes, maxBucketsPerCall = keys, bytes, buckets
	return func() { maxBatchKeys, maxBatchBytes, maxBucketsPerCall = k, b, bu }
}

// SetFetchReplyLimit sets the bound of a FETCH reply's cells and returns a
// function that restores it.
func SetFetchReplyLimit(n int) (restore func()) {
	old := maxFetchReply
	maxFetchReply = n
	return func() { maxFetchReply = old }
}

// LoopWrites returns how many writes ServeOnLoop replicated from an event
// loop (those that needed acknowledgements from peers).
func (n *Node) LoopWrites() uint64 { return n.loopWrites.Load() }
