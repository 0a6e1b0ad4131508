//go:build !linux

package bolt

import (
	"os"
	"path/filepath"
)

// fdatasync is f.Sync where there is no fdatasync.
func fdatasync(f *os.File) error { return f.Sync() }

// syncDir makes a segment's creation durable where a directory can be
// synced; some systems (Windows) cannot, and then it does nothing.
func syncDir(base string) error {
	d, err := os.Open(filepath.Dir(base))
	if err != nil {
		return nil //nolint:nilerr // best effort where directories cannot be opened
	}
	defer d.Close() //nolint:errcheck // read only
	_ = d.Sync()
	return nil
}
