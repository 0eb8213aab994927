package clusterclient

import (
	"errors"
	"fmt"
	"time"

	"github.com/trellisdb/trellis/client"
	"github.com/trellisdb/trellis/route"
	"github.com/trellisdb/trellis/wire"
)

// Options configure a Client. Route is required; every other field's zero
// value means its default.
type Options struct {
	// Route lists native-protocol addresses of the cluster's routing nodes;
	// any of them answers. Required.
	Route []string
	// Client configures the connection pool the Client keeps to each
	// storage node (client.Options; its defaults: 2 connections, ...). The
	// connections to the routing nodes use it too, one per routing node.
	Client client.Options
	// Ack is the acknowledgement writes ask for (client.AckLocal,
	// AckQuorum, AckDurable). Default client.AckQuorum: a write is
	// acknowledged once a majority of its replicas hold it, so the loss of
	// one node of three loses no acknowledged write.
	Ack wire.Ack
	// Timeout bounds a call, retries included, whose context has no
	// deadline; it also bounds Dial and each fetch of the routing state.
	// Default 10 s.
	Timeout time.Duration
	// AttemptTimeout bounds one attempt at one storage node, after which
	// the call moves on to the key's next replica (as from a node that
	// cannot be reached). It lets a call get past a node that hangs without
	// closing its connections; it must exceed a write's replication time.
	// Default 0: an attempt may take the call's whole remaining time.
	AttemptTimeout time.Duration
	// RefreshEvery is the period of the background fetch of the routing
	// state, through which the client learns of nodes that joined without
	// having to be told by a wrong-owner answer. Default 1 s; negative:
	// never (the state then changes only on wrong-owner answers, failed
	// rounds and Refresh).
	RefreshEvery time.Duration
	// MinBackoff and MaxBackoff bound the pause after a round in which no
	// replica of a key served a request: MinBackoff doubling up to
	// MaxBackoff. Defaults 5 ms and 250 ms.
	MinBackoff, MaxBackoff time.Duration
	// SuspectFor is how long a storage node that could not be reached is
	// tried only after the other replicas of a key. Default 1 s.
	SuspectFor time.Duration
	// NoFanOut makes quorum writes go to one replica of the key, which
	// replicates them and answers once a quorum holds them, instead of to
	// a quorum of replicas at once (see "Fan-out" in the package doc).
	NoFanOut bool
	// Vnodes is the number of points per member on the global ring; it
	// must be the storage nodes' (cluster.Config.Vnodes). Default
	// route.DefaultVnodes.
	Vnodes int
}

// Defaults of Options.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultRefreshEvery = time.Second
	DefaultMinBackoff   = 5 * time.Millisecond
	DefaultMaxBackoff   = 250 * time.Millisecond
	DefaultSuspectFor   = time.Second
)

// Validate reports a missing or unusable field.
func (o Options) Validate() error {
	if len(o.Route) == 0 {
		return errors.New("clusterclient: Options.Route lists no routing node")
	}
	for _, a := range o.Route {
		if a == "" {
			return errors.New("clusterclient: Options.Route holds an empty address")
		}
	}
	switch {
	case o.Ack > wire.AckDurable:
		return fmt.Errorf("clusterclient: unknown acknowledgement %d", o.Ack)
	case o.Timeout < 0, o.AttemptTimeout < 0, o.MinBackoff < 0, o.MaxBackoff < 0, o.SuspectFor < 0:
		return errors.New("clusterclient: Options durations must not be negative (but RefreshEvery)")
	case o.MinBackoff > 0 && o.MaxBackoff > 0 && o.MinBackoff > o.MaxBackoff:
		return fmt.Errorf("clusterclient: MinBackoff %v exceeds MaxBackoff %v", o.MinBackoff, o.MaxBackoff)
	case o.Vnodes < 0 || o.Vnodes > 65536:
		return fmt.Errorf("clusterclient: Vnodes %d not in [1, 65536]", o.Vnodes)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.Ack == wire.AckDefault {
		o.Ack = wire.AckQuorum
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RefreshEvery == 0 {
		o.RefreshEvery = DefaultRefreshEvery
	}
	if o.MinBackoff == 0 {
		o.MinBackoff = DefaultMinBackoff
		if o.MaxBackoff > 0 {
			o.MinBackoff = min(o.MinBackoff, o.MaxBackoff)
		}
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = max(DefaultMaxBackoff, o.MinBackoff)
	}
	if o.SuspectFor == 0 {
		o.SuspectFor = DefaultSuspectFor
	}
	if o.Vnodes == 0 {
		o.Vnodes = route.DefaultVnodes
	}
	return o
}
