package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/route"
)

// newClusterCmd is "trellis cluster": looking at and changing a cluster's
// membership through its routing tier.
func newClusterCmd(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show or change a cluster's membership (through its routing nodes)",
		Long: `Show a cluster's routing state, or change it, through the routing nodes given
by --route (any of them answers; changes go to the leader).`,
		Example: `  trellis cluster status --route 127.0.0.1:7710
  trellis cluster leave 1234567 --route 127.0.0.1:7710
  trellis cluster remove 7654321 --route 127.0.0.1:7710
  trellis cluster rf 2 --route 127.0.0.1:7710`,
		Args: noArgs,
	}
	loader := newConfigLoader(cmdCluster, cmd.PersistentFlags())
	// run loads the settings and calls fn with a routing-tier client and a
	// context bounded by --timeout.
	run := func(c *cobra.Command, fn func(ctx context.Context, rc *route.Client) error) error {
		cfg, err := loader.load()
		if err != nil {
			return err
		}
		addrs := splitAddrs(cfg.Route)
		if len(addrs) == 0 {
			return &configError{"cluster needs the routing nodes' addresses (--route or TRELLIS_ROUTE)"}
		}
		rc := route.NewClient(addrs, client.Options{Conns: 1, Name: "trellis-cluster"})
		defer rc.Close()
		ctx, cancel := context.WithTimeout(c.Context(), cfg.Timeout)
		defer cancel()
		return runtimeErr(fn(ctx, rc))
	}
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the cluster's storage nodes, their states and addresses",
		Args:  noArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return run(c, func(ctx context.Context, rc *route.Client) error {
				st, err := rc.State(ctx)
				if err != nil {
					return err
				}
				printState(s.out, st)
				return nil
			})
		},
	}
	// memberCmd is a command that proposes op for the node id it is given
	// and prints done (with the id and the new epoch).
	memberCmd := func(use, short, long string, op route.CommandOp, done string) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Long: long,
			Args: cobra.ExactArgs(1),
			RunE: func(c *cobra.Command, args []string) error {
				id, err := strconv.ParseUint(args[0], 10, 64)
				if err != nil || id == 0 {
					return &configError{fmt.Sprintf("invalid node id %q: want the decimal id that status prints", args[0])}
				}
				return run(c, func(ctx context.Context, rc *route.Client) error {
					st, err := rc.Propose(ctx, route.Command{Op: op, ID: id})
					if err != nil {
						return err
					}
					fmt.Fprintf(s.out, done+" (epoch %d)\n", id, st.Epoch)
					return nil
				})
			},
		}
	}
	leave := memberCmd("leave NODE-ID",
		"Ask a storage node to leave: it hands its keys off, then is removed and stops",
		`Ask a storage node to leave the cluster. It keeps serving while it pushes its
keys to the nodes that will replicate them without it; once they all hold
them, it removes itself from the cluster and its process exits. Watch it go
with "trellis cluster status".`, route.OpLeave, "node %d is leaving")
	remove := memberCmd("remove NODE-ID",
		"Forget a down storage node for good (its keys were re-replicated when it went down)",
		`Remove a storage node that is down from the cluster's membership: it is
listed no more, and if its process comes back it registers as a new node
(joining, then active). Only a down (or leaving) node can be removed; a
running node leaves with "trellis cluster leave".`, route.OpRemove, "node %d removed")
	rf := &cobra.Command{
		Use:   "rf FACTOR [KEY]",
		Short: "Set the default replication factor, or one key's (0 for a key: back to the default)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			n, err := strconv.Atoi(args[0])
			if err != nil {
				return &configError{fmt.Sprintf("invalid replication factor %q", args[0])}
			}
			cmd := route.Command{Op: route.OpSetDefaultRF, RF: n}
			if len(args) == 2 {
				cmd = route.Command{Op: route.OpSetRF, Key: args[1], RF: n}
			}
			if err := cmd.Validate(); err != nil {
				return &configError{err.Error()}
			}
			return run(c, func(ctx context.Context, rc *route.Client) error {
				st, err := rc.Propose(ctx, cmd)
				if err != nil {
					return err
				}
				fmt.Fprintf(s.out, "ok (epoch %d)\n", st.Epoch)
				return nil
			})
		},
	}
	cmd.AddCommand(status, leave, remove, rf)
	return cmd
}

// printState prints a routing state as a table.
func printState(w io.Writer, st route.State) {
	fmt.Fprintf(w, "epoch %d, default replication factor %d, %d storage nodes\n", st.Epoch, st.RF(nil), len(st.Members))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATE\tNATIVE\tREDIS")
	for _, m := range st.Members {
		resp := m.RESPAddr
		if resp == "" {
			resp = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", m.ID, m.State, m.Addr, resp)
	}
	tw.Flush()
	if len(st.KeyRF) > 0 {
		var keys []string
		for k, n := range st.KeyRF {
			keys = append(keys, fmt.Sprintf("%q=%d", k, n))
		}
		slices.Sort(keys)
		fmt.Fprintf(w, "per-key replication factors: %s\n", strings.Join(keys, " "))
	}
}
