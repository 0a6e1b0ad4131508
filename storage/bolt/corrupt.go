package bolt

import (
	"errors"
	"fmt"
	"io/fs"

	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// ErrCorrupt means the database file is damaged (truncated or overwritten)
// or is not a Streamer database. bbolt panics on some damaged pages; the
// Store turns those panics into errors wrapping ErrCorrupt, at [Open] and in
// every later call, so a bad page fails one call and never the process.
var ErrCorrupt = errors.New("bolt: the database file is corrupt or not a Streamer database")

// corruptError is the error a damaged file gives: it names the file and
// says what to do.
func corruptError(path string, cause any) error {
	return fmt.Errorf("bolt: %s: %w (%v); stop the server and move it aside (for example mv %s %s.corrupt) to start with an empty store, or restore a backup",
		path, ErrCorrupt, cause, path, path)
}

// isCorruption reports whether err, returned by bbolt.Open, means a damaged
// or foreign file rather than a file that could not be opened (a missing
// directory, a permission) or a held lock. bbolt reports some damage with
// sentinels and some ("file size too small") with plain errors, so anything
// else bbolt.Open returns counts.
func isCorruption(err error) bool {
	var pe *fs.PathError
	switch {
	case errors.Is(err, bberrors.ErrInvalid), errors.Is(err, bberrors.ErrVersionMismatch),
		errors.Is(err, bberrors.ErrChecksum), errors.Is(err, bberrors.ErrInvalidMapping):
		return true
	case errors.Is(err, bberrors.ErrTimeout), errors.As(err, &pe):
		return false
	}
	return true
}

// openDB is bbolt.Open with its panics (bbolt panics on some damaged
// freelist and meta pages) and its corruption errors turned into errors
// wrapping ErrCorrupt.
func openDB(path string, o *bbolt.Options) (db *bbolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, corruptError(path, p)
		}
	}()
	db, err = bbolt.Open(path, 0o600, o)
	if err != nil && isCorruption(err) {
		return nil, corruptError(path, err)
	}
	return db, err
}

// guard runs fn, a bbolt transaction, turning a panic (a damaged page met
// while reading or writing) into an error wrapping ErrCorrupt with the
// stack. bbolt's View and Update roll the transaction back when fn panics,
// so the Store stays usable for the pages that are intact.
func (s *Store) guard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = corruptError(s.db.Path(), p)
		}
	}()
	return fn()
}
