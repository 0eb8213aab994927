package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestDataDirNodeID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b") // created on demand
	id, err := dataDirNodeID(dir, 0, discardLogger())
	require.NoError(t, err)
	require.NotZero(t, id)
	b, err := os.ReadFile(filepath.Join(dir, nodeIDFile))
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatUint(id, 10)+"\n", string(b))

	again, err := dataDirNodeID(dir, 0, discardLogger())
	require.NoError(t, err)
	assert.Equal(t, id, again, "the stored id is reused")

	// A configured id wins but does not overwrite the stored one.
	got, err := dataDirNodeID(dir, id+1, discardLogger())
	require.NoError(t, err)
	assert.Equal(t, id+1, got)
	again, err = dataDirNodeID(dir, 0, discardLogger())
	require.NoError(t, err)
	assert.Equal(t, id, again)

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary files are left behind")
}

func TestDataDirNodeIDConfiguredIsStored(t *testing.T) {
	dir := t.TempDir()
	id, err := dataDirNodeID(dir, 77, discardLogger())
	require.NoError(t, err)
	assert.Equal(t, uint64(77), id)
	id, err = dataDirNodeID(dir, 0, discardLogger())
	require.NoError(t, err)
	assert.Equal(t, uint64(77), id)
}

func TestDataDirNodeIDRefusesGarbage(t *testing.T) {
	for _, content := range []string{"", "zero\n", "0\n", "-4\n"} {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, nodeIDFile), []byte(content), 0o644))
		_, err := dataDirNodeID(dir, 0, discardLogger())
		require.Error(t, err, "%q", content)
		assert.Contains(t, err.Error(), "node id")
	}
}
