// Command trellis runs every role of Trellis, a distributed key-value store
// whose values are lattices, and talks to it.
//
//	trellis up        run a node (today: a storage node) until SIGINT/SIGTERM
//	trellis cli       a redis-cli-like shell over the native protocol
//	trellis bench     benchmarks
//	trellis version   print the version
//
// Settings come from flags, TRELLIS_* environment variables, a config file
// and defaults, in that order of precedence; docs/configuration.md lists
// them. Exit status: 0 success, 1 runtime failure, 2 usage or configuration
// error.
//
// # Layout
//
// config.go holds the one table of settings (settings) from which every
// command's flags, environment bindings and viper defaults are registered and
// docs/configuration.md is generated (configdoc.go; TestConfigDoc keeps the
// file in step). up.go runs a node: it builds a kvs.Store and kvs.Server from
// the settings, prints the banner once the listeners are bound, and stops
// when SIGINT or SIGTERM cancels its context. cli.go is the shell, render.go
// its redis-cli-style output. The only package-level values are the
// settings table and the command list, which never change, and the
// link-time version.
package main
