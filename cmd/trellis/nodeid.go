package main

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// nodeIDFile is the file in the data directory that holds the node id, in
// decimal, so a node keeps its writer id across restarts.
const nodeIDFile = "node-id"

// dataDirNodeID creates dir if needed and returns the node id to run with:
// configured if non-zero, else the one stored in dir, else a new random
// non-zero id, which it stores. A configured id that differs from the
// stored one wins, with a warning; the file is left as it is.
func dataDirNodeID(dir string, configured uint64, log *slog.Logger) (uint64, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return 0, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, nodeIDFile)
	stored, err := readNodeID(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		id := configured
		for id == 0 {
			id = rand.Uint64()
		}
		if err := writeFileAtomic(path, []byte(strconv.FormatUint(id, 10)+"\n")); err != nil {
			return 0, fmt.Errorf("data dir: storing the node id: %w", err)
		}
		return id, nil
	case err != nil:
		return 0, fmt.Errorf("data dir: %w", err)
	case configured != 0 && configured != stored:
		log.Warn("node-id setting differs from the data directory's; using the setting",
			"node_id", configured, "stored", stored, "file", path)
		return configured, nil
	}
	return stored, nil
}

func readNodeID(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("%s does not hold a non-zero decimal node id: %q", path, strings.TrimSpace(string(b)))
	}
	return id, nil
}

// writeFileAtomic replaces path with data: it writes a temporary file in the
// same directory, syncs it, renames it over path and syncs the directory, so
// a crash leaves either the old file or the new one.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(0o644); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
