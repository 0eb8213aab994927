package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/kvs"
	"github.com/trellisdb/trellis/resp"
)

func newCLICmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cli [command [argument...]]",
		Short: "A redis-cli-like shell over the native protocol",
		Long: `Send commands to a Trellis node over the native protocol, as redis-cli does to
Redis. With a command on the command line, cli runs it, prints the reply and
exits (status 1 if the node answered with an error). Without one it reads
commands from stdin, one per line, until EOF or QUIT; it prints a prompt when
stdin is a terminal. Lines are split like redis-cli splits them: "double
quotes" understand \n, \t, \xHH and friends, 'single quotes' are literal.

Flags go before the command: trellis cli --addr HOST:PORT get k.
Type HELP for the list of commands.`,
		Example: `  trellis cli set greeting "hello world"
  trellis cli get greeting
  trellis cli --addr 10.0.0.5:7700 incrby visits 10
  trellis cli                           # interactive
  printf 'sadd s a b\nsmembers s\n' | trellis cli`,
	}
	cmd.Flags().SetInterspersed(false) // "incrby k -1": -1 is an argument
	loader := newConfigLoader(cmdCLI, cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		cfg, err := loader.load()
		if err != nil {
			return err
		}
		if cfg.Addr == kvs.AddrOff {
			return &configError{`invalid value "off" for addr: cli needs the address of a node`}
		}
		sh := &shell{addr: cfg.Addr, timeout: cfg.Timeout, out: s.out}
		defer sh.close()
		if len(args) > 0 {
			return sh.oneShot(cmd.Context(), args)
		}
		sh.interactive(cmd.Context(), s.in, isTerminal(s.in))
		return nil
	}
	return cmd
}

// isTerminal reports whether r is a character device (an interactive
// terminal), which is when the shell prints prompts.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// shell runs cli commands against one node. It connects on first use and
// again after a failed connection attempt.
type shell struct {
	addr    string
	timeout time.Duration
	out     io.Writer
	c       *client.Client
}

// errConnect wraps a failure to reach the node.
type errConnect struct{ err error }

func (e *errConnect) Error() string { return e.err.Error() }
func (e *errConnect) Unwrap() error { return e.err }

func (sh *shell) close() {
	if sh.c != nil {
		_ = sh.c.Close()
	}
}

func (sh *shell) client(ctx context.Context) (*client.Client, error) {
	if sh.c != nil {
		return sh.c, nil
	}
	c, err := client.Dial(ctx, sh.addr, client.Options{Conns: 1, Name: "trellis-cli"})
	if err != nil {
		cause := err
		var oe *net.OpError
		if errors.As(err, &oe) {
			cause = oe.Err // "connect: connection refused", without the repeated address
		}
		return nil, &errConnect{fmt.Errorf("could not connect to Trellis at %s: %w", sh.addr, cause)}
	}
	sh.c = c
	return c, nil
}

// oneShot runs one command given as arguments and prints its reply. A
// server error is printed as (error) ... and gives exit status 1; a failure
// to connect is returned, for run to print on stderr (status 1).
func (sh *shell) oneShot(ctx context.Context, args []string) error {
	reply, err := sh.exec(ctx, args)
	var ce *errConnect
	switch {
	case errors.As(err, &ce):
		return &exitError{code: exitFailure, err: ce}
	case err != nil:
		fmt.Fprintln(sh.out, replyError(err))
		return &exitError{code: exitFailure, err: err, silent: true}
	}
	if reply != "" {
		fmt.Fprintln(sh.out, reply)
	}
	return nil
}

// interactive reads commands from in, one per line, until EOF or QUIT, and
// prints their replies. With prompt it prints "<addr>> " before each line.
func (sh *shell) interactive(ctx context.Context, in io.Reader, prompt bool) {
	r := bufio.NewReader(in)
	for {
		if prompt {
			fmt.Fprintf(sh.out, "%s> ", sh.addr)
		}
		line, err := r.ReadString('\n')
		if line == "" && err != nil {
			if prompt {
				fmt.Fprintln(sh.out)
			}
			return
		}
		args, ok := splitLine(line)
		switch {
		case !ok:
			fmt.Fprintln(sh.out, "Invalid argument(s)")
			continue
		case len(args) == 0:
			continue
		case isQuit(args[0]):
			return
		}
		reply, err := sh.exec(ctx, args)
		var ce *errConnect
		switch {
		case errors.As(err, &ce):
			fmt.Fprintln(sh.out, ce.Error())
		case err != nil:
			fmt.Fprintln(sh.out, replyError(err))
		case reply != "":
			fmt.Fprintln(sh.out, reply)
		}
	}
}

