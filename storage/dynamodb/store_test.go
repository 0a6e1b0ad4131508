package dynamodb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/storage/storagetest"
)

// endpointEnv names the DynamoDB endpoint the tests use (DynamoDB Local).
const endpointEnv = "AWS_ENDPOINT_URL_DYNAMODB"

// shared is the table every test of this binary run uses, created by
// TestMain when endpointEnv is set.
var shared struct {
	cfg   aws.Config
	table string
	err   error
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv(endpointEnv) == "" {
		return m.Run()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	shared.cfg, shared.err = config.LoadDefaultConfig(ctx)
	if shared.err != nil {
		return m.Run()
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	shared.table = "streamer-test-" + hex.EncodeToString(b[:])
	client := newClient(shared.cfg)
	if shared.err = dynamodb.CreateTable(ctx, client, shared.table); shared.err != nil {
		return m.Run()
	}
	code := m.Run()
	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := client.DeleteTable(ctx, &ddb.DeleteTableInput{TableName: aws.String(shared.table)}); err != nil {
		fmt.Fprintf(os.Stderr, "deleting table %s: %v\n", shared.table, err)
	}
	return code
}

// newClient returns a DynamoDB client for cfg. DynamoDB Local does not
// send the response checksums the SDK validates by default.
func newClient(cfg aws.Config, optFns ...func(*ddb.Options)) *ddb.Client {
	return ddb.NewFromConfig(cfg, append([]func(*ddb.Options){func(o *ddb.Options) {
		o.DisableValidateResponseChecksum = true
	}}, optFns...)...)
}

// requireTable skips the test when no DynamoDB endpoint is configured, and
// fails it instead in CI, where missing infrastructure is an error.
func requireTable(t testing.TB) {
	t.Helper()
	if os.Getenv(endpointEnv) == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: DynamoDB Local is required in CI", endpointEnv)
		}
		t.Skipf("%s is not set: start DynamoDB Local to run this test", endpointEnv)
	}
	require.NoError(t, shared.err, "setting up table %s", shared.table)
}

type testBundle struct {
	client *ddb.Client
	store  *dynamodb.Store
	ops    *opCounter
}

// setup returns a store on the shared table whose client counts the
// operations it calls.
func setup(t testing.TB) *testBundle {
	t.Helper()
	requireTable(t)
	ops := &opCounter{}
	client := newClient(shared.cfg, func(o *ddb.Options) {
		o.APIOptions = append(o.APIOptions, ops.register)
	})
	s, err := dynamodb.New(dynamodb.Config{Client: client, Table: shared.table})
	require.NoError(t, err)
	return &testBundle{client: client, store: s, ops: ops}
}

// opCounter counts SDK operations (not HTTP attempts) by name.
type opCounter struct {
	mu  sync.Mutex
	ops map[string]int
}

