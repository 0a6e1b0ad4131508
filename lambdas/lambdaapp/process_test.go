package lambdaapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

var update = flag.Bool("update", false, "rewrite testdata/stream_insert.json with a record captured from DynamoDB Local")

const insertFile = "testdata/stream_insert.json"

// isQueuedInsert matches the stream record of a new request with id.
func isQueuedInsert(id string) func(types.Record) bool {
	return func(r types.Record) bool {
		img := r.Dynamodb.NewImage
		return r.EventName == types.OperationTypeInsert && lambdatest.Str(img, dynamodb.AttrSK) == "REQ" &&
			lambdatest.Str(img, "status") == "queued" && strings.HasSuffix(lambdatest.Str(img, dynamodb.AttrPK), "|"+id)
	}
}

func find(recs []types.Record, match func(types.Record) bool) []types.Record {
	var out []types.Record
	for _, r := range recs {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// capture reads the table's stream until match finds a record, and returns
// all records read, and the matching ones, as Lambda delivers them.
func (s *stack) capture(t *testing.T, match func(types.Record) bool) (all, matched []byte) {
	t.Helper()
	recs := s.aws.ReadStream(t, s.table, func(recs []types.Record) bool { return len(find(recs, match)) > 0 })
	arn := s.aws.StreamARN(t, s.table)
	return lambdatest.EventJSON(t, recs, arn, s.aws.Region), lambdatest.EventJSON(t, find(recs, match), arn, s.aws.Region)
}

func decode(t *testing.T, data []byte) events.DynamoDBEvent {
	t.Helper()
	var ev events.DynamoDBEvent
	require.NoError(t, json.Unmarshal(data, &ev))
	require.NotEmpty(t, ev.Records)
	return ev
}

func (s *stack) process(t *testing.T, ctx context.Context, ev events.DynamoDBEvent) []events.DynamoDBBatchItemFailure {
	t.Helper()
	resp, err := s.processor.Process(ctx, ev)
	require.NoError(t, err)
	require.NotNil(t, resp.BatchItemFailures, "the failures are [] when there are none, never null")
	return resp.BatchItemFailures
}

// A request queued through the router reaches the processor as DynamoDB
// writes it to the stream, and runs to completion; the other records of
// the table's stream are ignored, and an unreadable one alone fails.
func TestProcessCapturedStream(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	c, id := s.open(t, "carol")
	s.send(t, id, `{"action":"delay","id":"job-1","payload":{"ms":100,"steps":2}}`)
	ack := lambdatest.Read(t, c)
	require.Equal(t, streamer.TypeAcknowledgment, ack.Type)
	require.Equal(t, "queued", ack.Status)

	all, insert := s.capture(t, isQueuedInsert("job-1"))
	if *update {
		require.NoError(t, os.WriteFile(insertFile, append(insert, '\n'), 0o600))
	}

	// The whole stream so far: the connection's, the subscription's and
	// the request's inserts. Only the request runs.
	batch := decode(t, all)
	require.Greater(t, len(batch.Records), 1)
	require.Empty(t, s.process(t, ctx, batch))
	got := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	final := got[len(got)-1]
	require.Equal(t, "job-1", final.RequestID)
	require.JSONEq(t, `{"steps":2,"ms":100}`, string(final.Result))

	store, err := dynamodb.New(dynamodb.Config{Client: s.aws.DB, Table: s.table})
	require.NoError(t, err)
	key := storage.Key{Subject: "carol", ID: "job-1"}
	req, err := store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusSucceeded, req.Status)
	evs, err := store.ReadEvents(ctx, key, 0, 0)
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	require.Equal(t, streamer.TypeComplete, evs[len(evs)-1].Type)

	// What the run wrote: event items, and the request's modifications
	// (running, succeeded). None is a queued request: all are ignored, as
	// is the first insert delivered again (the request has run).
	after := s.aws.ReadStream(t, s.table, func(recs []types.Record) bool {
		return len(find(recs, func(r types.Record) bool { return lambdatest.Str(r.Dynamodb.NewImage, "status") == "succeeded" })) > 0
	})
	eventItems := find(after, func(r types.Record) bool {
		return strings.HasPrefix(lambdatest.Str(r.Dynamodb.NewImage, dynamodb.AttrSK), "EV#")
	})
	require.NotEmpty(t, eventItems)
	arn := s.aws.StreamARN(t, s.table)
	rest := decode(t, lambdatest.EventJSON(t, after, arn, s.aws.Region))
	for _, r := range decode(t, lambdatest.EventJSON(t, eventItems, arn, s.aws.Region)).Records {
		_, ok, err := lambdaapp.QueuedKey(r)
		require.NoError(t, err)
		require.False(t, ok, "an event item is not a queued request")
	}
	require.Empty(t, s.process(t, ctx, rest))
	evs2, err := store.ReadEvents(ctx, key, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs2, len(evs), "nothing ran again")

	// A malformed request image fails that record only; removals are
	// ignored.
	ins := decode(t, insert).Records[0]
	malformed := ins
	malformed.Change.SequenceNumber = "malformed-1"
	malformed.Change.NewImage = copyImage(ins.Change.NewImage)
	malformed.Change.NewImage[dynamodb.AttrPK] = events.NewStringAttribute("REQ#not-a-key")
	noPK := ins
	noPK.Change.SequenceNumber = "malformed-2"
	noPK.Change.NewImage = copyImage(ins.Change.NewImage)
	delete(noPK.Change.NewImage, dynamodb.AttrPK)
	removal := ins
	removal.EventName = "REMOVE"
	removal.Change.SequenceNumber = "removal-1"
	removal.Change.OldImage, removal.Change.NewImage = ins.Change.NewImage, nil
	mixed := events.DynamoDBEvent{Records: []events.DynamoDBEventRecord{rest.Records[0], malformed, removal, noPK, rest.Records[len(rest.Records)-1]}}
	require.ElementsMatch(t, []events.DynamoDBBatchItemFailure{{ItemIdentifier: "malformed-1"}, {ItemIdentifier: "malformed-2"}}, s.process(t, ctx, mixed))
}

func copyImage(m map[string]events.DynamoDBAttributeValue) map[string]events.DynamoDBAttributeValue {
	out := make(map[string]events.DynamoDBAttributeValue, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// The committed record, captured from DynamoDB Local's stream, decodes to
// the request it queued.
func TestCommittedStreamInsert(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(filepath.Clean(insertFile))
	require.NoError(t, err)
	ev := decode(t, data)
	require.Len(t, ev.Records, 1)
	r := ev.Records[0]
	require.Equal(t, "INSERT", r.EventName)
	require.Equal(t, "aws:dynamodb", r.EventSource)
	require.Equal(t, "NEW_AND_OLD_IMAGES", r.Change.StreamViewType)
	require.NotEmpty(t, r.Change.SequenceNumber)
	require.False(t, r.Change.ApproximateCreationDateTime.IsZero())
	k, ok, err := lambdaapp.QueuedKey(r)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, storage.Key{Subject: "carol", ID: "job-1"}, k)

	// The image holds every attribute type the store writes for a request;
	// they all convert.
	img, err := lambdaapp.FromEventImage(r.Change.NewImage)
	require.NoError(t, err)
	require.Len(t, img, len(r.Change.NewImage))
	keys, err := lambdaapp.FromEventImage(r.Change.Keys)
	require.NoError(t, err)
	require.Equal(t, img[dynamodb.AttrPK], keys[dynamodb.AttrPK])
}

// flaky fails its first run with a retryable error, then succeeds. Its
// backoff is exact, so the test knows when the retry falls due.
func flaky(backoff time.Duration, runs *atomic.Int32) streamer.Plugin {
	return streamer.Plugin{Name: "flaky", Actions: []streamer.Action{{
		Name: "flaky",
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
			if runs.Add(1) == 1 {
				return nil, streamer.Retryable(errors.New("first run fails"))
			}
			return "ok", nil
		}),
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Retry: streamer.RetryPolicy{MaxAttempts: 2, InitialBackoff: backoff, Jitter: -1}},
	}}}
}