func isQuit(name string) bool {
	return strings.EqualFold(name, "quit") || strings.EqualFold(name, "exit")
}

// splitLine splits a command line into arguments exactly as redis-cli does
// (sdssplitargs), using the resp package's inline-command parser; ok is
// false for unbalanced quotes. The line is given a leading blank so that it
// is always parsed as an inline command, even when it starts with '*'.
func splitLine(line string) (args []string, ok bool) {
	line = strings.TrimRight(line, "\r\n")
	buf := make([]byte, 0, len(line)+2)
	buf = append(append(append(buf, ' '), line...), '\n')
	parts, _, err := resp.ParseCommand(buf, nil, resp.Limits{MaxInline: len(buf)})
	if err != nil {
		return nil, false
	}
	args = make([]string, len(parts))
	for i, p := range parts {
		args[i] = string(p)
	}
	return args, true
}

// usageError is a command used with the wrong arguments; the reply text
// follows Redis's.
type usageError string

func (e usageError) Error() string { return string(e) }

// command is one cli command.
type command struct {
	name     string
	args     string // argument synopsis for HELP
	min, max int    // argument count, not counting the name; max < 0: any
	help     string
	// check, if set, validates the arguments before anything is sent.
	check func(args []string) error
	run   func(ctx context.Context, c *client.Client, args []string) (string, error)
}

// commands lists the cli commands, in HELP order. HELP and QUIT are handled
// by the shell.
var commands = []command{
	{name: "PING", min: 0, max: 0, help: "check that the node answers", run: cmdPing},
	{name: "GET", args: "key", min: 1, max: 1, help: "the value of key (any lattice)", run: cmdGet},
	{name: "SET", args: "key value", min: 2, max: 2, help: "write value to key's last-writer-wins register", run: cmdSet},
	{name: "DEL", args: "key [key ...]", min: 1, max: -1, help: "delete keys; replies how many held a value", run: cmdDel},
	{name: "SADD", args: "key member [member ...]", min: 2, max: -1, help: "add members to the set at key; replies how many were new", run: cmdSAdd},
	{name: "SREM", args: "key member [member ...]", min: 2, max: -1, help: "remove members from the set at key; replies how many were present", run: cmdSRem},
	{name: "SMEMBERS", args: "key", min: 1, max: 1, help: "the members of the set at key", run: cmdSMembers},
	{name: "INCR", args: "key", min: 1, max: 1, help: "add 1 to the counter at key; replies its new value", run: counterCmd(1, false)},
	{name: "DECR", args: "key", min: 1, max: 1, help: "subtract 1 from the counter at key", run: counterCmd(-1, false)},
	{name: "INCRBY", args: "key increment", min: 2, max: 2, help: "add increment to the counter at key",
		check: func(a []string) error { _, err := counterDelta(1, a[1]); return err }, run: counterCmd(1, true)},
	{name: "DECRBY", args: "key decrement", min: 2, max: 2, help: "subtract decrement from the counter at key",
		check: func(a []string) error { _, err := counterDelta(-1, a[1]); return err }, run: counterCmd(-1, true)},
	{name: "TYPE", args: "key", min: 1, max: 1, help: "the lattice type of key's value, or none", run: cmdType},
	{name: "STATS", min: 0, max: 0, help: "the node's statistics, per shard", run: cmdStats},
	{name: "INFO", min: 0, max: 0, help: "what the node said about itself when cli connected", run: cmdInfo},
}

func cmdPing(ctx context.Context, c *client.Client, _ []string) (string, error) {
	if err := c.Ping(ctx); err != nil {
		return "", err
	}
	return "PONG", nil
}

func cmdSet(ctx context.Context, c *client.Client, a []string) (string, error) {
	if err := c.Set(ctx, a[0], []byte(a[1])); err != nil {
		return "", err
	}
	return replyOK, nil
}

func cmdSAdd(ctx context.Context, c *client.Client, a []string) (string, error) {
	n, err := c.SetAdd(ctx, a[0], toBytes(a[1:])...)
	return replyInt(int64(n)), err
}