func (c *opCounter) register(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("countOperations",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			c.mu.Lock()
			if c.ops == nil {
				c.ops = map[string]int{}
			}
			c.ops[awsmiddleware.GetOperationName(ctx)]++
			c.mu.Unlock()
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// take returns the counts since the last take and resets them.
func (c *opCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ops
	c.ops = nil
	return out
}

func uniqueKey(t testing.TB) storage.Key {
	var b [8]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return storage.Key{Tenant: "t", Subject: "s", ID: t.Name() + "-" + hex.EncodeToString(b[:])}
}

func TestConformance(t *testing.T) {
	t.Parallel()
	b := setup(t)
	storagetest.Run(t, func(t *testing.T) storage.Store { return b.store })
}

func TestNew(t *testing.T) {
	t.Parallel()
	client := ddb.New(ddb.Options{Region: "us-east-1"})
	for _, tc := range []struct {
		name string
		cfg  dynamodb.Config
		want string
	}{
		{"no client", dynamodb.Config{Table: "streamer"}, "dynamodb: Config.Client is required"},
		{"no table", dynamodb.Config{Client: client}, "dynamodb: Config.Table is required"},
		{"short table", dynamodb.Config{Client: client, Table: "ab"}, "Config.Table"},
		{"bad table", dynamodb.Config{Client: client, Table: "has space"}, "Config.Table"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := dynamodb.New(tc.cfg)
			require.Error(t, err)
			require.Nil(t, s)
			require.Contains(t, err.Error(), tc.want)
		})
	}
	s, err := dynamodb.New(dynamodb.Config{Client: client, Table: "streamer-prod.v1"})
	require.NoError(t, err)
	require.Equal(t, "streamer-prod.v1", s.Table())
}

func TestCreateTable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()

	// The table exists: creating it again is fine.
	require.NoError(t, dynamodb.CreateTable(ctx, b.client, shared.table))

	out, err := b.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(shared.table)})
	require.NoError(t, err)
	tbl := out.Table
	require.Equal(t, types.TableStatusActive, tbl.TableStatus)
	want := dynamodb.Schema(shared.table)
	require.ElementsMatch(t, want.KeySchema, tbl.KeySchema)
	require.ElementsMatch(t, want.AttributeDefinitions, tbl.AttributeDefinitions)
	require.Len(t, tbl.GlobalSecondaryIndexes, len(want.GlobalSecondaryIndexes))
	for _, w := range want.GlobalSecondaryIndexes {
		var gsi *types.GlobalSecondaryIndexDescription
		for i := range tbl.GlobalSecondaryIndexes {
			if aws.ToString(tbl.GlobalSecondaryIndexes[i].IndexName) == aws.ToString(w.IndexName) {
				gsi = &tbl.GlobalSecondaryIndexes[i]
			}
		}
		require.NotNil(t, gsi, "index %s", aws.ToString(w.IndexName))
		require.Equal(t, w.KeySchema, gsi.KeySchema)
		require.Equal(t, w.Projection.ProjectionType, gsi.Projection.ProjectionType)
		require.ElementsMatch(t, w.Projection.NonKeyAttributes, gsi.Projection.NonKeyAttributes)
	}
	require.NotNil(t, tbl.StreamSpecification)
	require.True(t, aws.ToBool(tbl.StreamSpecification.StreamEnabled))
	require.Equal(t, types.StreamViewTypeNewAndOldImages, tbl.StreamSpecification.StreamViewType)
	require.NotEmpty(t, aws.ToString(tbl.LatestStreamArn))
	require.NotNil(t, tbl.BillingModeSummary)
	require.Equal(t, types.BillingModePayPerRequest, tbl.BillingModeSummary.BillingMode)

	ttl, err := b.client.DescribeTimeToLive(ctx, &ddb.DescribeTimeToLiveInput{TableName: aws.String(shared.table)})
	require.NoError(t, err)
	require.NotNil(t, ttl.TimeToLiveDescription)
	require.Equal(t, types.TimeToLiveStatusEnabled, ttl.TimeToLiveDescription.TimeToLiveStatus)
	require.Equal(t, dynamodb.AttrTTL, aws.ToString(ttl.TimeToLiveDescription.AttributeName))
}

