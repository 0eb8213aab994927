package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/executor"
	"github.com/trellisdb/trellis/executor/wasm"
	"github.com/trellisdb/trellis/wire"
)

// functionsRunner loads the settings of "fn" and "dag" and runs a command
// with a client of the coordinator at --addr.
type functionsRunner struct{ loader *configLoader }

func (r functionsRunner) run(c *cobra.Command, fn func(ctx context.Context, cl *client.Client) error) error {
	cfg, err := r.loader.load()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Context(), cfg.Timeout)
	defer cancel()
	cl, err := client.Dial(ctx, cfg.Addr, client.Options{Conns: 1, Name: "trellis-" + c.Parent().Name()})
	if err != nil {
		return runtimeErr(err)
	}
	defer cl.Close()
	return runtimeErr(fn(ctx, cl))
}

func newFnCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fn",
		Short: "Build, register, list and call functions",
		Long: `Build WebAssembly functions from Go code (package fn), register them with a
coordinator (trellis up's --addr, or a trellis coordinator), list and call
them. Native functions of the executors are named native/NAME.`,
		Example: `  trellis fn build examples/functions/increment -o increment.wasm
  trellis fn register increment increment.wasm
  trellis fn call increment --arg 41
  trellis fn call native/square --arg 12
  trellis fn list`,
		Args: noArgs,
	}
	r := functionsRunner{newConfigLoader(cmdFunctions, cmd.PersistentFlags())}

	var out string
	build := &cobra.Command{
		Use:   "build DIR -o FILE.wasm",
		Short: "Compile a function's Go package to WebAssembly (needs the Go toolchain)",
		Long: `Compile the Go package in DIR, which calls fn.Handle in an init function, to a
WebAssembly module: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared.`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if out == "" {
				return &configError{"fn build needs the output file (-o FILE.wasm)"}
			}
			if err := wasm.Build(c.Context(), args[0], out); err != nil {
				return runtimeErr(err)
			}
			fmt.Fprintf(s.out, "built %s\n", out)
			return nil
		},
	}
	build.Flags().StringVarP(&out, "output", "o", "", "the module file to write")

	register := &cobra.Command{
		Use:   "register NAME FILE.wasm",
		Short: "Register (or replace) a WebAssembly function",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			code, err := os.ReadFile(args[1])
			if err != nil {
				return runtimeErr(err)
			}
			return r.run(c, func(ctx context.Context, cl *client.Client) error {
				if err := cl.RegisterFunction(ctx, args[0], code); err != nil {
					return err
				}
				fmt.Fprintf(s.out, "registered %s (%d bytes)\n", args[0], len(code))
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the registered functions, then the native ones",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return r.run(c, func(ctx context.Context, cl *client.Client) error {
				names, err := cl.Functions(ctx)
				for _, n := range names {
					fmt.Fprintln(s.out, n)
				}
				return err
			})
		},
	}
	var ca callArgs
	call := &cobra.Command{
		Use:   "call NAME [--arg VALUE]... [--arg-key KEY]...",
		Short: "Call one function and print its result",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return r.run(c, func(ctx context.Context, cl *client.Client) error {
				res, err := cl.Call(ctx, args[0], ca.args()...)
				if err != nil {
					return err
				}
				fmt.Fprintln(s.out, string(res))
				return nil
			})
		},
	}
	ca.flags(call)
	cmd.AddCommand(build, register, list, call)
	return cmd
}

// callArgs are the argument flags of "fn call" and "dag call": values
// first, then key references, each in the order given.
type callArgs struct{ values, keys []string }

func (a *callArgs) flags(c *cobra.Command) {
	c.Flags().StringArrayVar(&a.values, "arg", nil, "an argument value (repeatable)")
	c.Flags().StringArrayVar(&a.keys, "arg-key", nil, "an argument read from this key by the executor (repeatable; after the --arg values)")
}

func (a *callArgs) args() []executor.Arg {
	out := make([]executor.Arg, 0, len(a.values)+len(a.keys))
	for _, v := range a.values {
		out = append(out, executor.Value([]byte(v)))
	}
	for _, k := range a.keys {
		out = append(out, executor.Ref(k))
	}
	return out
}

func newDAGCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dag",
		Short: "Register, list, call and delete DAGs of functions",
		Long: `A DAG is a named graph of registered (or native/...) functions: each edge
carries a function's result to the next, as its last arguments; the one
function without successors (the sink) gives the call's result.`,
		Example: `  trellis dag register chain --fn increment --fn square --edge increment:square
  trellis dag call chain --arg 3
  trellis dag list
  trellis dag delete chain`,
		Args: noArgs,
	}
	r := functionsRunner{newConfigLoader(cmdFunctions, cmd.PersistentFlags())}

	var fns, edges []string
	register := &cobra.Command{
		Use:   "register NAME --fn A --fn B --edge A:B",
		Short: "Register (or replace) a DAG",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			d := executor.DAG{Name: args[0], Functions: fns}
			for _, e := range edges {
				from, to, ok := strings.Cut(e, ":")
				if !ok {
					return &configError{fmt.Sprintf("invalid edge %q: want FROM:TO", e)}
				}
				d.Edges = append(d.Edges, [2]string{from, to})
			}
			return r.run(c, func(ctx context.Context, cl *client.Client) error {
				if err := cl.RegisterDAG(ctx, d); err != nil {
					return err
				}
				fmt.Fprintf(s.out, "registered %s\n", d.Name)
				return nil
			})
		},
	}
	register.Flags().StringArrayVar(&fns, "fn", nil, "a function of the DAG (repeatable)")
	register.Flags().StringArrayVar(&edges, "edge", nil, "an edge FROM:TO (repeatable)")

	var ca callArgs
	var resultKey, level, ack string
	call := &cobra.Command{
		Use:   "call NAME [--arg VALUE]... [--arg-key KEY]... [--result-key KEY] [--consistency LEVEL]",
		Short: "Call a DAG and print its result; the arguments go to its source functions",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if ack != "" && oneOf("local", "quorum", "durable")(ack) != nil {
				return &configError{fmt.Sprintf("invalid --ack %q: local, quorum or durable", ack)}
			}
			return r.run(c, func(ctx context.Context, cl *client.Client) error {
				res, err := cl.CallDAG(ctx, args[0], executor.Call{
					Args: map[string][]executor.Arg{"": ca.args()}, ResultKey: resultKey, Consistency: level,
					Ack: callAck(ack),
				}).Get(ctx)
				if err != nil {
					return err
				}
				if resultKey != "" {
					fmt.Fprintf(s.out, "stored under %s\n", resultKey)
					return nil
				}
				fmt.Fprintln(s.out, string(res))
				return nil
			})
		},
	}
	ca.flags(call)
	call.Flags().StringVar(&resultKey, "result-key", "", "store the result under this key instead of printing it")
	call.Flags().StringVar(&ack, "ack", "", "what the functions' writes wait for: local, quorum or durable (default: the storage nodes' own)")
	call.Flags().StringVar(&level, "consistency", "lww", "what the call's reads see: lww (each read the freshest the executor has), repeatable-read (every function of the call reads the version the call read first) or causal (repeatable read whose versions respect each other's dependencies; writes become causal versions)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the registered DAGs",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return r.run(c, func(ctx context.Context, cl *client.Client) error {
				names, err := cl.DAGs(ctx)
				for _, n := range names {
					fmt.Fprintln(s.out, n)
				}
				return err
			})
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a DAG",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return r.run(c, func(ctx context.Context, cl *client.Client) error {
				existed, err := cl.DeleteDAG(ctx, args[0])
				if err != nil {
					return err
				}
				if !existed {
					fmt.Fprintf(s.out, "no DAG %s\n", args[0])
					return nil
				}
				fmt.Fprintf(s.out, "deleted %s\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(register, call, list, del)
	return cmd
}

// callAck maps an --ack value to the protocol's level ("": the default).
func callAck(s string) wire.Ack {
	if s == "" {
		return wire.AckDefault
	}
	return parseAck(s)
}
