// Package fntest provides an in-memory fn.Host for testing function handlers
// natively with fn.Invoke.
package fntest
