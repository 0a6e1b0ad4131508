package awslocal_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

func TestPollerDeliversQueuedRequests(t *testing.T) {
	t.Parallel()
	local := lambdatest.DynamoDBLocal(t)
	ctx := context.Background()
	table := local.Table(t)
	store, err := dynamodb.New(dynamodb.Config{Client: local.DB, Table: table})
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
		Streams: local.Streams, StreamARN: local.StreamARN(t, table), Handler: handler,
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