func cmdSRem(ctx context.Context, c *client.Client, a []string) (string, error) {
	n, err := c.SetRemove(ctx, a[0], toBytes(a[1:])...)
	return replyInt(int64(n)), err
}

func cmdSMembers(ctx context.Context, c *client.Client, a []string) (string, error) {
	m, err := c.SetMembers(ctx, a[0])
	return numbered(quoteAll(m)), err
}

func cmdType(ctx context.Context, c *client.Client, a []string) (string, error) {
	v, err := c.Get(ctx, a[0])
	switch {
	case errors.Is(err, client.ErrNotFound):
		return "none", nil
	case err != nil:
		return "", err
	}
	return v.Type().String(), nil
}

func cmdStats(ctx context.Context, c *client.Client, _ []string) (string, error) {
	st, err := c.Stats(ctx)
	if err != nil {
		return "", err
	}
	return renderStats(st), nil
}

func cmdInfo(_ context.Context, c *client.Client, _ []string) (string, error) {
	i := c.Info()
	return fmt.Sprintf("version: %s\nnode: %d\nmax_frame: %d\nmax_key: %d\nmax_value: %d",
		i.Version, i.NodeID, i.MaxFrame, i.MaxKey, i.MaxValue), nil
}

func cmdGet(ctx context.Context, c *client.Client, a []string) (string, error) {
	v, err := c.Get(ctx, a[0])
	if errors.Is(err, client.ErrNotFound) {
		return replyNil, nil
	}
	if err != nil {
		return "", err
	}
	return renderValue(v), nil
}

func cmdDel(ctx context.Context, c *client.Client, a []string) (string, error) {
	if len(a) == 1 {
		existed, err := c.Delete(ctx, a[0])
		n := int64(0)
		if existed {
			n = 1
		}
		return replyInt(n), err
	}
	n, err := c.DeleteMany(ctx, a...)
	return replyInt(int64(n)), err
}

// counterCmd returns INCR/DECR (sign times 1) or, withArg, INCRBY/DECRBY
// (sign times the argument).
func counterCmd(sign int64, withArg bool) func(context.Context, *client.Client, []string) (string, error) {
	return func(ctx context.Context, c *client.Client, a []string) (string, error) {
		delta := sign
		if withArg {
			var err error
			if delta, err = counterDelta(sign, a[1]); err != nil {
				return "", err
			}
		}
		v, err := c.CounterAdd(ctx, a[0], delta)
		return replyInt(v), err
	}
}

// counterDelta parses an INCRBY/DECRBY argument and applies sign.
func counterDelta(sign int64, arg string) (int64, error) {
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || (sign < 0 && n == math.MinInt64) { // -MinInt64 overflows
		return 0, usageError("ERR value is not an integer or out of range")
	}
	return sign * n, nil
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// helpText lists the commands.
func helpText() string {
	var s strings.Builder
	s.WriteString("Commands (case-insensitive):\n")
	for _, c := range commands {
		fmt.Fprintf(&s, "  %-32s %s\n", strings.TrimSpace(c.name+" "+c.args), c.help)
	}
	fmt.Fprintf(&s, "  %-32s %s\n", "HELP", "this list")
	fmt.Fprintf(&s, "  %-32s %s", "QUIT", "leave the shell")
	return s.String()
}

// exec runs one command and returns its rendered reply. Errors are the
// server's, a usageError, or an *errConnect.
func (sh *shell) exec(ctx context.Context, args []string) (string, error) {
	name := strings.ToUpper(args[0])
	switch name {
	case "HELP":
		return helpText(), nil
	case "QUIT", "EXIT":
		return "", nil
	}
	i := -1
	for j := range commands {
		if commands[j].name == name {
			i = j
			break
		}
	}
	if i < 0 {
		return "", usageError(fmt.Sprintf("ERR unknown command '%s' (type HELP for the list)", args[0]))
	}
	cmd := commands[i]
	if n := len(args) - 1; n < cmd.min || (cmd.max >= 0 && n > cmd.max) {
		return "", usageError(fmt.Sprintf("ERR wrong number of arguments for '%s' command", strings.ToLower(name)))
	}
	if cmd.check != nil {
		if err := cmd.check(args[1:]); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, sh.timeout)
	defer cancel()
	c, err := sh.client(ctx)
	if err != nil {
		return "", err
	}
	return cmd.run(ctx, c, args[1:])
}
