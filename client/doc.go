// Package client is the Go client of Trellis's native protocol.
//
//	c, err := client.Dial(ctx, "127.0.0.1:7700", client.Options{})
//	defer c.Close()
//	err = c.Set(ctx, "greeting", []byte("hello"))
//	v, err := c.GetBytes(ctx, "greeting")
//
// Every call takes a context that bounds it entirely (connecting included);
// a call whose context ends returns its error, and the connection stays
// usable. Errors are comparable with errors.Is against the exported
// sentinels (ErrNotFound, ErrTypeMismatch, ...), which are the protocol's
// (package wire), so they match whatever wraps them.
//
// A Client holds a small pool of connections (Options.Conns) and is safe for
// concurrent use. Concurrent calls on one connection are pipelined: each
// request is written as soon as the connection is free, requests that arrive
// meanwhile are written together, and responses are matched in order. Batch
// sends many requests in one write explicitly; GetMany and PutMany are single
// requests carrying many keys.
package client