// A table made before the status index existed gets it from CreateTable,
// so the reaper's ListDue works on an old --aws-local data dir.
func TestCreateTableAddsTheStatusIndex(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	name := fmt.Sprintf("old-%d", time.Now().UnixNano())
	old := dynamodb.Schema(name)
	old.GlobalSecondaryIndexes = nil
	old.AttributeDefinitions = old.AttributeDefinitions[:2] // pk and sk
	_, err := b.client.CreateTable(ctx, old)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = b.client.DeleteTable(context.Background(), &ddb.DeleteTableInput{TableName: aws.String(name)})
	})

	require.NoError(t, dynamodb.CreateTable(ctx, b.client, name))
	out, err := b.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(name)})
	require.NoError(t, err)
	require.Len(t, out.Table.GlobalSecondaryIndexes, 2, "the status and principal indexes")
	names := map[string]types.IndexStatus{}
	for _, g := range out.Table.GlobalSecondaryIndexes {
		names[aws.ToString(g.IndexName)] = g.IndexStatus
	}
	require.Equal(t, map[string]types.IndexStatus{
		dynamodb.IndexStatus: types.IndexStatusActive, dynamodb.IndexPrincipal: types.IndexStatusActive,
	}, names)

	store, err := dynamodb.New(dynamodb.Config{Client: b.client, Table: name})
	require.NoError(t, err)
	_, err = store.ListDue(ctx, time.Now(), 0)
	require.NoError(t, err, "the index answers")
	_, err = store.ListRequests(ctx, "t", "s", storage.ListQuery{})
	require.NoError(t, err, "the principal index answers")

	// A table with the status index only gets the principal index.
	name2 := name + "-b"
	old = dynamodb.Schema(name2)
	old.GlobalSecondaryIndexes = old.GlobalSecondaryIndexes[:1]
	old.AttributeDefinitions = old.AttributeDefinitions[:4]
	_, err = b.client.CreateTable(ctx, old)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = b.client.DeleteTable(context.Background(), &ddb.DeleteTableInput{TableName: aws.String(name2)})
	})
	require.NoError(t, dynamodb.CreateTable(ctx, b.client, name2))
	out, err = b.client.DescribeTable(ctx, &ddb.DescribeTableInput{TableName: aws.String(name2)})
	require.NoError(t, err)
	require.Len(t, out.Table.GlobalSecondaryIndexes, 2)
}

func TestCreateTableInvalid(t *testing.T) {
	t.Parallel()
	client := ddb.New(ddb.Options{Region: "us-east-1"})
	require.Error(t, dynamodb.CreateTable(t.Context(), nil, "streamer"))
	require.Error(t, dynamodb.CreateTable(t.Context(), client, "x"))
}

func TestSchema(t *testing.T) {
	t.Parallel()
	s := dynamodb.Schema("tbl")
	require.Equal(t, "tbl", aws.ToString(s.TableName))
	require.Equal(t, types.BillingModePayPerRequest, s.BillingMode)
	require.Equal(t, dynamodb.StreamViewType, s.StreamSpecification.StreamViewType)
	require.Len(t, s.GlobalSecondaryIndexes, 2, "the status and principal indexes")
	gsi := s.GlobalSecondaryIndexes[0]
	require.Equal(t, dynamodb.IndexStatus, aws.ToString(gsi.IndexName))
	require.Equal(t, []types.KeySchemaElement{
		{AttributeName: aws.String(dynamodb.AttrStatusShard), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String(dynamodb.AttrStatusTime), KeyType: types.KeyTypeRange},
	}, gsi.KeySchema)
	require.NotEqual(t, types.ProjectionTypeAll, gsi.Projection.ProjectionType, "index writes are billed by projected size")
	// Each call is a fresh value.
	s.TableName = aws.String("changed")
	require.Equal(t, "tbl", aws.ToString(dynamodb.Schema("tbl").TableName))
}

