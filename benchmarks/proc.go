package benchmarks

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNoPID is wrapped by ListenerPID's error when no visible process holds
// the listener (it is remote, in another network namespace, or owned by a
// user whose file descriptors this process may not read).
var ErrNoPID = errors.New("benchmarks: listener's process not found")

// ProcessRSS returns the resident set size of process pid in bytes (VmRSS
// in /proc/<pid>/status). Linux only.
func ProcessRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("benchmarks: rss of pid %d: %w", pid, err)
	}
	return parseVmRSS(b)
}

// parseVmRSS reads the "VmRSS:  1234 kB" line of a /proc/<pid>/status.
func parseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("benchmarks: malformed VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("benchmarks: malformed VmRSS line %q: %w", sc.Text(), err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("benchmarks: no VmRSS line (a kernel thread or a zombie?)")
}

// ListenerPID returns the pid of a local process listening on addr's TCP
// port: it finds the listening socket's inode in /proc/net/tcp{,6}, then the
// process holding a descriptor to it in /proc/*/fd. Linux only; errors wrap
// ErrNoPID when the port is not listening or its owner is not visible.
func ListenerPID(addr string) (int, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("benchmarks: %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("benchmarks: port of %q: %w", addr, err)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // no IPv6, say
		}
		for _, ino := range listeningInodes(b, uint16(port)) {
			inodes["socket:["+ino+"]"] = true
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("%w: nothing listens on port %d here", ErrNoPID, port)
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && inodes[link] {
			pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
			if err == nil {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("%w: port %d listens but no readable /proc/*/fd holds it (try running as its user, or pass the pid)", ErrNoPID, port)
}

// listeningInodes returns the inodes of the sockets in LISTEN state (0A) on
// port in a /proc/net/tcp table.
func listeningInodes(table []byte, port uint16) []string {
	var out []string
	lines := strings.Split(string(table), "\n")
	for _, line := range lines[1:] { // the first line is the header
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		_, p, ok := strings.Cut(f[1], ":")
		if !ok {
			continue
		}
		if v, err := strconv.ParseUint(p, 16, 16); err == nil && uint16(v) == port && f[9] != "0" {
			out = append(out, f[9])
		}
	}
	return out
}
