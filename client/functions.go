package client

import (
	"bytes"
	"context"

	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/wire"
)

// Functions and DAGs. These calls go to a coordinator: `trellis up`'s
// native address, or a `trellis coordinator`.

// RegisterFunction uploads a WebAssembly module (built with `trellis fn
// build`) under name, replacing a function of that name. A module that does
// not compile is refused (ErrBadRequest).
func (c *Client) RegisterFunction(ctx context.Context, name string, module []byte) error {
	return c.nilOp(ctx, &wire.Request{Op: wire.OpFnRegister, Key: []byte(name), Value: module})
}

// Functions returns the registered function names, then the native
// functions of the executors (native/...).
func (c *Client) Functions(ctx context.Context) ([]string, error) {
	return c.names(ctx, wire.OpFnList)
}

// RegisterDAG registers d, replacing a DAG of its name. It is validated
// first: no cycle, one sink, every function registered (ErrBadRequest
// otherwise).
func (c *Client) RegisterDAG(ctx context.Context, d executor.DAG) error {
	return c.nilOp(ctx, &wire.Request{Op: wire.OpDagRegister, Key: []byte(d.Name), Value: d.AppendBinary(nil)})
}

// DAGs returns the registered DAG names, sorted.
func (c *Client) DAGs(ctx context.Context) ([]string, error) {
	return c.names(ctx, wire.OpDagList)
}

// DeleteDAG deletes a DAG and reports whether it existed.
func (c *Client) DeleteDAG(ctx context.Context, name string) (bool, error) {
	n, err := c.intOp(ctx, &wire.Request{Op: wire.OpDagDelete, Key: []byte(name)})
	return n == 1, err
}

// Future is the pending result of a call.
type Future struct {
	done chan struct{}
	res  []byte
	err  error
}

// Done is closed when the result is in.
func (f *Future) Done() <-chan struct{} { return f.done }

// Get waits for the result (or ctx's end): the sink's result, nil if the
// call stored it under a result key, or the call's error (ErrFunction for a
// function that failed, ErrTimeout, ErrNotFound for an unknown DAG, ...).
func (f *Future) Get(ctx context.Context) ([]byte, error) {
	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return nil, ctxErr(ctx)
	}
}

// CallDAG starts a call of DAG name and returns its future at once. ctx
// bounds the call (its deadline travels to the executors).
func (c *Client) CallDAG(ctx context.Context, name string, call executor.Call) *Future {
	f := &Future{done: make(chan struct{})}
	req := &wire.Request{Op: wire.OpDagCall, Key: []byte(name), Value: call.AppendBinary(nil)}
	go func() {
		defer close(f.done)
		f.res, f.err = c.bytesOp(ctx, req)
	}()
	return f
}

// Call runs one function on its own and returns its result. args are
// values (executor.Value) or key references (executor.Ref) resolved by the
// executor.
func (c *Client) Call(ctx context.Context, fn string, args ...executor.Arg) ([]byte, error) {
	enc := make([][]byte, len(args))
	for i, a := range args {
		enc[i] = executor.EncodeArg(a)
	}
	return c.bytesOp(ctx, &wire.Request{Op: wire.OpFnCall, Key: []byte(fn), Members: enc})
}

// bytesOp returns a copy of a bytes result (nil for a nil result).
func (c *Client) bytesOp(ctx context.Context, req *wire.Request) ([]byte, error) {
	cl, err := c.do(ctx, req)
	if err != nil {
		return nil, err
	}
	defer cl.release()
	if len(cl.resp.Result) == 1 && cl.resp.Result[0] == 0xc0 {
		return nil, nil
	}
	b, err := cl.resp.Bytes()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(b), nil
}

func (c *Client) names(ctx context.Context, op wire.Op) ([]string, error) {
	cl, err := c.do(ctx, &wire.Request{Op: op})
	if err != nil {
		return nil, err
	}
	defer cl.release()
	items, err := cl.resp.Items(nil)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, string(it.Value))
	}
	return out, nil
}