// TestOperations pins the SDK calls of the hot paths: AppendEvent is one
// write and never reads, whatever its outcome.
func TestOperations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	k := uniqueKey(t)
	ev := func(seq int64) storage.Event {
		return storage.Event{Seq: seq, Type: "progress", Percentage: 1, Data: []byte(`{}`), CreatedAt: now}
	}

	require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued}))
	require.Equal(t, map[string]int{"PutItem": 1}, b.ops.take())

	_, err := b.store.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, map[string]int{"UpdateItem": 1}, b.ops.take(), "claim")

	oneWrite := map[string]int{"TransactWriteItems": 1}
	require.NoError(t, b.store.AppendEvent(ctx, k, 1, ev(1), 0))
	require.Equal(t, oneWrite, b.ops.take(), "append")

	require.ErrorIs(t, b.store.AppendEvent(ctx, k, 1, ev(1), 0), storage.ErrConflict)
	require.Equal(t, oneWrite, b.ops.take(), "append to a taken seq")

	require.ErrorIs(t, b.store.AppendEvent(ctx, k, 2, ev(2), 0), storage.ErrConflict)
	require.Equal(t, oneWrite, b.ops.take(), "append of a superseded attempt")

	require.ErrorIs(t, b.store.AppendEvent(ctx, uniqueKey(t), 0, ev(1), 0), storage.ErrNotFound)
	require.Equal(t, oneWrite, b.ops.take(), "append to an unknown request")

	// A takeover is a second write: the first, refused, claims only a
	// queued request (a takeover must count a stall, a queued claim not).
	// A canceling request stays canceling.
	_, err = b.store.CancelRequest(ctx, k, now)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"UpdateItem": 1}, b.ops.take(), "cancel")
	r, err := b.store.ClaimRequest(ctx, k, storage.Claim{Now: now.Add(2 * time.Minute), LeaseUntil: now.Add(3 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceling, r.Status)
	require.Equal(t, 1, r.Stalls)
	require.Equal(t, map[string]int{"UpdateItem": 2}, b.ops.take(), "takeover of a canceling request")

	// With Claim.Stalled (the reaper's), a takeover is one write.
	r, err = b.store.ClaimRequest(ctx, k, storage.Claim{Now: now.Add(4 * time.Minute), LeaseUntil: now.Add(5 * time.Minute), Stalled: true})
	require.NoError(t, err)
	require.Equal(t, 3, r.Attempt)
	require.Equal(t, 2, r.Stalls)
	require.Equal(t, map[string]int{"UpdateItem": 1}, b.ops.take(), "stalled takeover")

	_, err = b.store.ClaimRequest(ctx, k, storage.Claim{Now: now.Add(4 * time.Minute), LeaseUntil: now.Add(5 * time.Minute)})
	require.ErrorIs(t, err, storage.ErrConflict)
	require.Equal(t, map[string]int{"UpdateItem": 1}, b.ops.take(), "a rejected claim needs no read")

	require.ErrorIs(t, b.store.FinishRequest(ctx, k, storage.Finish{
		Attempt: 2, Event: storage.Event{Seq: 2, Type: "error"}, Status: storage.StatusCanceled, Now: now,
	}), storage.ErrConflict)
	require.Equal(t, oneWrite, b.ops.take(), "finish of a superseded attempt")
	require.NoError(t, b.store.FinishRequest(ctx, k, storage.Finish{
		Attempt: 3, Event: storage.Event{Seq: 2, Type: "error"}, Status: storage.StatusCanceled, Now: now,
	}))
	require.Equal(t, oneWrite, b.ops.take(), "finish")

	got, err := b.store.CancelRequest(ctx, k, now)
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceled, got.Status)
	require.Equal(t, map[string]int{"UpdateItem": 1}, b.ops.take(), "cancel of a finished request needs no read")

	_, err = b.store.LastEvent(ctx, k)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"Query": 1}, b.ops.take(), "last event")

	// ListDue: one query of each live status and shard, and a batch read
	// of what they found (the shared table holds other tests' requests:
	// at most one BatchGetItem of 100 with this limit).
	due, err := b.store.ListDue(ctx, now.Add(time.Hour), 100)
	require.NoError(t, err)
	require.LessOrEqual(t, len(due), 100)
	ops := b.ops.take()
	require.Equal(t, 3*dynamodb.StatusShards, ops["Query"], "list due: %v", ops)
	require.LessOrEqual(t, ops["BatchGetItem"], 1, "list due: %v", ops)
	require.Len(t, ops, 1+ops["BatchGetItem"], "list due: only Query and BatchGetItem: %v", ops)
}

