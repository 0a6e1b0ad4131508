package lambdaapp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// The reaper tests' settings: short, so a stall shows within seconds, and
// at most one stall before a request is ended.
const (
	reapStallTimeout = 2 * time.Second
	reapLease        = time.Second
)

// newReapStack is a stack whose functions all have the reaper tests'
// settings, as serverless.yml gives every function the same ones.
func newReapStack(t *testing.T, opts lambdaapp.Options) *stack {
	t.Helper()
	opts.Lease = reapLease
	return newStackEnv(t, opts, map[string]string{
		lambdaapp.EnvStallTimeout: reapStallTimeout.String(),
		lambdaapp.EnvMaxStalls:    "1",
	})
}

// scheduled is the event an EventBridge schedule invokes the reaper with.
func scheduled() events.EventBridgeEvent {
	return events.EventBridgeEvent{
		Version: "0", ID: "reap-test", DetailType: "Scheduled Event", Source: "aws.events",
		Region: "us-east-1", Time: time.Now().UTC(), Detail: []byte("{}"),
	}
}

func (s *stack) store(t *testing.T) *dynamodb.Store {
	t.Helper()
	// The Lambdas' default limits, so a claim here holds a slot as a
	// processor's does.
	store, err := dynamodb.New(dynamodb.Config{Client: s.aws.DB, Table: s.table, Limits: dynamodb.Limits{
		MaxPending: streamer.DefaultMaxPending, KeyConcurrency: lambdaapp.DefaultKeyConcurrency,
	}})
	require.NoError(t, err)
	return store
}

// reapOne runs the reaper, as its schedule would, until a run reaps a
// request, and requires that run to reap exactly one. The deadline leaves
// room for the stall timeout on a loaded machine.
func (s *stack) reapOne(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(reapStallTimeout + 2*lambdatest.Wait)
	for {
		res, err := s.reaper.Reap(context.Background(), scheduled())
		require.NoError(t, err)
		if res.Reaped > 0 {
			require.Equal(t, 1, res.Reaped, "one stalled request")
			return
		}
		require.True(t, time.Now().Before(deadline), "nothing was reaped within %v", reapStallTimeout+2*lambdatest.Wait)
		time.Sleep(100 * time.Millisecond)
	}
}

// isRequeue matches the stream record of a re-queue of the request with
// id: its modification from running back to queued, which the stream
// filter (dynamodb.StreamFilterPattern) passes to the processor.
func isRequeue(id string) func(types.Record) bool {
	return func(r types.Record) bool {
		return r.EventName == types.OperationTypeModify && lambdatest.Str(r.Dynamodb.NewImage, dynamodb.AttrSK) == "REQ" &&
			lambdatest.Str(r.Dynamodb.NewImage, "status") == "queued" && lambdatest.Str(r.Dynamodb.OldImage, "status") == "running" &&
			strings.HasSuffix(lambdatest.Str(r.Dynamodb.NewImage, dynamodb.AttrPK), "|"+id)
	}
}

// requeueRecord waits for the n-th re-queue record of id on the table's
// stream and returns it as Lambda delivers it, after checking that the
// processor's filter passes it.
func (s *stack) requeueRecord(t *testing.T, id string, n int) events.DynamoDBEvent {
	t.Helper()
	recs := s.aws.ReadStream(t, s.table, func(recs []types.Record) bool { return len(find(recs, isRequeue(id))) >= n })
	requeues := find(recs, isRequeue(id))
	require.Len(t, requeues, n, "re-queues of %s", id)
	ev := decode(t, lambdatest.EventJSON(t, requeues[n-1:n], s.aws.StreamARN(t, s.table), s.aws.Region))
	k, ok, err := lambdaapp.QueuedKey(ev.Records[0])
	require.NoError(t, err)
	require.True(t, ok, "the processor's filter passes a re-queue")
	require.Equal(t, id, k.ID)
	return ev
}

// crash claims a request as a processor that then dies does: with a short
// lease, never renewed, and nothing written after.
func crash(t *testing.T, store *dynamodb.Store, k storage.Key) storage.Request {
	t.Helper()
	now := time.Now()
	r, err := store.ClaimRequest(context.Background(), k, storage.Claim{Now: now, LeaseUntil: now.Add(reapLease)})
	require.NoError(t, err)
	return r
}

// checkLog requires k's event log to hold seqs 1, 2, ... with exactly one
// terminal event, the last, of type typ.
func checkLog(t *testing.T, store *dynamodb.Store, k storage.Key, typ string) []storage.Event {
	t.Helper()
	evs, err := store.ReadEvents(context.Background(), k, 0, 0)
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	terminal := 0
	for i, e := range evs {
		require.Equal(t, int64(i+1), e.Seq, "contiguous seqs")
		if e.Terminal() {
			terminal++
		}
	}
	require.Equal(t, 1, terminal, "exactly one terminal event")
	require.Equal(t, typ, evs[len(evs)-1].Type)
	return evs
}

// checkReceived requires the client's messages of one request, read up to
// its terminal one, to carry seqs 1, 2, ... and to end with one terminal
// event.
func checkReceived(t *testing.T, got []streamer.Message) {
	t.Helper()
	var seq int64
	for i, m := range got {
		if m.Seq == 0 {
			continue
		}
		seq++
		require.Equal(t, seq, m.Seq, "contiguous seqs as received: %+v", got)
		require.Equal(t, i == len(got)-1, m.Terminal(), "only the last message is terminal")
	}
	require.Positive(t, seq)
}

