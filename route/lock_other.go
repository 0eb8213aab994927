//go:build !unix

package route

import (
	"os"
	"path/filepath"
)

// lockDir opens dir/LOCK; without flock it does not exclude other nodes.
func lockDir(dir string) (*os.File, error) {
	return os.OpenFile(filepath.Join(dir, "LOCK"), os.O_CREATE|os.O_RDWR, 0o600)
}
