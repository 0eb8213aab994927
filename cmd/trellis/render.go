package main

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/lattice"
)

// This file renders replies the way redis-cli does on a terminal: OK,
// (nil), (integer) 5, "quoted" strings, numbered lists, (empty array),
// (error) ... Lattices that Redis has no type for get their type name in
// parentheses and a readable summary.

const (
	replyOK    = "OK"
	replyNil   = "(nil)"
	replyEmpty = "(empty array)"
)

func replyInt(n int64) string { return "(integer) " + strconv.FormatInt(n, 10) }

func replyError(err error) string { return "(error) " + err.Error() }

// quote renders b as redis-cli does (sdscatrepr): in double quotes, with
// \\ \" \n \r \t \a \b escaped, other printable ASCII as is and every other
// byte as \xHH.
func quote(b []byte) string {
	var s strings.Builder
	s.Grow(len(b) + 2)
	s.WriteByte('"')
	for _, c := range b {
		switch c {
		case '\\', '"':
			s.WriteByte('\\')
			s.WriteByte(c)
		case '\n':
			s.WriteString(`\n`)
		case '\r':
			s.WriteString(`\r`)
		case '\t':
			s.WriteString(`\t`)
		case '\a':
			s.WriteString(`\a`)
		case '\b':
			s.WriteString(`\b`)
		default:
			if c >= 0x20 && c < 0x7f {
				s.WriteByte(c)
			} else {
				fmt.Fprintf(&s, `\x%02x`, c)
			}
		}
	}
	s.WriteByte('"')
	return s.String()
}

// numbered renders items as redis-cli renders an array: "1) a", with the
// numbers right-aligned when there are ten or more; no items is
// "(empty array)".
func numbered(items []string) string {
	if len(items) == 0 {
		return replyEmpty
	}
	width := len(strconv.Itoa(len(items)))
	var s strings.Builder
	for i, it := range items {
		if i > 0 {
			s.WriteByte('\n')
		}
		fmt.Fprintf(&s, "%*d) %s", width, i+1, it)
	}
	return s.String()
}

func quoteAll(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = quote(b)
	}
	return out
}

// elementer is every set lattice.
type elementer interface{ Elements() [][]byte }

// renderValue renders a stored lattice as the reply to GET.
func renderValue(v lattice.Lattice) string {
	switch x := v.(type) {
	case *lattice.LWW:
		return quote(x.Value)
	case *lattice.Counter:
		return replyInt(x.Value())
	case elementer:
		return numbered(quoteAll(x.Elements()))
	case *lattice.Map:
		if x.Len() == 0 {
			return "(empty map)"
		}
		items := make([]string, 0, x.Len())
		for _, k := range x.Keys() {
			items = append(items, quote([]byte(k))+" => "+inline(x.Get(k)))
		}
		return numbered(items)
	case *lattice.SingleCausal:
		return fmt.Sprintf("(%s) %s\n%s", x.Type(), versions(x.Len()), numbered(quoteAll(x.Values())))
	case *lattice.MultiCausal:
		return fmt.Sprintf("(%s) %s\n%s", x.Type(), versions(x.Len()), numbered(quoteAll(x.Values())))
	}
	return inline(v)
}

func versions(n int) string {
	if n == 1 {
		return "1 version"
	}
	return strconv.Itoa(n) + " versions"
}

// inline renders a lattice on one line: for values nested in a map, and for
// the types that have no Redis equivalent.
func inline(v lattice.Lattice) string {
	switch x := v.(type) {
	case nil:
		return replyNil
	case *lattice.LWW:
		return quote(x.Value)
	case *lattice.Counter:
		return replyInt(x.Value())
	case *lattice.Max:
		return fmt.Sprintf("(%s) %d", x.Type(), x.Value)
	case *lattice.BoolOr:
		return fmt.Sprintf("(%s) %t", x.Type(), x.Value)
	case *lattice.MinPriority:
		return fmt.Sprintf("(%s) priority %d %s", x.Type(), x.Priority, quote(x.Value))
	case *lattice.VClock:
		return fmt.Sprintf("(%s) %s", x.Type(), clockString(x))
	case elementer:
		return fmt.Sprintf("(%s) [%s]", v.Type(), strings.Join(quoteAll(x.Elements()), " "))
	case *lattice.Map:
		parts := make([]string, 0, x.Len())
		for _, k := range x.Keys() {
			parts = append(parts, quote([]byte(k))+": "+inline(x.Get(k)))
		}
		return fmt.Sprintf("(%s) {%s}", x.Type(), strings.Join(parts, ", "))
	case *lattice.SingleCausal:
		return fmt.Sprintf("(%s) [%s]", x.Type(), strings.Join(quoteAll(x.Values()), " "))
	case *lattice.MultiCausal:
		return fmt.Sprintf("(%s) [%s]", x.Type(), strings.Join(quoteAll(x.Values()), " "))
	}
	return fmt.Sprintf("(%s) %v", v.Type(), v)
}

// clockString renders a vector clock as {actor:count, ...} in actor order.
func clockString(c *lattice.VClock) string {
	counts := c.Counters()
	parts := make([]string, 0, len(counts))
	for _, a := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d:%d", a, counts[a]))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// renderStats renders a node's statistics: a summary line and a table with
// one row per shard and a total row.
func renderStats(st client.Stats) string {
	var s strings.Builder
	fmt.Fprintf(&s, "node %d: %d keys, %d connections, %d commands, %d rejected connections\n",
		st.NodeID, st.Keys, st.Connections, st.Commands, st.RejectedConnections)
	tw := tabwriter.NewWriter(&s, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "shard\tkeys\ttombstones\treads\twrites\tbytes\tbusy\t\n")
	var total client.ShardStats
	for i, sh := range st.Shards {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", i, sh.Keys, sh.Tombstones, sh.Reads, sh.Writes,
			sh.Bytes, time.Duration(sh.BusyNanos).Round(time.Microsecond))
		total.Keys += sh.Keys
		total.Tombstones += sh.Tombstones
		total.Reads += sh.Reads
		total.Writes += sh.Writes
		total.Bytes += sh.Bytes
		total.BusyNanos += sh.BusyNanos
	}
	fmt.Fprintf(tw, "total\t%d\t%d\t%d\t%d\t%d\t%s\t\n", total.Keys, total.Tombstones, total.Reads, total.Writes,
		total.Bytes, time.Duration(total.BusyNanos).Round(time.Microsecond))
	_ = tw.Flush()
	return strings.TrimRight(s.String(), "\n")
}
