package disk

// Stats are numbers about a DB worth showing in INFO. Sizes are bytes.
type Stats struct {
	// DiskBytes is the space the store's files take: sstables, WAL,
	// manifest and files not yet deleted.
	DiskBytes uint64
	// Tables and TableBytes count the live sstables.
	Tables     int64
	TableBytes int64
	// ReadAmp is the number of sstable layers a read may have to look at
	// (L0 sublevels plus non-empty levels).
	ReadAmp int
	// MemTables and MemTableBytes count the memtables, flushing or not.
	MemTables     int64
	MemTableBytes uint64
	// WALFiles and WALBytes count the live write-ahead log.
	WALFiles int64
	WALBytes uint64
	// WALBytesWritten is the total written to the WAL since Open.
	WALBytesWritten uint64
	// Flushes and Compactions count those completed since Open;
	// CompactionDebt estimates the bytes left to compact.
	Flushes        int64
	Compactions    int64
	CompactionDebt uint64
	// CacheBytes is the block cache's use; CacheHits and CacheMisses count
	// lookups since Open.
	CacheBytes  int64
	CacheHits   int64
	CacheMisses int64
	// WriteStalls counts the times Pebble stalled writes (too many
	// memtables or L0 files) since Open.
	WriteStalls int64
	// Corruptions counts the corrupt files Pebble reported since Open.
	Corruptions int64
}

// Stats returns the DB's current numbers (zero after Close).
func (d *DB) Stats() Stats {
	if !d.enter() {
		return Stats{}
	}
	defer d.exit()
	m := d.pdb.Metrics()
	total := m.Total()
	return Stats{
		DiskBytes:       m.DiskSpaceUsage(),
		Tables:          total.TablesCount,
		TableBytes:      total.TablesSize,
		ReadAmp:         m.ReadAmp(),
		MemTables:       m.MemTable.Count,
		MemTableBytes:   m.MemTable.Size,
		WALFiles:        m.WAL.Files,
		WALBytes:        m.WAL.Size,
		WALBytesWritten: m.WAL.BytesWritten,
		Flushes:         m.Flush.Count,
		Compactions:     m.Compact.Count,
		CompactionDebt:  m.Compact.EstimatedDebt,
		CacheBytes:      m.BlockCache.Size,
		CacheHits:       m.BlockCache.Hits,
		CacheMisses:     m.BlockCache.Misses,
		WriteStalls:     d.stalls.Load(),
		Corruptions:     d.corruptions.Load(),
	}
}
