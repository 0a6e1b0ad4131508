package dynamodb_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
)

// TestStatusListOperations pins the calls of a status listing: queries of
// the status index's 16 shards (never a scan) and one BatchGetItem of the
// page's requests; an empty result reads no item.
func TestStatusListOperations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tenant, subject := uniquePrincipal(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 3 {
		k := storage.Key{Tenant: tenant, Subject: subject, ID: string(rune('a' + i))}
		require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k, Action: "x", Status: storage.StatusQueued, CreatedAt: now.Add(time.Duration(i) * time.Second)}))
	}
	b.ops.take()

	require.Eventually(t, func() bool {
		page, err := b.store.ListByStatus(ctx, storage.StatusQuery{Status: storage.StatusQueued, Tenant: tenant, Since: now})
		require.NoError(t, err)
		return len(page.Requests) == 3
	}, 30*time.Second, 20*time.Millisecond)
	b.ops.take()
	page, err := b.store.ListByStatus(ctx, storage.StatusQuery{Status: storage.StatusQueued, Tenant: tenant, Since: now})
	require.NoError(t, err)
	require.Len(t, page.Requests, 3)
	ops := b.ops.take()
	require.Equal(t, 1, ops["BatchGetItem"], "one batch read of the page: %v", ops)
	require.GreaterOrEqual(t, ops["Query"], 16, "a query of each shard: %v", ops)
	delete(ops, "Query")
	delete(ops, "BatchGetItem")
	require.Empty(t, ops, "nothing but index queries and a batch read (no Scan)")

	page, err = b.store.ListByStatus(ctx, storage.StatusQuery{Status: storage.StatusCanceled, Tenant: tenant})
	require.NoError(t, err)
	require.Empty(t, page.Requests)
	ops = b.ops.take()
	require.Zero(t, ops["BatchGetItem"], "nothing found: no item read: %v", ops)
	require.Zero(t, ops["Scan"])
}
