package sqsredrive_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/ops"
	"github.com/streamer-go/streamer/ops/sqsredrive"
	"github.com/streamer-go/streamer/ops/sqsredrive/sqslocal"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/storage/dynamodb/dynamodbtest"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport"
)

var alice = streamer.Principal{Subject: "alice", Tenant: "acme"}

func key(id string) storage.Key { return storage.Key{Tenant: "acme", Subject: "alice", ID: id} }

// jobRecord is a failure-queue message body as Lambda writes it for a
// processor job that failed on every attempt.
func jobRecord(k storage.Key) string {
	kj, _ := json.Marshal(k.String())
	return `{"version":"1.0","timestamp":"2026-12-07T18:16:05.568Z","requestContext":{"requestId":"e4b46cbf-b738-4a6d-9f8f-0b4e6f1d2a3c",` +
		`"functionArn":"arn:aws:lambda:us-east-1:123456789012:function:streamer-dev-processor:$LATEST","condition":"RetriesExhausted","approximateInvokeCount":3},` +
		`"requestPayload":{"streamer_job":{"key":` + string(kj) + `}},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},` +
		`"responsePayload":{"errorMessage":"lambdaapp: boom","errorType":"wrapError"}}`
}

// visibility is the test queue's visibility timeout: how long a message
// left on the queue stays hidden, and the longest a run may take to handle
// one (its receipt handle expires then), generous for a loaded machine.
const visibility = 10 * time.Second

// startSQS runs the local SQS server and returns a queue on it whose
// visibility timeout is [visibility].
func startSQS(t *testing.T) (*sqslocal.Server, *sqsredrive.Queue) {
	t.Helper()
	srv, err := sqslocal.New(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	url, err := srv.CreateQueue(t.Context(), "processor-dlq", visibility)
	require.NoError(t, err)
	q, err := sqsredrive.NewQueue(sqsredrive.QueueConfig{
		URL: url, AWS: aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")},
	})
	require.NoError(t, err)
	return srv, q
}

// depth is the queue's ApproximateNumberOfMessages (visible or not).
func depth(t *testing.T, q *sqsredrive.Queue) string {
	t.Helper()
	attrs, err := q.Attributes(t.Context(), "ApproximateNumberOfMessages")
	require.NoError(t, err)
	return attrs["ApproximateNumberOfMessages"]
}

// waitVisible waits until no message of q is in flight.
func waitVisible(t *testing.T, q *sqsredrive.Queue) {
	t.Helper()
	require.Eventually(t, func() bool {
		attrs, err := q.Attributes(t.Context(), "ApproximateNumberOfMessagesNotVisible")
		return err == nil && attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
	}, visibility+30*time.Second, 50*time.Millisecond)
}

// storeRequests stores, as the processor would, a failed request f1, a
// succeeded one o1 and a queued (live) one l1 whose job never ran.
func storeRequests(t *testing.T, store storage.Store) {
	t.Helper()
	now := time.Now()
	principal, _ := json.Marshal(alice)
	for _, id := range []string{"f1", "o1", "l1"} {
		require.NoError(t, store.CreateRequest(t.Context(), storage.Request{
			Key: key(id), Action: "work", Payload: json.RawMessage(`{"n":1}`), Principal: principal,
			Status: storage.StatusQueued, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour),
		}))
	}
	for id, st := range map[string]storage.Status{"f1": storage.StatusFailed, "o1": storage.StatusSucceeded} {
		_, err := store.ClaimRequest(t.Context(), key(id), storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
		require.NoError(t, err)
		fin := storage.Finish{Attempt: 1, Status: st, Now: now.Add(time.Second),
			Event: storage.Event{Seq: 1, Type: "complete", Data: []byte(`{"type":"complete"}`), CreatedAt: now}}
		if st == storage.StatusFailed {
			fin.Event = storage.Event{Seq: 1, Type: "error", Data: []byte(`{"type":"error"}`), CreatedAt: now}
			fin.Error = &storage.ErrorInfo{Code: "PROCESSING_FAILED", Message: "boom"}
		}
		require.NoError(t, store.FinishRequest(t.Context(), key(id), fin))
	}
}

func newOps(t *testing.T, store storage.Store) *ops.Ops {
	t.Helper()
	plugin := streamer.Plugin{Name: "t", Actions: []streamer.Action{{Name: "work", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return "done", nil })}}}
	nop := transport.SenderFunc(func(context.Context, string, string, []byte) error { return nil })
	app, err := streamer.New(streamer.Config{Store: store, Sender: nop, Plugins: []streamer.Plugin{plugin}})
	require.NoError(t, err)
	return ops.New(store, app)
}

