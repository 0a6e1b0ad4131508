package lambdaapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// invokes records the processor's Invoke calls, failing those it is told to.
type invokes struct {
	mu    sync.Mutex
	calls []*lambda.InvokeInput
	fail  bool
}

func (i *invokes) Invoke(_ context.Context, in *lambda.InvokeInput, _ ...func(*lambda.Options)) (*lambda.InvokeOutput, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.calls = append(i.calls, in)
	if i.fail {
		return nil, errors.New("TooManyRequestsException: rate exceeded")
	}
	return &lambda.InvokeOutput{StatusCode: 202}, nil
}

// The stream handler only dispatches: one asynchronous Invoke of the
// processor itself per queued request, carrying the request's job, and no
// run; the job then runs in its own invocation. Records it cannot dispatch
// alone are reported failed.
func TestDispatchIsOneInvokePerRequest(t *testing.T) {
	t.Parallel()
	inv := &invokes{}
	s := newStack(t)
	proc := s.build(lambdaapp.Processor, lambdaapp.Options{Invoker: inv})
	c, id := s.open(t, "fay")
	s.send(t, id, `{"action":"delay","id":"d-1","payload":{"ms":10,"steps":2}}`)
	require.Equal(t, streamer.TypeAcknowledgment, lambdatest.Read(t, c).Type)
	all, insert := s.capture(t, isQueuedInsert("d-1"))

	// The whole stream (connection items and all): only the queued
	// request is dispatched.
	resp, err := proc.Handle(context.Background(), json.RawMessage(all))
	require.NoError(t, err)
	require.Equal(t, events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{}}, resp)
	require.Len(t, inv.calls, 1, "one Invoke per queued request")
	call := inv.calls[0]
	require.Equal(t, "processor", aws.ToString(call.FunctionName), "the processor invokes itself")
	require.Equal(t, types.InvocationTypeEvent, call.InvocationType, "asynchronously")
	var job lambdaapp.Job
	require.NoError(t, json.Unmarshal(call.Payload, &job))
	require.NotNil(t, job.Job)
	require.Contains(t, job.Job.Key, "|d-1")

	// Nothing ran yet; the job does, in its own invocation.
	out, err := proc.Handle(context.Background(), call.Payload)
	require.NoError(t, err)
	require.Nil(t, out)
	got := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	require.Equal(t, "d-1", got[len(got)-1].RequestID)

	// An Invoke that fails (throttled) reports its record, for the stream
	// to deliver again.
	inv.fail = true
	ev := decode(t, insert)
	resp, err = proc.Handle(context.Background(), json.RawMessage(insert))
	require.NoError(t, err)
	require.Equal(t, events.DynamoDBEventResponse{BatchItemFailures: []events.DynamoDBBatchItemFailure{
		{ItemIdentifier: ev.Records[0].Change.SequenceNumber},
	}}, resp)

	// Events that are neither are refused with a clear error.
	_, err = proc.Handle(context.Background(), json.RawMessage(`{"hello":1}`))
	require.ErrorContains(t, err, "neither a DynamoDB stream batch")
	_, err = proc.Handle(context.Background(), json.RawMessage(`{"streamer_job":{"key":"not a key"}}`))
	require.ErrorContains(t, err, "job key")
}

// A job whose request is not due before the invocation's deadline (a retry
// backoff longer than what is left) hands it to a new invocation of the
// processor just before the deadline, instead of failing or running late.
func TestRunHandsALateRequestOn(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	inv := &invokes{}
	s := newStack(t, flaky(time.Hour, &runs))
	proc := s.build(lambdaapp.Processor, lambdaapp.Options{Invoker: inv})
	_, job := s.queue(t, "gus", "flaky", "late-1")

	// The first run fails with a retryable error: re-queued an hour on.
	_, err := proc.Handle(context.Background(), job)
	require.NoError(t, err)
	require.Equal(t, int32(1), runs.Load())
	require.Empty(t, inv.calls)

	// A job with a short deadline hands it on just before the deadline.
	ctx, cancel := context.WithTimeout(context.Background(), streamer.StopMargin+2*time.Second)
	defer cancel()
	_, err = proc.Handle(ctx, job)
	require.NoError(t, err)
	require.NoError(t, ctx.Err(), "it returned before its deadline")
	require.Len(t, inv.calls, 1, "handed to a new invocation")
	require.JSONEq(t, string(job), string(inv.calls[0].Payload))
	require.Equal(t, types.InvocationTypeEvent, inv.calls[0].InvocationType)
	require.Equal(t, int32(1), runs.Load(), "not run before it is due")
}

// A duplicate job of a request that another live invocation holds waits
// once for the holder's lease and, finding it renewed, returns without
// running it (the holder is alive); it does not wait out its deadline.
func TestRunLeavesALiveHolderAlone(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	inv := &invokes{}
	s := newStack(t, flaky(time.Hour, &runs))
	proc := s.build(lambdaapp.Processor, lambdaapp.Options{Invoker: inv})
	k, job := s.queue(t, "hal", "flaky", "held-1")

	// The live holder: claimed with a 1 s lease that it keeps renewing.
	store, err := dynamodb.New(dynamodb.Config{Client: s.aws.DB, Table: s.table})
	require.NoError(t, err)
	now := time.Now()
	held, err := store.ClaimRequest(context.Background(), k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Second)})
	require.NoError(t, err)
	stop := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = store.ExtendLease(context.Background(), k, held.Attempt, time.Now().Add(time.Second))
			}
		}
	}()
	defer func() { close(stop); <-renewed }()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	_, err = proc.Handle(ctx, job)
	require.NoError(t, err)
	require.Less(t, time.Since(start), 5*time.Minute, "it did not wait out its deadline")
	require.Zero(t, runs.Load(), "the holder's request did not run here")
	require.Empty(t, inv.calls)
	r, err := store.GetRequest(context.Background(), k)
	require.NoError(t, err)
	require.Equal(t, held.Attempt, r.Attempt, "not taken over")
}

// queue sends an async request as subject, waits for its acknowledgment and
// its queued stream record, and returns its key and its processor job.
func (s *stack) queue(t *testing.T, subject, action, id string) (storage.Key, []byte) {
	t.Helper()
	c, conn := s.open(t, subject)
	s.send(t, conn, fmt.Sprintf(`{"action":%q,"id":%q}`, action, id))
	require.Equal(t, streamer.TypeAcknowledgment, lambdatest.Read(t, c).Type)
	_, insert := s.capture(t, isQueuedInsert(id))
	k, ok, err := lambdaapp.QueuedKey(decode(t, insert).Records[0])
	require.NoError(t, err)
	require.True(t, ok)
	job, err := json.Marshal(lambdaapp.NewJob(k))
	require.NoError(t, err)
	return k, job
}