// TestItems checks what is stored: the TTL attribute in epoch seconds and
// binary attributes.
func TestItems(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	k := uniqueKey(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	r := storage.Request{
		Key:       k,
		Status:    storage.StatusQueued,
		Payload:   []byte(`{"a": 1}`),
		ExpiresAt: exp,
	}
	require.NoError(t, b.store.CreateRequest(ctx, r))
	require.NoError(t, b.store.AppendEvent(ctx, k, 0, storage.Event{Seq: 7, Type: "progress", ExpiresAt: exp}, 0))
	conn := t.Name() + "-conn"
	require.NoError(t, b.store.Subscribe(ctx, k, conn, exp))

	ttl := exp.Unix()
	if exp.Nanosecond() > 0 {
		ttl++
	}
	for _, key := range [][2]string{
		{"REQ#" + k.String(), "REQ"},
		{"REQ#" + k.String(), "EV#00000000000000000007"},
		{"REQ#" + k.String(), "SUB#" + conn},
		{"CONN#" + conn, "SUB#" + k.String()},
	} {
		it := rawItem(t, b, key[0], key[1])
		require.NotNil(t, it, key[1])
		n, ok := it[dynamodb.AttrTTL].(*types.AttributeValueMemberN)
		require.True(t, ok, "%s has a numeric %s", key[1], dynamodb.AttrTTL)
		assert.Equal(t, strconv.FormatInt(ttl, 10), n.Value, key[1])
		if key[1] == "REQ" {
			p, ok := it["payload"].(*types.AttributeValueMemberB)
			require.True(t, ok, "the payload is binary")
			assert.Equal(t, []byte(r.Payload), p.Value)
		}
	}

	// Subscribing again replaces the expiry on both items: a zero one
	// leaves no TTL.
	require.NoError(t, b.store.Subscribe(ctx, k, conn, time.Time{}))
	for _, key := range [][2]string{
		{"REQ#" + k.String(), "SUB#" + conn},
		{"CONN#" + conn, "SUB#" + k.String()},
	} {
		it := rawItem(t, b, key[0], key[1])
		require.NotNil(t, it, key[1])
		assert.NotContains(t, it, dynamodb.AttrTTL, key[1])
	}
}

// rawItem reads one item of the shared table; nil when it does not exist.
func rawItem(t *testing.T, b *testBundle, pk, sk string) map[string]types.AttributeValue {
	t.Helper()
	out, err := b.client.GetItem(t.Context(), &ddb.GetItemInput{
		TableName:      aws.String(shared.table),
		Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: sk}},
		ConsistentRead: aws.Bool(true),
	})
	require.NoError(t, err)
	return out.Item
}

// TestExpiredRequestIsMissing checks that writes, not only reads, treat an
// expired request as missing, and that it may be created again.
func TestExpiredRequestIsMissing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	now := time.Now().UTC().Truncate(time.Millisecond)
	k := uniqueKey(t)
	old := storage.Request{Key: k, Status: storage.StatusQueued, Action: "old", ExpiresAt: now.Add(-time.Second)}
	require.NoError(t, b.store.CreateRequest(ctx, old))

	_, err := b.store.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = b.store.CancelRequest(ctx, k, now)
	require.ErrorIs(t, err, storage.ErrNotFound)
	require.ErrorIs(t, b.store.AppendEvent(ctx, k, 0, storage.Event{Seq: 1, Type: "progress"}, 0), storage.ErrNotFound)
	err = b.store.FinishRequest(ctx, k, storage.Finish{Event: storage.Event{Seq: 1, Type: "complete"}, Status: storage.StatusSucceeded})
	require.ErrorIs(t, err, storage.ErrNotFound)

	fresh := storage.Request{Key: k, Status: storage.StatusQueued, Action: "new"}
	require.NoError(t, b.store.CreateRequest(ctx, fresh))
	got, err := b.store.GetRequest(ctx, k)
	require.NoError(t, err)
	require.Equal(t, "new", got.Action)
	require.ErrorIs(t, b.store.CreateRequest(ctx, fresh), storage.ErrExists)
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	k := uniqueKey(t)
	require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued}))
	b.ops.take()

	require.Error(t, b.store.AppendEvent(ctx, k, 0, storage.Event{Seq: 0}, 0))
	require.Error(t, b.store.AppendEvent(ctx, k, 0, storage.Event{Seq: 1, Percentage: nan()}, 0))
	require.Error(t, b.store.FinishRequest(ctx, k, storage.Finish{Event: storage.Event{Seq: 1}, Status: storage.StatusRunning}))
	require.Error(t, b.store.PutConnection(ctx, storage.Connection{}))
	require.Error(t, b.store.Subscribe(ctx, k, "", time.Time{}))
	require.Empty(t, b.ops.take(), "bad input is rejected before any call")
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

