package bolt_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
)

// filled writes a store with some requests and events to a new file and
// returns its path, closed.
func filled(t *testing.T) string {
	t.Helper()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "streamer.db")
	s, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	now := time.Now().UTC()
	for i := range 200 {
		k := storage.Key{Tenant: "t", Subject: "alice", ID: "r-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String()}
		require.NoError(t, s.CreateRequest(ctx, storage.Request{
			Key: k, Action: "report", Payload: json.RawMessage(`{"pad":"` + strings.Repeat("p", 500) + `"}`),
			Status: storage.StatusQueued, CreatedAt: now,
		}))
	}
	require.NoError(t, s.Close())
	return path
}

// TestOpenCorrupt: a truncated, overwritten or foreign file is refused by
// Open with an error that wraps ErrCorrupt, names the file and says what to
// do; it never panics.
func TestOpenCorrupt(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		spoil func(t *testing.T, path string)
	}{
		{"truncated to a page", func(t *testing.T, path string) { require.NoError(t, os.Truncate(path, 4096)) }},
		{"truncated to half", func(t *testing.T, path string) {
			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.NoError(t, os.Truncate(path, fi.Size()/2))
		}},
		{"truncated to 100 bytes", func(t *testing.T, path string) { require.NoError(t, os.Truncate(path, 100)) }},
		{"meta pages zeroed", func(t *testing.T, path string) { overwrite(t, path, 0, 8192, 0) }},
		{"freelist and data overwritten", func(t *testing.T, path string) { overwrite(t, path, 8192, 1<<16, 0xff) }},
		{"data pages overwritten", func(t *testing.T, path string) { overwrite(t, path, 3*4096, 1<<15, 0x5a) }},
		{"text file", func(t *testing.T, path string) {
			require.NoError(t, os.WriteFile(path, []byte(strings.Repeat("not a database\n", 1000)), 0o600))
		}},
		{"foreign bbolt file", func(t *testing.T, path string) {
			require.NoError(t, os.Remove(path))
			db, err := bbolt.Open(path, 0o600, nil)
			require.NoError(t, err)
			require.NoError(t, db.Update(func(tx *bbolt.Tx) error {
				b, err := tx.CreateBucket([]byte("widgets"))
				if err != nil {
					return err
				}
				return b.Put([]byte("k"), []byte("v"))
			}))
			require.NoError(t, db.Close())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filled(t)
			tc.spoil(t, path)
			var s *bolt.Store
			var err error
			require.NotPanics(t, func() { s, err = bolt.Open(path, bolt.Options{}) })
			if err == nil {
				// Some damage is only found by reading: every call then
				// fails with an error, never a panic.
				defer s.Close() //nolint:errcheck // a corrupt file's close may fail
				require.NotPanics(t, func() {
					_, err = s.ListUnfinished(t.Context())
				})
			}
			require.Error(t, err)
			t.Log(strings.SplitN(err.Error(), "\n", 2)[0])
			require.ErrorIs(t, err, bolt.ErrCorrupt)
			require.Contains(t, err.Error(), path)
			require.Contains(t, err.Error(), "move it aside")
		})
	}
}

func overwrite(t *testing.T, path string, off, n int64, b byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte(strings.Repeat(string([]byte{b}), int(n))), off)
	require.NoError(t, err)
	require.NoError(t, f.Close())
}
