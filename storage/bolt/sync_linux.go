package bolt

import (
	"os"
	"path/filepath"
	"syscall"
)

// fdatasync flushes f's data, and its metadata only when reading the data
// back needs it (a grown size), which an overwrite of existing blocks does
// not.
func fdatasync(f *os.File) error {
	return syscall.Fdatasync(int(f.Fd()))
}

// syncDir makes a segment's creation durable.
func syncDir(base string) error {
	d, err := os.Open(filepath.Dir(base))
	if err != nil {
		return err
	}
	defer d.Close() //nolint:errcheck // read only
	return d.Sync()
}