// testRedrive sends four messages to a real (local) SQS queue: the failure
// records of a failed, a succeeded and a live request, and a malformed
// body; and redrives them from the queue.
func testRedrive(t *testing.T, store storage.Store) {
	_, q := startSQS(t)
	storeRequests(t, store)
	o := newOps(t, store)
	for _, body := range []string{jobRecord(key("f1")), jobRecord(key("o1")), jobRecord(key("l1")), "not a record"} {
		_, err := q.Send(t.Context(), body)
		require.NoError(t, err)
	}
	require.Equal(t, "4", depth(t, q))

	// --max 1: one message, the first.
	sum, err := sqsredrive.Run(t.Context(), sqsredrive.Config{Queue: q, Ops: o, RetryFailed: true, Max: 1})
	require.NoError(t, err)
	require.Len(t, sum.Results, 1)
	require.NoError(t, sum.Results[0].Err)
	require.Equal(t, ops.OutcomeRetried, sum.Results[0].Redrive.Outcome, "the failed request is retried")
	require.Equal(t, "f1:retry-1", sum.Results[0].Redrive.RetryID)
	require.True(t, sum.Results[0].Deleted)
	require.Equal(t, "3", depth(t, q))
	r, err := store.GetRequest(t.Context(), key("f1:retry-1"))
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, r.Status)

	// The rest: the finished request's message is deleted; the live one
	// (no dispatcher) and the malformed one stay.
	var seen []string
	sum, err = sqsredrive.Run(t.Context(), sqsredrive.Config{Queue: q, Ops: o, RetryFailed: true,
		OnMessage: func(r sqsredrive.Result) { seen = append(seen, r.MessageID) }})
	require.NoError(t, err)
	require.Len(t, sum.Results, 3)
	require.Equal(t, 1, sum.Deleted)
	require.Equal(t, 2, sum.Left)
	require.Len(t, seen, 3)
	byKey := map[string]sqsredrive.Result{}
	for _, res := range sum.Results {
		byKey[res.Redrive.Failure.Key.ID] = res
	}
	require.Equal(t, ops.OutcomeFinished, byKey["o1"].Redrive.Outcome)
	require.True(t, byKey["o1"].Deleted)
	require.Equal(t, ops.OutcomeLive, byKey["l1"].Redrive.Outcome)
	require.False(t, byKey["l1"].Deleted)
	require.ErrorIs(t, byKey[""].Err, ops.ErrNotFailureRecord)
	require.False(t, byKey[""].Deleted)
	require.Equal(t, "2", depth(t, q), "the live and the malformed messages stay on the queue")

	// After the visibility timeout they come back: with a dispatcher the
	// live request's job runs again and its message goes; with
	// DropMalformed, so does the malformed one.
	waitVisible(t, q)
	var (
		mu   sync.Mutex
		jobs []string
	)
	dispatch := func(_ context.Context, f ops.Failure) error {
		mu.Lock()
		defer mu.Unlock()
		jobs = append(jobs, string(f.Job))
		return nil
	}
	sum, err = sqsredrive.Run(t.Context(), sqsredrive.Config{Queue: q, Ops: o, Dispatch: dispatch, DropMalformed: true})
	require.NoError(t, err)
	require.Len(t, sum.Results, 2)
	require.Equal(t, 2, sum.Deleted)
	byKey = map[string]sqsredrive.Result{}
	for _, res := range sum.Results {
		byKey[res.Redrive.Failure.Key.ID] = res
	}
	require.Equal(t, ops.OutcomeRedriven, byKey["l1"].Redrive.Outcome)
	require.True(t, byKey["l1"].Deleted)
	require.ErrorIs(t, byKey[""].Err, ops.ErrNotFailureRecord)
	require.True(t, byKey[""].Deleted)
	mu.Lock()
	require.Equal(t, []string{`{"streamer_job":{"key":"acme|alice|l1"}}`}, jobs)
	mu.Unlock()
	require.Equal(t, "0", depth(t, q))

	// An empty queue: nothing to do.
	sum, err = sqsredrive.Run(t.Context(), sqsredrive.Config{Queue: q, Ops: o})
	require.NoError(t, err)
	require.Empty(t, sum.Results)
}

func TestRedriveMemory(t *testing.T) {
	testRedrive(t, memory.New())
}

