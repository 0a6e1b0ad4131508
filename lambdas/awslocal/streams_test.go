package awslocal_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// localAWS returns clients for DynamoDB Local, or skips (fails in CI) when
// AWS_ENDPOINT_URL_DYNAMODB is not set.
func localAWS(t *testing.T) (*awsdynamodb.Client, *dynamodbstreams.Client) {
	t.Helper()
	if os.Getenv("AWS_ENDPOINT_URL_DYNAMODB") == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AWS_ENDPOINT_URL_DYNAMODB is not set: DynamoDB Local is required in CI (make test starts it)")
		}
		t.Skip("AWS_ENDPOINT_URL_DYNAMODB is not set; run make test, or scripts/dynamodb-local.sh")
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	require.NoError(t, err)
	db := awsdynamodb.NewFromConfig(cfg, func(o *awsdynamodb.Options) { o.DisableValidateResponseChecksum = true })
	// DynamoDB Local serves Streams on the same endpoint; without this the
	// client would look for AWS_ENDPOINT_URL_DYNAMODB_STREAMS.
	streams := dynamodbstreams.NewFromConfig(cfg, func(o *dynamodbstreams.Options) {
		o.BaseEndpoint = aws.String(os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"))
	})
	return db, streams
}

func TestPollerDeliversQueuedRequests(t *testing.T) {
	t.Parallel()
	db, streams := localAWS(t)
	ctx := context.Background()
	table := fmt.Sprintf("streamer-poller-%d", time.Now().UnixNano())
	require.NoError(t, dynamodb.CreateTable(ctx, db, table))
	t.Cleanup(func() {
		_, _ = db.DeleteTable(context.Background(), &awsdynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	desc, err := db.DescribeTable(ctx, &awsdynamodb.DescribeTableInput{TableName: aws.String(table)})
	require.NoError(t, err)
	store, err := dynamodb.New(dynamodb.Config{Client: db, Table: table})
	require.NoError(t, err)

	var mu sync.Mutex
	var got []events.DynamoDBEventRecord
	calls := 0
	handler := func(_ context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			// The first invocation fails its first record: it must come
			// again, with the records after it.
			return events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{{ItemIdentifier: ev.Records[0].Change.SequenceNumber}}}, nil
		}
		got = append(got, ev.Records...)
		return events.DynamoDBEventResponse{}, nil
	}
	queued := func(r events.DynamoDBEventRecord) bool {
		st, ok := r.Change.NewImage["status"]
		return (r.EventName == "INSERT" || r.EventName == "MODIFY") && ok && st.String() == "queued"
	}
	p, err := awslocal.NewPoller(awslocal.PollerConfig{
		Streams: streams, StreamARN: aws.ToString(desc.Table.LatestStreamArn), Handler: handler,
		Filter: queued, Interval: 20 * time.Millisecond,
	})
	require.NoError(t, err)
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	defer func() {
		stop()
		require.NoError(t, <-done)
	}()

	now := time.Now()
	for i := range 3 {
		require.NoError(t, store.CreateRequest(ctx, storage.Request{
			Key:    storage.Key{Subject: "alice", ID: fmt.Sprintf("r%d", i)},
			Action: "echo", Payload: []byte(`{"n":1}`), Status: storage.StatusQueued, CreatedAt: now, UpdatedAt: now,
		}))
	}
	// A claim modifies the item to running: the filter drops that record.
	_, err = store.ClaimRequest(ctx, storage.Key{Subject: "alice", ID: "r0"}, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 3
	}, 15*time.Second, 20*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 3, "each queued insert once after the retry; the claim's MODIFY filtered out")
	for _, r := range got {
		require.Equal(t, "aws:dynamodb", r.EventSource)
		require.Equal(t, "INSERT", r.EventName)
		require.Equal(t, "queued", r.Change.NewImage["status"].String())
		require.Equal(t, "REQ", r.Change.NewImage["sk"].String())
		require.NotEmpty(t, r.Change.SequenceNumber)
	}
}

func TestNewPollerNamesMissingSettings(t *testing.T) {
	t.Parallel()
	_, err := awslocal.NewPoller(awslocal.PollerConfig{})
	require.ErrorContains(t, err, "Streams")
}
