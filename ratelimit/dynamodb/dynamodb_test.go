package dynamodb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
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
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/ratelimit/dynamodb"
	"github.com/streamer-go/streamer/ratelimit/ratelimittest"
	sdynamo "github.com/streamer-go/streamer/storage/dynamodb"
)

// endpointEnv names the DynamoDB endpoint the tests use (DynamoDB Local).
const endpointEnv = "AWS_ENDPOINT_URL_DYNAMODB"

var shared struct {
	cfg   aws.Config
	table string
	err   error
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

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
	shared.table = "streamer-rl-test-" + hex.EncodeToString(b[:])
	client := newClient(nil)
	if shared.err = sdynamo.CreateTable(ctx, client, shared.table); shared.err != nil {
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

// newClient returns a client of DynamoDB Local that counts its operations
// in ops (when not nil).
func newClient(ops *opCounter) *ddb.Client {
	return ddb.NewFromConfig(shared.cfg, func(o *ddb.Options) {
		o.DisableValidateResponseChecksum = true
		if ops != nil {
			o.APIOptions = append(o.APIOptions, ops.register)
		}
	})
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

func newLimiter(t testing.TB, now func() time.Time, ops *opCounter) *dynamodb.Limiter {
	t.Helper()
	requireTable(t)
	l, err := dynamodb.New(dynamodb.Config{Client: newClient(ops), Table: shared.table, Now: now})
	require.NoError(t, err)
	return l
}

// TestConformance runs the suite with a limiter per client, as separate
// Lambda instances are: 8 clients race on one bucket item.
func TestConformance(t *testing.T) {
	requireTable(t)
	ratelimittest.Run(t, ratelimittest.Backend{
		New: func(t *testing.T, now func() time.Time) ratelimit.Limiter {
			return newLimiter(t, now, nil)
		},
		Shared: true,
	})
}

// opCounter counts SDK operations by name.
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

func (c *opCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.ops
	c.ops = nil
	return out
}

// TestCostPerTake pins the DynamoDB calls of a take (BENCHMARKS.md): one
// write per admitted request, none per refusal of a known bucket.
func TestCostPerTake(t *testing.T) {
	t.Parallel()
	clock := ratelimittest.NewClock()
	ops := &opCounter{}
	l := newLimiter(t, clock.Now, ops)
	ctx := context.Background()
	key := ratelimittest.Key(t, "cost")
	r := ratelimit.Rule{Rate: 1, Burst: 2}
	take := func() bool {
		d, err := l.Take(ctx, key, r, 1)
		require.NoError(t, err)
		return d.Allowed
	}
	require.True(t, take())
	require.Equal(t, map[string]int{"GetItem": 1, "UpdateItem": 1}, ops.take(), "a bucket this instance has not seen: one read, one write")
	require.True(t, take())
	require.Equal(t, map[string]int{"UpdateItem": 1}, ops.take(), "admitted, bucket cached: one write")
	require.False(t, take())
	require.Nil(t, ops.take(), "refused, bucket cached: no call")

	// Another instance took the refill meanwhile: this one's cached state
	// is stale, its write fails, and the item returned with the failure
	// decides (no read).
	other := newLimiter(t, clock.Now, nil)
	clock.Advance(time.Second)
	d, err := other.Take(ctx, key, r, 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	require.False(t, take(), "the token was taken by the other instance")
	require.Equal(t, map[string]int{"UpdateItem": 1}, ops.take(), "one failed conditional write, then refused from the item it returned")

	// A cold instance refusing: one read.
	cold := newLimiter(t, clock.Now, ops)
	d, err = cold.Take(ctx, key, r, 1)
	require.NoError(t, err)
	require.False(t, d.Allowed)
	require.Equal(t, map[string]int{"GetItem": 1}, ops.take())
}

// TestItemLayout checks the bucket item: in the app's table, under RL#,
// with a TTL one fill time (plus a minute) after its write.
func TestItemLayout(t *testing.T) {
	t.Parallel()
	clock := ratelimittest.NewClock()
	l := newLimiter(t, clock.Now, nil)
	key := ratelimittest.Key(t, "layout")
	r := ratelimit.Rule{Rate: 1, Per: time.Minute, Burst: 3}
	_, err := l.Take(context.Background(), key, r, 1)
	require.NoError(t, err)
	out, err := newClient(nil).GetItem(context.Background(), &ddb.GetItemInput{
		TableName: aws.String(shared.table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{
			sdynamo.AttrPK: &types.AttributeValueMemberS{Value: dynamodb.KeyPrefix + key},
			sdynamo.AttrSK: &types.AttributeValueMemberS{Value: dynamodb.SortKey},
		},
	})
	require.NoError(t, err)
	require.NotNil(t, out.Item)
	ttl := out.Item[sdynamo.AttrTTL].(*types.AttributeValueMemberN).Value
	want := clock.Now().Add(3*time.Minute + time.Minute).Unix()
	require.Equal(t, fmt.Sprint(want+1), ttl)
	require.Equal(t, "2", out.Item["tokens"].(*types.AttributeValueMemberN).Value)
	// Not a request item: the processor's stream filter passes it not.
	_, queued, err := sdynamo.QueuedRequest(out.Item)
	require.NoError(t, err)
	require.False(t, queued)
}

// TestLongKeys: a key too long for a partition key is hashed, and still
// names its own bucket.
func TestLongKeys(t *testing.T) {
	t.Parallel()
	clock := ratelimittest.NewClock()
	l := newLimiter(t, clock.Now, nil)
	ctx := context.Background()
	long := ratelimittest.Key(t, strings.Repeat("x", 3000))
	r := ratelimit.Rule{Rate: 1, Burst: 1}
	d, err := l.Take(ctx, long, r, 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	d, err = l.Take(ctx, long, r, 1)
	require.NoError(t, err)
	require.False(t, d.Allowed)
	d, err = l.Take(ctx, long+"y", r, 1)
	require.NoError(t, err)
	require.True(t, d.Allowed, "another long key, another bucket")
}

func TestConfig(t *testing.T) {
	t.Parallel()
	_, err := dynamodb.New(dynamodb.Config{Table: "t"})
	require.ErrorContains(t, err, "Client")
	_, err = dynamodb.New(dynamodb.Config{Client: &ddb.Client{}})
	require.ErrorContains(t, err, "Table")
}

// TestContentionRefuses: a take that loses every race for its bucket is
// refused, never admitted, and counted.
func TestContentionRefuses(t *testing.T) {
	t.Parallel()
	requireTable(t)
	clock := ratelimittest.NewClock()
	ctx := context.Background()
	a, err := dynamodb.New(dynamodb.Config{Client: newClient(nil), Table: shared.table, Now: clock.Now, MaxAttempts: 1})
	require.NoError(t, err)
	b := newLimiter(t, clock.Now, nil)
	key := ratelimittest.Key(t, "contention")
	r := ratelimit.Rule{Rate: 1, Burst: 3}
	d, err := a.Take(ctx, key, r, 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	d, err = b.Take(ctx, key, r, 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	// a's cached state is stale: its one attempt loses.
	d, err = a.Take(ctx, key, r, 1)
	require.NoError(t, err)
	require.False(t, d.Allowed, "lost its only race")
	require.Equal(t, time.Second, d.RetryAfter)
	require.EqualValues(t, 1, a.Contended())
	// Without the stale state, it reads the item and takes the last token.
	d, err = a.Take(ctx, key, r, 1)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	d, err = b.Take(ctx, key, r, 1)
	require.NoError(t, err)
	require.False(t, d.Allowed, "3 taken of 3")
}
