package bolt

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data, and its metadata only when reading the data
// back needs it (a grown size), which an overwrite of existing blocks does
// not.
func fdatasync(f *os.File) error {
	return syscall.Fdatasync(int(f.Fd()))
}