// TestDeleteConnectionManySubscriptions needs several BatchWriteItem calls
// (25 items each).
func TestDeleteConnectionManySubscriptions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	conn, other := t.Name()+"-conn", t.Name()+"-other"
	now := time.Now()
	require.NoError(t, b.store.PutConnection(ctx, storage.Connection{ID: conn}))
	keys := make([]storage.Key, 30)
	for i := range keys {
		keys[i] = uniqueKey(t)
		exp := now.Add(time.Hour)
		if i%2 == 0 {
			exp = time.Time{}
		}
		require.NoError(t, b.store.Subscribe(ctx, keys[i], conn, exp))
		require.NoError(t, b.store.Subscribe(ctx, keys[i], other, now.Add(time.Hour)))
	}
	// An expired subscription, not listed but deleted all the same.
	expiredKey := uniqueKey(t)
	require.NoError(t, b.store.Subscribe(ctx, expiredKey, conn, now.Add(-time.Minute)))
	got, err := b.store.Subscriptions(ctx, conn)
	require.NoError(t, err)
	require.ElementsMatch(t, keys, got)
	b.ops.take()

	require.NoError(t, b.store.DeleteConnection(ctx, conn))
	require.Equal(t, map[string]int{"Query": 1, "BatchWriteItem": 3}, b.ops.take(), "63 deletes")
	for _, key := range [][2]string{
		{"REQ#" + expiredKey.String(), "SUB#" + conn},
		{"CONN#" + conn, "SUB#" + expiredKey.String()},
	} {
		require.Nil(t, rawItem(t, b, key[0], key[1]), "%s %s is deleted", key[0], key[1])
	}

	_, err = b.store.GetConnection(ctx, conn)
	require.ErrorIs(t, err, storage.ErrNotFound)
	got, err = b.store.Subscriptions(ctx, conn)
	require.NoError(t, err)
	require.Empty(t, got)
	for _, k := range keys {
		subs, err := b.store.Subscribers(ctx, k)
		require.NoError(t, err)
		require.Equal(t, []string{other}, subs)
	}
}

// TestExpiredEvents checks that reads skip events whose ExpiresAt passed
// before DynamoDB's TTL deleted them.
func TestExpiredEvents(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	k := uniqueKey(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued}))
	for seq := int64(1); seq <= 4; seq++ {
		ev := storage.Event{Seq: seq, Type: "progress", CreatedAt: now}
		if seq%2 == 0 {
			ev.ExpiresAt = now.Add(-time.Second)
		}
		require.NoError(t, b.store.AppendEvent(ctx, k, 0, ev, 0))
	}
	evs, err := b.store.ReadEvents(ctx, k, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 2)
	require.Equal(t, []int64{1, 3}, []int64{evs[0].Seq, evs[1].Seq})

	evs, err = b.store.ReadEvents(ctx, k, 1, 1)
	require.NoError(t, err)
	require.Len(t, evs, 1)
	require.Equal(t, int64(3), evs[0].Seq, "the limit counts live events")

	last, err := b.store.LastEvent(ctx, k)
	require.NoError(t, err)
	require.Equal(t, int64(3), last.Seq)
}

