package benchmarks

import "golang.org/x/sys/unix"

// IsTerminal reports whether fd is a terminal (progress bars are drawn only
// on one).
func IsTerminal(fd uintptr) bool {
	_, err := unix.IoctlGetTermios(int(fd), unix.TCGETS)
	return err == nil
}
