package dynamodb_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

func countedConn(tenant, subject, id string, now time.Time) storage.Connection {
	return storage.Connection{
		ID: id, Tenant: tenant, Subject: subject, Principal: []byte(`{"tenant":"acme","sub":"alice"}`),
		Endpoint: "https://abc.execute-api.eu-west-1.amazonaws.com/dev", ConnectedAt: now, ExpiresAt: now.Add(2 * time.Hour),
	}
}

// TestConnCapLostDisconnect: a connection item that vanished without
// DeleteConnection (a lost $disconnect whose item TTL then deleted, or any
// other loss of the decrement) stops counting at the next refusal: the
// recount finds it gone, fixes the counter and the connection is admitted.
// A refusal within RecountInterval of that recount is answered from the
// counter, without a recount.
func TestConnCapLostDisconnect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tenant, subject := uniquePrincipal(t)
	now := time.Now()
	id := func(i int) string { return fmt.Sprintf("%s-conn-%d", tenant, i) }
	for i := range 3 {
		require.NoError(t, b.store.PutConnectionCounted(ctx, countedConn(tenant, subject, id(i), now), 3))
	}
	_, err := b.client.DeleteItem(ctx, &ddb.DeleteItemInput{
		TableName: aws.String(shared.table),
		Key: map[string]types.AttributeValue{
			dynamodb.AttrPK: &types.AttributeValueMemberS{Value: "CONN#" + id(1)},
			dynamodb.AttrSK: &types.AttributeValueMemberS{Value: "CONN"},
		},
	})
	require.NoError(t, err)
	n, err := b.store.OpenConnections(ctx, tenant, subject)
	require.NoError(t, err)
	require.Equal(t, 3, n, "the counter has not noticed yet")

	b.ops.take()
	require.NoError(t, b.store.PutConnectionCounted(ctx, countedConn(tenant, subject, id(3), now), 3), "the recount frees the lost connection's place")
	ops := b.ops.take()
	require.Equal(t, 1, ops["Query"], "one recount: %v", ops)
	n, err = b.store.OpenConnections(ctx, tenant, subject)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	// Deleting the lost connection now frees nothing: its member item went
	// with the recount.
	require.NoError(t, b.store.DeleteConnection(ctx, id(1)))
	n, err = b.store.OpenConnections(ctx, tenant, subject)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	b.ops.take()
	require.ErrorIs(t, b.store.PutConnectionCounted(ctx, countedConn(tenant, subject, id(4), now), 3), storage.ErrTooManyConnections)
	ops = b.ops.take()
	require.Zero(t, ops["Query"], "no second recount within RecountInterval: %v", ops)
	require.Equal(t, 1, ops["TransactWriteItems"], "one refused transaction: %v", ops)

	// Live connections are still counted after all that: each delete frees
	// one place.
	for _, i := range []int{0, 2, 3} {
		require.NoError(t, b.store.DeleteConnection(ctx, id(i)))
	}
	n, err = b.store.OpenConnections(ctx, tenant, subject)
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestConnCapCost counts the calls of a counted connect, a disconnect and
// a refusal with a recount, from which BENCHMARKS.md computes their cost
// (DynamoDB Local does not report a transaction's capacity as DynamoDB
// bills it, 2 units per item).
func TestConnCapCost(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tenant, subject := uniquePrincipal(t)
	now := time.Now()

	b.ops.take()
	require.NoError(t, b.store.PutConnectionCounted(ctx, countedConn(tenant, subject, tenant+"-a", now), 2))
	require.Equal(t, map[string]int{"TransactWriteItems": 1}, b.ops.take(), "a counted connect is one transaction (of three items)")

	require.NoError(t, b.store.DeleteConnection(ctx, tenant+"-a"))
	require.Equal(t, map[string]int{"Query": 1, "TransactWriteItems": 1}, b.ops.take(),
		"a disconnect queries the connection's partition, then one transaction (of three items)")

	for _, id := range []string{"-b", "-c"} {
		require.NoError(t, b.store.PutConnectionCounted(ctx, countedConn(tenant, subject, tenant+id, now), 2))
	}
	b.ops.take()
	require.ErrorIs(t, b.store.PutConnectionCounted(ctx, countedConn(tenant, subject, tenant+"-d", now), 2), storage.ErrTooManyConnections)
	require.Equal(t, map[string]int{"TransactWriteItems": 2, "Query": 1, "BatchGetItem": 1}, b.ops.take(),
		"a refusal with a recount: the refused transaction, the counter partition's Query, the connections' BatchGetItem, the counter's fix")
	require.ErrorIs(t, b.store.PutConnectionCounted(ctx, countedConn(tenant, subject, tenant+"-d", now), 2), storage.ErrTooManyConnections)
	require.Equal(t, map[string]int{"TransactWriteItems": 1}, b.ops.take(), "a refusal within RecountInterval: the refused transaction")
}
