package benchmarks

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/trellisdb/trellis/wire"
)

// Distributions of keys.
const (
	// Uniform draws every key with the same probability.
	Uniform = "uniform"
	// Zipfian draws key i (0-based) with probability proportional to
	// 1/(i+1)^s: key 0 is the hottest.
	Zipfian = "zipfian"
)

// Defaults for KVSConfig.
const (
	DefaultAddr      = "127.0.0.1:7700"
	DefaultConns     = 50
	DefaultPipeline  = 16
	DefaultDuration  = 10 * time.Second
	DefaultKeys      = 100_000
	DefaultZipfS     = 0.99
	DefaultValueSize = 100
	DefaultGetRatio  = 0.5
)

// NoGets is the GetRatio of a set-only load (zero means the default ratio).
const NoGets = -1.0

// MaxKeys is the largest keyspace: keys are "key:%012d".
const MaxKeys = 1_000_000_000_000

// ErrInvalidConfig is wrapped by the errors Validate returns.
var ErrInvalidConfig = errors.New("benchmarks: invalid config")

// KVSConfig configures RunKVS. The zero value means "every default".
type KVSConfig struct {
	// Addr is the node's native-protocol address. Default 127.0.0.1:7700.
	Addr string
	// Conns is the number of connections, one per worker. Default 50.
	Conns int
	// Pipeline is the number of requests each connection has in flight:
	// a worker sends a batch of Pipeline requests in one write and waits for
	// all responses. Default 16.
	Pipeline int
	// Duration bounds the measured run. Default 10 s when Requests is zero,
	// otherwise unbounded; when both are set the run ends at whichever comes
	// first.
	Duration time.Duration
	// Requests is the total number of operations to run, over all workers.
	// Default 0: the run is bounded by Duration only.
	Requests int64
	// Keys is the size of the keyspace, keys "key:%012d" over [0, Keys).
	// Default 100000, at most MaxKeys.
	Keys int64
	// Distribution of keys: Uniform or Zipfian. Default Uniform.
	Distribution string
	// ZipfS is the Zipfian exponent s, > 0. Default 0.99 (YCSB's).
	ZipfS float64
	// ValueSize is the size of set values, in bytes. Default 100.
	ValueSize int
	// GetRatio is the fraction of operations that are gets, in [0, 1]; the
	// rest are sets. Default 0.5; NoGets (any negative value) for a
	// set-only load.
	GetRatio float64
	// SkipPreload skips writing every key once before the measured run.
	// Default false: keys are preloaded, so that gets hit.
	SkipPreload bool
	// Seed seeds the workers' generators. Default 0 (a valid seed).
	Seed uint64
	// Route, when set, lists routing nodes of a cluster: each worker then
	// sends its operations through a cluster client (package
	// clusterclient) to the replicas of each key, and Addr is not used.
	// With Pipeline 1 each operation is a single call (so quorum sets fan
	// out, see clusterclient); with more, a cluster client's batch.
	Route []string
	// Ack is the acknowledgement sets ask for: "local", "quorum" or
	// "durable". Default "": the node's default (with Route, the cluster
	// client's: quorum).
	Ack string
	// NoFanOut, with Route, sends quorum sets through one node, which
	// replicates them, instead of to a quorum of replicas at once.
	NoFanOut bool
}