// A retry re-queues the request (a MODIFY back to queued). The processor
// waits for it when it falls due before the invocation's deadline (less
// streamer.StopMargin), and otherwise reports the record at once, for the
// stream to deliver it again.
func TestProcessWaitsForRetry(t *testing.T) {
	t.Parallel()
	const backoff = 10 * time.Second
	var runs atomic.Int32
	s := newStack(t, flaky(backoff, &runs))
	c, id := s.open(t, "dave")
	s.send(t, id, `{"action":"flaky","id":"f-1"}`)
	require.Equal(t, streamer.TypeAcknowledgment, lambdatest.Read(t, c).Type)

	_, insert := s.capture(t, isQueuedInsert("f-1"))
	require.Empty(t, s.process(t, context.Background(), decode(t, insert)))
	require.Equal(t, int32(1), runs.Load())
	requeued := time.Now()

	_, modify := s.capture(t, func(r types.Record) bool {
		return r.EventName == types.OperationTypeModify && lambdatest.Str(r.Dynamodb.NewImage, "status") == "queued" &&
			lambdatest.Str(r.Dynamodb.OldImage, "status") == "running"
	})
	retry := decode(t, modify)
	require.Len(t, retry.Records, 1)

	// Due about 10s after the re-queue; a deadline half that after it is
	// too early to wait for, however long capturing the record took on a
	// loaded machine (up to the deadline itself).
	short, cancel := context.WithDeadline(context.Background(), requeued.Add(backoff/2))
	defer cancel()
	start := time.Now()
	failures := s.process(t, short, retry)
	require.Equal(t, []events.DynamoDBBatchItemFailure{{ItemIdentifier: retry.Records[0].Change.SequenceNumber}}, failures)
	require.Less(t, time.Since(start), backoff/2, "it did not wait")
	require.Equal(t, int32(1), runs.Load())

	// With time enough, it waits and runs it.
	long, cancel2 := context.WithTimeout(context.Background(), 2*backoff+streamer.StopMargin)
	defer cancel2()
	require.Empty(t, s.process(t, long, retry))
	require.Equal(t, int32(2), runs.Load())
	require.GreaterOrEqual(t, time.Since(requeued), backoff-time.Second, "it ran when due, not before")
	got := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	require.JSONEq(t, `"ok"`, string(got[len(got)-1].Result))
}
