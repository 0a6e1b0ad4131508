package storage_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
)

func TestListQueryPageSize(t *testing.T) {
	t.Parallel()
	for limit, want := range map[int]int{
		-5: storage.DefaultListLimit, 0: storage.DefaultListLimit, 1: 1, 37: 37,
		storage.MaxListLimit: storage.MaxListLimit, storage.MaxListLimit + 1: storage.MaxListLimit, 1 << 40: storage.MaxListLimit,
	} {
		require.Equal(t, want, storage.ListQuery{Limit: limit}.PageSize(), "limit %d", limit)
	}
}

func TestListQueryMatches(t *testing.T) {
	t.Parallel()
	require.True(t, storage.ListQuery{}.Matches(storage.StatusFailed), "no filter keeps all")
	q := storage.ListQuery{Statuses: []storage.Status{storage.StatusQueued, storage.StatusRunning}}
	require.True(t, q.Matches(storage.StatusRunning))
	require.False(t, q.Matches(storage.StatusCanceling))
}

func TestListPos(t *testing.T) {
	t.Parallel()
	at := time.UnixMilli(1_700_000_000_123)
	p := storage.PosOf(storage.Request{Key: storage.Key{Tenant: "t", Subject: "s", ID: "a:b|c%"}, CreatedAt: at.Add(999 * time.Microsecond)})
	require.Equal(t, storage.ListPos{CreatedMS: 1_700_000_000_123, ID: "a:b|c%"}, p, "milliseconds")
	for _, pos := range []storage.ListPos{p, {CreatedMS: -62135596800000, ID: ""}, {CreatedMS: 0, ID: "x"}} {
		got, err := storage.ParseListCursor(pos.Cursor())
		require.NoError(t, err)
		require.Equal(t, pos, got)
	}

	// Newest first, then by ID, descending.
	newer := storage.ListPos{CreatedMS: 2, ID: "a"}
	older := storage.ListPos{CreatedMS: 1, ID: "z"}
	require.Negative(t, newer.Compare(older))
	require.Positive(t, older.Compare(newer))
	require.Zero(t, newer.Compare(newer))
	require.Negative(t, storage.ListPos{CreatedMS: 1, ID: "b"}.Compare(storage.ListPos{CreatedMS: 1, ID: "a"}))

	for _, bad := range []string{"", "%%%", "bm8gY29sb24", "MTJ4OmlkCg"} {
		_, err := storage.ParseListCursor(bad)
		require.ErrorIs(t, err, storage.ErrBadCursor, "%q", bad)
	}
}