// TestIndexAttributes follows a request's entry in the status index
// through every write that moves it, and checks that other items are not
// in the index.
func TestIndexAttributes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	k := uniqueKey(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	pk := "REQ#" + k.String()

	var shard string
	check := func(status string, at time.Time, msg string) {
		t.Helper()
		it := rawItem(t, b, pk, "REQ")
		require.NotNil(t, it, msg)
		s, ok := it[dynamodb.AttrStatusShard].(*types.AttributeValueMemberS)
		require.True(t, ok, "%s: %s is a string", msg, dynamodb.AttrStatusShard)
		st, n, found := strings.Cut(s.Value, "#")
		require.True(t, found, "%s: %q", msg, s.Value)
		require.Equal(t, status, st, msg)
		require.Len(t, n, 2, msg)
		if shard == "" {
			shard = n
		}
		require.Equal(t, shard, n, "%s: the shard never changes", msg)
		v, ok := it[dynamodb.AttrStatusTime].(*types.AttributeValueMemberN)
		require.True(t, ok, "%s: %s is a number", msg, dynamodb.AttrStatusTime)
		require.Equal(t, strconv.FormatInt(at.UnixMilli(), 10), v.Value, msg)
	}

	require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued, NotBefore: now}))
	check("queued", now, "create")
	_, err := b.store.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)
	check("running", now.Add(time.Minute), "claim")
	require.NoError(t, b.store.ExtendLease(ctx, k, 1, now.Add(2*time.Minute)))
	check("running", now.Add(2*time.Minute), "extend")
	require.NoError(t, b.store.AppendEvent(ctx, k, 1, storage.Event{Seq: 1, Type: "progress"}, 0))
	check("running", now.Add(2*time.Minute), "an event does not move the request")
	ev := rawItem(t, b, pk, "EV#00000000000000000001")
	require.NotContains(t, ev, dynamodb.AttrStatusShard, "events are not in the index")
	require.NotContains(t, ev, dynamodb.AttrStatusTime)
	require.NoError(t, b.store.RequeueRequest(ctx, k, 1, now.Add(3*time.Minute)))
	check("queued", now.Add(3*time.Minute), "requeue")
	_, err = b.store.CancelRequest(ctx, k, now)
	require.NoError(t, err)
	check("canceling", now, "cancel of a queued request: due from the cancel")
	_, err = b.store.ClaimRequest(ctx, k, storage.Claim{Now: now.Add(4 * time.Minute), LeaseUntil: now.Add(5 * time.Minute)})
	require.NoError(t, err)
	check("canceling", now.Add(5*time.Minute), "claim of a canceling request")
	require.NoError(t, b.store.Subscribe(ctx, k, t.Name()+"-conn", time.Time{}))
	require.NotContains(t, rawItem(t, b, pk, "SUB#"+t.Name()+"-conn"), dynamodb.AttrStatusShard, "subscriptions are not in the index")
	require.NoError(t, b.store.FinishRequest(ctx, k, storage.Finish{
		Attempt: 2, Event: storage.Event{Seq: 2, Type: "error"}, Status: storage.StatusCanceled, Now: now.Add(6 * time.Minute),
	}))
	check("canceled", now.Add(6*time.Minute), "finish: by the time it finished")

	k2 := uniqueKey(t)
	pk = "REQ#" + k2.String()
	shard = ""
	require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k2, Status: storage.StatusRunning, Attempt: 1, LeaseUntil: now}))
	check("running", now, "created running")
	_, err = b.store.CancelRequest(ctx, k2, now)
	require.NoError(t, err)
	check("canceling", now, "cancel of a running request: due when its lease passes")
}
