package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// configDoc returns docs/configuration.md, generated from the settings
// table. TestConfigDoc fails when the file differs; `go test ./cmd/trellis
// -run TestConfigDoc -update` rewrites it.
func configDoc() []byte {
	var b strings.Builder
	b.WriteString(`# Configuration

<!-- Generated from the settings table in cmd/trellis/config.go by
     go test ./cmd/trellis -run TestConfigDoc -update
     Do not edit by hand. -->

Every ` + "`trellis`" + ` command reads its settings from four places. Each one overrides
the ones after it:

1. command-line flags (` + "`--shards 32`" + `);
2. environment variables: ` + "`" + envPrefix + "`" + ` followed by the key in upper case, with ` + "`-`" + `
   and ` + "`.`" + ` replaced by ` + "`_`" + ` (` + "`" + envName("resp-addr") + "=127.0.0.1:6379`" + `); an empty
   variable counts as unset;
3. a config file given with ` + "`--config FILE`" + ` (or ` + "`" + envName(configKey) + "`" + `), in YAML,
   TOML or JSON according to its extension (` + "`.yaml`" + `/` + "`.yml`" + `, ` + "`.toml`" + `, ` + "`.json`" + `),
   holding keys of the table below at the top level. A key the table does not
   know is an error; a key of another command is ignored, so one file can serve
   every command;
4. the defaults below, which are those of the ` + "`kvs`" + ` package: ` + "`trellis up`" + ` with no
   configuration runs the same node as a zero ` + "`kvs.StoreConfig`" + ` and ` + "`kvs.ServerConfig`" + `.

An invalid value (a negative shard count, a duration without a unit, an
unknown log level, an unknown key in the config file) stops the command before
it does anything, with a message that names the key and where its value came
from, and exit status 2. Durations take a unit: ` + "`90s`" + `, ` + "`10m`" + `, ` + "`1h30m`" + `.

## Keys

| Key and flag | Environment variable | Default | Commands | Description |
|---|---|---|---|---|
`)
	for _, s := range settings {
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s | %s |\n",
			s.name, envName(s.name), docDefault(s), strings.Join(s.cmds, ", "),
			strings.ReplaceAll(s.usage, "|", `\|`))
	}
	b.WriteString(`
## Example config file

Every key that a config file may hold, with its default value:

` + "```yaml\n")
	for _, s := range settings {
		if s.noFile {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\n", s.name, yamlValue(s.def))
	}
	b.WriteString("```\n" + `
## HTTP endpoints

With ` + "`--http-addr`" + ` set, ` + "`trellis up`" + ` serves:

| Path | Answer |
|---|---|
| ` + "`/healthz`" + ` | 200 while the process runs |
| ` + "`/readyz`" + ` | 200 once every listener accepts connections; 503 before, and while shutting down |
| ` + "`/debug/pprof/`" + ` | the Go runtime profiles (` + "`go tool pprof http://ADDR/debug/pprof/profile`" + `) |

## Exit status

| Status | Meaning |
|---|---|
| 0 | success; ` + "`trellis up`" + ` stopped by SIGINT or SIGTERM |
| 1 | a runtime failure: a listener could not start, the node could not be reached, the server answered ` + "`cli`" + ` with an error |
| 2 | a usage error: an unknown command or flag, an invalid setting |
`)
	return []byte(b.String())
}

// docDefault renders a setting's default for the table.
func docDefault(s setting) string {
	switch d := s.def.(type) {
	case string:
		return "`" + strconv.Quote(d) + "`"
	case time.Duration:
		return "`" + shortDuration(d) + "`"
	case int:
		if s.unit == "bytes" && d > 0 {
			return fmt.Sprintf("`%d` (%s)", d, sizeString(d))
		}
	}
	return fmt.Sprintf("`%v`", s.def)
}

// yamlValue renders a default as a YAML scalar.
func yamlValue(v any) string {
	switch d := v.(type) {
	case string:
		return strconv.Quote(d)
	case time.Duration:
		return shortDuration(d)
	}
	return fmt.Sprint(v)
}

// shortDuration formats d without zero trailing units: 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// sizeString renders a byte count with a binary unit: 16 MiB.
func sizeString(n int) string {
	for _, u := range []struct {
		name string
		size int
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