func TestRedriveDynamoDB(t *testing.T) {
	client, table := dynamodbtest.NewTable(t, "sqsredrive")
	store, err := dynamodb.New(dynamodb.Config{Client: client, Table: table})
	require.NoError(t, err)
	testRedrive(t, store)
}

// TestRedriveErrors: a message whose dispatch fails stays; a missing queue
// stops the run with SQS's error; bad configurations are refused.
func TestRedriveErrors(t *testing.T) {
	srv, q := startSQS(t)
	store := memory.New()
	storeRequests(t, store)
	o := newOps(t, store)
	_, err := q.Send(t.Context(), jobRecord(key("l1")))
	require.NoError(t, err)
	sum, err := sqsredrive.Run(t.Context(), sqsredrive.Config{Queue: q, Ops: o,
		Dispatch: func(context.Context, ops.Failure) error { return errors.New("invoke refused") }})
	require.NoError(t, err)
	require.Len(t, sum.Results, 1)
	require.ErrorContains(t, sum.Results[0].Err, "invoke refused")
	require.False(t, sum.Results[0].Deleted)
	require.Equal(t, "1", depth(t, q))

	gone, err := sqsredrive.NewQueue(sqsredrive.QueueConfig{URL: srv.URL() + "/000000000000/nope",
		AWS: aws.Config{Credentials: credentials.NewStaticCredentialsProvider("local", "local", "")}})
	require.NoError(t, err)
	_, err = sqsredrive.Run(t.Context(), sqsredrive.Config{Queue: gone, Ops: o})
	var sqsErr *sqsredrive.Error
	require.ErrorAs(t, err, &sqsErr)
	require.Equal(t, "AWS.SimpleQueueService.NonExistentQueue", sqsErr.Code)

	for _, c := range []struct {
		cfg  sqsredrive.Config
		want string
	}{
		{sqsredrive.Config{Ops: o}, "Queue is required"},
		{sqsredrive.Config{Queue: q}, "Ops is required"},
		{sqsredrive.Config{Queue: q, Ops: o, Max: -1}, "Max -1"},
		{sqsredrive.Config{Queue: q, Ops: o, Wait: time.Minute}, "Wait 1m0s"},
	} {
		_, err := sqsredrive.Run(t.Context(), c.cfg)
		require.ErrorContains(t, err, c.want)
	}
	for _, c := range []struct {
		cfg  sqsredrive.QueueConfig
		want string
	}{
		{sqsredrive.QueueConfig{URL: "sqs/queue"}, "want https://sqs.REGION.amazonaws.com/ACCOUNT/NAME"},
		{sqsredrive.QueueConfig{URL: "https://sqs.eu-west-1.amazonaws.com/1/q"}, "no AWS credentials"},
		{sqsredrive.QueueConfig{URL: "https://sqs.eu-west-1.amazonaws.com/1/q", Endpoint: "localhost",
			AWS: aws.Config{Credentials: credentials.NewStaticCredentialsProvider("a", "b", "")}}, `endpoint "localhost"`},
	} {
		_, err := sqsredrive.NewQueue(c.cfg)
		require.ErrorContains(t, err, c.want)
	}
	_, err = sqslocal.New(t.Context())
	require.ErrorContains(t, err, "already open", "one goaws per process")
}

// sameMessage is a queue whose one message comes back at every receive,
// as an SQS message does when its visibility timeout is shorter than a
// run; it gives up after 50 receives.
type sameMessage struct{ receives int }

func (q *sameMessage) Receive(context.Context, int, time.Duration) ([]sqsredrive.Message, error) {
	q.receives++
	if q.receives > 50 {
		return nil, errors.New("received 50 times: the run does not stop")
	}
	return []sqsredrive.Message{{ID: "m1", ReceiptHandle: fmt.Sprint("rh", q.receives), Body: jobRecord(key("l1"))}}, nil
}

func (q *sameMessage) Delete(context.Context, string) error { return errors.New("not deleted") }

// TestRunStopsWhenTheQueueComesRound: a message this run left, received
// again, ends the run; it is handled once.
func TestRunStopsWhenTheQueueComesRound(t *testing.T) {
	store := memory.New()
	storeRequests(t, store)
	q := &sameMessage{}
	sum, err := sqsredrive.Run(t.Context(), sqsredrive.Config{Queue: q, Ops: newOps(t, store)})
	require.NoError(t, err)
	require.Len(t, sum.Results, 1)
	require.Equal(t, ops.OutcomeLive, sum.Results[0].Redrive.Outcome)
	require.Equal(t, 2, q.receives)
}