// WithDefaults returns c with its zero fields set to their defaults.
func (c KVSConfig) WithDefaults() KVSConfig {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.Conns == 0 {
		c.Conns = DefaultConns
	}
	if c.Pipeline == 0 {
		c.Pipeline = DefaultPipeline
	}
	if c.Duration == 0 && c.Requests == 0 {
		c.Duration = DefaultDuration
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.Distribution == "" {
		c.Distribution = Uniform
	}
	if c.ZipfS == 0 {
		c.ZipfS = DefaultZipfS
	}
	if c.ValueSize == 0 {
		c.ValueSize = DefaultValueSize
	}
	if c.GetRatio == 0 {
		c.GetRatio = DefaultGetRatio
	}
	return c
}

// getRatio is the effective fraction of gets.
func (c KVSConfig) getRatio() float64 { return max(c.GetRatio, 0) }

// Validate reports whether c, after defaults, describes a runnable load.
// Its errors wrap ErrInvalidConfig.
func (c KVSConfig) Validate() error {
	c = c.WithDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, a...))
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return bad("address %q: %v", c.Addr, err)
	}
	for _, a := range c.Route {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return bad("routing address %q: %v", a, err)
		}
	}
	if _, err := c.ack(); err != nil {
		return bad("%v", err)
	}
	switch {
	case c.Conns < 1:
		return bad("conns must be positive, got %d", c.Conns)
	case c.Pipeline < 1:
		return bad("pipeline must be positive, got %d", c.Pipeline)
	case c.Duration < 0:
		return bad("duration must not be negative, got %v", c.Duration)
	case c.Requests < 0:
		return bad("requests must not be negative, got %d", c.Requests)
	case c.Keys < 1 || c.Keys > MaxKeys:
		return bad("keys must be in [1, %d], got %d", int64(MaxKeys), c.Keys)
	case c.Distribution != Uniform && c.Distribution != Zipfian:
		return bad("distribution must be %q or %q, got %q", Uniform, Zipfian, c.Distribution)
	case !(c.ZipfS > 0) || c.ZipfS > 100:
		return bad("zipf exponent must be in (0, 100], got %v", c.ZipfS)
	case c.ValueSize < 0:
		return bad("value size must not be negative, got %d", c.ValueSize)
	case c.GetRatio > 1 || c.GetRatio != c.GetRatio:
		return bad("get ratio must be at most 1, got %v", c.GetRatio)
	}
	return nil
}

// kvsConfigJSON is KVSConfig's JSON form: effective values, explicit
// (get_ratio 0 is a set-only load, preload false skips the preload).
type kvsConfigJSON struct {
	Addr         string  `json:"addr"`
	Conns        int     `json:"conns"`
	Pipeline     int     `json:"pipeline"`
	DurationS    float64 `json:"duration_s"`
	Requests     int64   `json:"requests"`
	Keys         int64   `json:"keys"`
	Distribution string  `json:"dist"`
	ZipfS        float64 `json:"zipf_s"`
	ValueSize    int     `json:"value_size"`
	GetRatio     float64 `json:"get_ratio"`
	Preload      bool    `json:"preload"`
	Seed         uint64  `json:"seed"`
}

// MarshalJSON writes c's effective values (defaults applied).
func (c KVSConfig) MarshalJSON() ([]byte, error) {
	c = c.WithDefaults()
	return json.Marshal(kvsConfigJSON{
		Addr: c.Addr, Conns: c.Conns, Pipeline: c.Pipeline,
		DurationS: c.Duration.Seconds(), Requests: c.Requests, Keys: c.Keys,
		Distribution: c.Distribution, ZipfS: c.ZipfS, ValueSize: c.ValueSize,
		GetRatio: c.getRatio(), Preload: !c.SkipPreload, Seed: c.Seed,
	})
}

// UnmarshalJSON reads what MarshalJSON writes. An absent field takes its
// default, except get_ratio and preload, which mean what their zero values
// say: no gets, no preload.
func (c *KVSConfig) UnmarshalJSON(b []byte) error {
	var j kvsConfigJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*c = KVSConfig{
		Addr: j.Addr, Conns: j.Conns, Pipeline: j.Pipeline,
		Duration: time.Duration(j.DurationS * float64(time.Second)), Requests: j.Requests,
		Keys: j.Keys, Distribution: j.Distribution, ZipfS: j.ZipfS, ValueSize: j.ValueSize,
		GetRatio: j.GetRatio, SkipPreload: !j.Preload, Seed: j.Seed,
	}
	if j.GetRatio == 0 {
		c.GetRatio = NoGets
	}
	return nil
}

// ack returns the wire acknowledgement Ack names.
func (c KVSConfig) ack() (wire.Ack, error) {
	switch c.Ack {
	case "":
		return wire.AckDefault, nil
	case "local":
		return wire.AckLocal, nil
	case "quorum":
		return wire.AckQuorum, nil
	case "durable":
		return wire.AckDurable, nil
	}
	return 0, fmt.Errorf("ack must be local, quorum or durable, got %q", c.Ack)
}