// openAsync connects subject's client and sends an async request, which the
// router queues.
func (s *stack) openAsync(t *testing.T, subject, id string) (*websocket.Conn, storage.Key) {
	t.Helper()
	c, conn := s.open(t, subject)
	s.send(t, conn, `{"action":"delay","id":"`+id+`","payload":{"ms":100,"steps":2}}`)
	ack := lambdatest.Read(t, c)
	require.Equal(t, streamer.TypeAcknowledgment, ack.Type)
	require.Equal(t, "queued", ack.Status)
	return c, storage.Key{Subject: subject, ID: id}
}

// A request whose stream record never reached the processor (the batch
// failed past its retries, or the mapping was disabled) is re-queued by the
// reaper, which the stream delivers, and then runs to completion once. The
// lost record arriving late after all runs nothing again.
func TestReaperRequeuesLostRecord(t *testing.T) {
	t.Parallel()
	s := newReapStack(t, lambdaapp.Options{})
	ctx := context.Background()
	store := s.store(t)
	c, key := s.openAsync(t, "rita", "lost-1")
	_, insert := s.capture(t, isQueuedInsert("lost-1")) // ... and dropped

	s.reapOne(t)
	req, err := store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, req.Status)
	require.Equal(t, 1, req.Stalls, "the rescue counts a stall")

	require.Empty(t, s.process(t, ctx, s.requeueRecord(t, "lost-1", 1)))
	got := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	checkReceived(t, got)
	require.JSONEq(t, `{"ms":100,"steps":2}`, string(got[len(got)-1].Result))
	evs := checkLog(t, store, key, streamer.TypeComplete)

	require.Empty(t, s.process(t, ctx, decode(t, insert)))
	again, err := store.ReadEvents(ctx, key, 0, 0)
	require.NoError(t, err)
	require.Len(t, again, len(evs), "the late record ran nothing")
	res, err := s.reaper.Reap(ctx, scheduled())
	require.NoError(t, err)
	require.Zero(t, res.Reaped, "a finished request is not due")
}

// A request whose processor died holding it (claimed with a short lease,
// never renewed) is taken over once its lease has passed by more than the
// stall timeout: the reaper's claim fences the dead run out, its re-queue
// reaches the processor, and the request completes once.
func TestReaperTakesOverCrashedRun(t *testing.T) {
	t.Parallel()
	s := newReapStack(t, lambdaapp.Options{})
	ctx := context.Background()
	store := s.store(t)
	c, key := s.openAsync(t, "sam", "crash-1")
	s.capture(t, isQueuedInsert("crash-1"))
	zombie := crash(t, store, key)

	s.reapOne(t)
	// The dead run, should it wake, can no longer write.
	err := store.AppendEvent(ctx, key, zombie.Attempt, storage.Event{Seq: 1, Type: streamer.TypeProgress, Data: []byte(`{}`), CreatedAt: time.Now()}, zombie.SubsVersion)
	require.ErrorIs(t, err, storage.ErrConflict, "the reaper's claim fences the dead run out")

	require.Empty(t, s.process(t, ctx, s.requeueRecord(t, "crash-1", 1)))
	got := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	checkReceived(t, got)
	checkLog(t, store, key, streamer.TypeComplete)
	req, err := store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusSucceeded, req.Status)
	require.Equal(t, 1, req.Stalls)
	require.Equal(t, zombie.Attempt+2, req.Attempt, "the reaper's claim, then the processor's")
}

// A request that keeps stalling (its processor dies every time, here with
// MaxStalls 1) is ended by the reaper with PROCESSING_FAILED, which its
// subscriber receives, and is never left running: nothing is due after,
// and its records delivered again run nothing.
func TestReaperEndsRequestThatKeepsStalling(t *testing.T) {
	t.Parallel()
	s := newReapStack(t, lambdaapp.Options{})
	ctx := context.Background()
	store := s.store(t)
	c, key := s.openAsync(t, "tess", "stall-1")
	s.capture(t, isQueuedInsert("stall-1"))

	crash(t, store, key)
	s.reapOne(t) // first stall: re-queued
	s.requeueRecord(t, "stall-1", 1)
	crash(t, store, key) // the delivery's processor dies too
	s.reapOne(t)         // second stall, more than MaxStalls: ended

	got := lambdatest.ReadUntil(t, c, streamer.TypeError)
	checkReceived(t, got)
	final := got[len(got)-1]
	require.Equal(t, "stall-1", final.RequestID)
	require.NotNil(t, final.Error)
	require.Equal(t, streamer.CodeProcessingFailed, final.Error.Code)
	checkLog(t, store, key, streamer.TypeError)

	req, err := store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusFailed, req.Status)
	require.Equal(t, 2, req.Stalls)
	res, err := s.reaper.Reap(ctx, scheduled())
	require.NoError(t, err)
	require.Zero(t, res.Reaped)

	// Every queued record of the request, delivered again: nothing runs.
	all, _ := s.capture(t, isRequeue("stall-1"))
	require.Empty(t, s.process(t, ctx, decode(t, all)))
	req, err = store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusFailed, req.Status)
	checkLog(t, store, key, streamer.TypeError)
}

// A request queued moments ago is not stalled: the reaper leaves it to the
// stream's delivery until the stall timeout has passed.
func TestReaperLeavesFreshRequest(t *testing.T) {
	t.Parallel()
	// A new request has a zero NotBefore: it is due from its CreatedAt
	// (storage.Due, and the DynamoDB status index's sort key).
	s := newReapStack(t, lambdaapp.Options{})
	_, key := s.openAsync(t, "uma", "fresh-1")
	queued := time.Now()
	res, err := s.reaper.Reap(context.Background(), scheduled())
	require.NoError(t, err)
	if time.Since(queued) < reapStallTimeout/2 { // else the machine was too slow to tell
		require.Zero(t, res.Reaped, "a request queued just now is not stalled")
		req, err := s.store(t).GetRequest(context.Background(), key)
		require.NoError(t, err)
		require.Zero(t, req.Stalls)
	}
}
