package bolt

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
)

// Connections are kept in memory: a connection record an older version
// stored in the file is stale once its process is gone, and Open drops it;
// connecting writes nothing to the file.
func TestOpenDropsStoredConnections(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "streamer.db")
	s, err := Open(path, Options{})
	require.NoError(t, err)
	require.NoError(t, s.db.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketConns).Put([]byte("old"), []byte(`{"id":"old"}`))
	}))
	require.NoError(t, s.Close())

	s, err = Open(path, Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	require.False(t, s.hasConnRecord(t, "old"), "a stored connection is dropped at open")

	commits := s.gc.commits.Load()
	require.NoError(t, s.PutConnection(t.Context(), connection("new")))
	_, err = s.GetConnection(t.Context(), "new")
	require.NoError(t, err)
	require.NoError(t, s.DeleteConnection(t.Context(), "new"))
	require.Equal(t, commits, s.gc.commits.Load(), "a connection without subscriptions costs no commit")
}

func connection(id string) storage.Connection { return storage.Connection{ID: id, Subject: "alice"} }
