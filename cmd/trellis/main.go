package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1 // runtime failure
	exitUsage   = 2 // bad command line or configuration
)

// exitError carries a command's exit status. A silent one has already been
// reported (cli prints server errors itself, as redis-cli does).
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// streams are a command's standard input and outputs.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// run executes the trellis command line args and returns the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(streams{in: stdin, out: stdout, err: stderr})
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code := exitUsage // errors cobra returns itself are about the command line
	var ee *exitError
	var ce *configError
	switch {
	case errors.As(err, &ce):
		code = exitUsage
	case errors.As(err, &ee):
		code = ee.code
	}
	if ee == nil || !ee.silent {
		fmt.Fprintf(stderr, "trellis: %v\n", err)
		if code == exitUsage && ce == nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", commandPath(root, args))
		}
	}
	return code
}

// commandPath returns "trellis up" for args naming the up command, "trellis"
// otherwise.
func commandPath(root *cobra.Command, args []string) string {
	if c, _, err := root.Find(args); err == nil && c != nil {
		return c.CommandPath()
	}
	return root.Name()
}

func newRootCmd(s streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "trellis",
		Short: "Trellis: a distributed key-value store of lattices",
		Long: `Trellis is a distributed key-value store whose every value is a lattice, so
replicas merge instead of coordinating. One binary runs every role.

Settings come from flags, TRELLIS_* environment variables, a config file
(--config) and defaults, in that order of precedence: see
docs/configuration.md.`,
		Example: `  trellis up                          # run a node on 127.0.0.1:7700 (native) and :7379 (Redis)
  trellis cli set hello world         # one command against the local node
  trellis cli                         # interactive shell
  trellis version`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newUpCmd(s), newCLICmd(s), newVersionCmd(s), newBenchCmd(), newRouteCmd(s), newKVSCmd(s), newClusterCmd(s), newFnCmd(s), newDAGCmd(s), newCoordinatorCmd(s), newExecutorCmd(s))
	return root
}

// runtimeErr marks err as a runtime failure (exit status 1) unless it already
// carries a status.
func runtimeErr(err error) error {
	var ee *exitError
	var ce *configError
	if err == nil || errors.As(err, &ee) || errors.As(err, &ce) {
		return err
	}
	return &exitError{code: exitFailure, err: err}
}

// noArgs is cobra.NoArgs with a message that names the command.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%s takes no arguments, got %q", cmd.CommandPath(), strings.Join(args, " "))
	}
	return nil
}
