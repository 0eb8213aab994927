package main

import (
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/trellisdb/trellis/disk"
	"github.com/trellisdb/trellis/kvs"
)

// storeDisk adapts the Pebble tier to the store's DiskReader interface.
// Write is called by the store's flusher only, so the conversion buffer needs
// no lock.
type storeDisk struct {
	db      *disk.DB
	changes []disk.Change
}

func (d *storeDisk) Write(changes []kvs.Change, sync bool) error {
	d.changes = d.changes[:0]
	for _, c := range changes {
		d.changes = append(d.changes, disk.Change{Key: c.Key, Cell: c.Cell})
	}
	err := d.db.Write(d.changes, sync)
	clear(d.changes) // don't pin the flusher's buffer
	return err
}

func (d *storeDisk) Scan(fn func(key, cell []byte) error) error { return d.db.Scan(fn) }

func (d *storeDisk) ReadCell(key, dst []byte) ([]byte, bool, error) { return d.db.ReadCell(key, dst) }

var _ kvs.DiskReader = (*storeDisk)(nil)

// openDisk opens the storage node's disk tier under dataDir.
func openDisk(dataDir string, log *slog.Logger) (*storeDisk, error) {
	dir := filepath.Join(dataDir, "kvs")
	db, err := disk.Open(dir, disk.Options{Logger: log.With("component", "disk")})
	if err != nil {
		return nil, fmt.Errorf("opening the disk tier in %s: %w", dir, err)
	}
	return &storeDisk{db: db}, nil
}
