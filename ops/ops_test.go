package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/ops"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport"
)

// fixture is an App on a memory store with a failing and a succeeding
// async action, its embedded worker running.
type fixture struct {
	app   *streamer.App
	store *memory.Store
	ops   *ops.Ops
	alice streamer.Principal
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	store := memory.New()
	plugin := streamer.Plugin{Name: "t", Actions: []streamer.Action{
		{Name: "fail", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return nil, errors.New("boom")
			})},
		{Name: "ok", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return "done", nil
			})},
	}}
	nop := transport.SenderFunc(func(context.Context, string, string, []byte) error { return nil })
	app, err := streamer.New(streamer.Config{Store: store, Sender: nop, Plugins: []streamer.Plugin{plugin}})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, 0) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-done) })
	return &fixture{app: app, store: store, ops: ops.New(store, app), alice: streamer.Principal{Subject: "alice", Tenant: "acme"}}
}

func (f *fixture) key(id string) storage.Key {
	return storage.Key{Tenant: f.alice.Tenant, Subject: f.alice.Subject, ID: id}
}

// submit stores a request and waits until it reaches status (none: no
// wait).
func (f *fixture) submit(t *testing.T, action, id string, opts streamer.SubmitOptions, status storage.Status) {
	t.Helper()
	opts.IdempotencyKey = id
	_, err := f.app.Submit(t.Context(), f.alice, action, json.RawMessage(`{"n":1}`), opts)
	require.NoError(t, err)
	if status != "" {
		f.wait(t, f.key(id), status)
	}
}

func (f *fixture) wait(t *testing.T, k storage.Key, status storage.Status) {
	t.Helper()
	require.Eventually(t, func() bool {
		r, err := f.store.GetRequest(t.Context(), k)
		return err == nil && r.Status == status
	}, 30*time.Second, 10*time.Millisecond, "%s never became %s", k.ID, status)
}

func terminals(t *testing.T, s storage.Store, k storage.Key) int {
	t.Helper()
	evs, err := s.ReadEvents(t.Context(), k, 0, 0)
	require.NoError(t, err)
	n := 0
	for _, ev := range evs {
		if ev.Terminal() {
			n++
		}
	}
	return n
}

func TestListInspect(t *testing.T) {
	f := newFixture(t)
	f.submit(t, "fail", "f1", streamer.SubmitOptions{}, storage.StatusFailed)
	f.submit(t, "ok", "o1", streamer.SubmitOptions{}, storage.StatusSucceeded)
	f.submit(t, "ok", "later", streamer.SubmitOptions{NotBefore: time.Now().Add(time.Hour)}, "")

	page, err := f.ops.List(t.Context(), ops.Query{Status: "failed", Within: time.Hour})
	require.NoError(t, err)
	require.Len(t, page.Requests, 1)
	require.Equal(t, "f1", page.Requests[0].Key.ID)
	require.Equal(t, "PROCESSING_FAILED", page.Requests[0].Error.Code)

	page, err = f.ops.List(t.Context(), ops.Query{Status: "queued", Action: "ok", Tenant: "acme"})
	require.NoError(t, err)
	require.Len(t, page.Requests, 1)
	require.Equal(t, "later", page.Requests[0].Key.ID)
	page, err = f.ops.List(t.Context(), ops.Query{Status: "queued", Tenant: "other"})
	require.NoError(t, err)
	require.Empty(t, page.Requests)
	page, err = f.ops.List(t.Context(), ops.Query{Status: ops.StatusRetrying})
	require.NoError(t, err)
	require.Empty(t, page.Requests, "a request that never ran is not retrying")

	_, err = f.ops.List(t.Context(), ops.Query{Status: "stuck"})
	require.ErrorContains(t, err, `unknown status "stuck"`)

	d, err := f.ops.Inspect(t.Context(), f.key("f1"))
	require.NoError(t, err)
	require.Equal(t, storage.StatusFailed, d.Request.Status)
	require.Equal(t, 1, d.Request.Attempt)
	require.Equal(t, "alice", d.Principal.Subject)
	require.NotEmpty(t, d.Events)
	require.Equal(t, "error", d.Events[len(d.Events)-1].Type)
	_, err = f.ops.Inspect(t.Context(), f.key("nope"))
	require.ErrorIs(t, err, storage.ErrNotFound)
}

// TestRetrying: a queued request that has run before is listed as
// retrying.
func TestRetrying(t *testing.T) {
	store := memory.New()
	k := storage.Key{Tenant: "t", Subject: "s", ID: "r"}
	now := time.Now()
	require.NoError(t, store.CreateRequest(t.Context(), storage.Request{Key: k, Action: "a", Status: storage.StatusQueued, CreatedAt: now, UpdatedAt: now}))
	_, err := store.ClaimRequest(t.Context(), k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)
	require.NoError(t, store.RequeueRequest(t.Context(), k, 1, now.Add(time.Minute)))
	page, err := ops.New(store, nil).List(t.Context(), ops.Query{Status: ops.StatusRetrying})
	require.NoError(t, err)
	require.Len(t, page.Requests, 1)
	require.Equal(t, 1, page.Requests[0].Attempt)
}

func TestCancel(t *testing.T) {
	f := newFixture(t)
	f.submit(t, "ok", "q", streamer.SubmitOptions{NotBefore: time.Now().Add(time.Hour)}, "")
	r, err := f.ops.Cancel(t.Context(), f.key("q"))
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceled, r.Status, "a queued request nobody runs is finished at once")
	require.Equal(t, 1, terminals(t, f.store, f.key("q")))
	r, err = f.ops.Cancel(t.Context(), f.key("q"))
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceled, r.Status)
	require.Equal(t, 1, terminals(t, f.store, f.key("q")), "canceling again stores nothing")
	_, err = f.ops.Cancel(t.Context(), f.key("nope"))
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = ops.New(f.store, nil).Cancel(t.Context(), f.key("q"))
	require.ErrorIs(t, err, ops.ErrNoApp)
}

func TestRetry(t *testing.T) {
	f := newFixture(t)
	f.submit(t, "fail", "f1", streamer.SubmitOptions{Metadata: map[string]string{"m": "v"}}, storage.StatusFailed)
	res, err := f.ops.Retry(t.Context(), f.key("f1"))
	require.NoError(t, err)
	require.Equal(t, "f1:retry-1", res.ID)
	require.False(t, res.Existing)
	f.wait(t, f.key("f1:retry-1"), storage.StatusFailed)
	again, err := f.ops.Retry(t.Context(), f.key("f1"))
	require.NoError(t, err)
	require.True(t, again.Existing, "retrying the same failure again finds the first retry")
	require.Equal(t, 1, terminals(t, f.store, f.key("f1")), "the original keeps its one terminal event")
	r, err := f.store.GetRequest(t.Context(), f.key("f1:retry-1"))
	require.NoError(t, err)
	require.Equal(t, "fail", r.Action)
	require.JSONEq(t, `{"n":1}`, string(r.Payload))
	require.Equal(t, "v", r.Metadata["m"])

	res, err = f.ops.Retry(t.Context(), f.key("f1:retry-1"))
	require.NoError(t, err)
	require.Equal(t, "f1:retry-2", res.ID)

	f.submit(t, "ok", "o1", streamer.SubmitOptions{}, storage.StatusSucceeded)
	_, err = f.ops.Retry(t.Context(), f.key("o1"))
	require.ErrorIs(t, err, ops.ErrNotFailed)
}

func TestRetryID(t *testing.T) {
	require.Equal(t, "a:retry-1", ops.RetryID("a"))
	require.Equal(t, "a:retry-10", ops.RetryID("a:retry-9"))
	require.Equal(t, "a:retry-x:retry-1", ops.RetryID("a:retry-x"))
}

// jobRecord is a failure-queue message as Lambda writes it for a job that
// failed on every attempt (an asynchronous invocation record).
func jobRecord(k storage.Key) []byte {
	return []byte(`{"version":"1.0","timestamp":"2026-12-07T18:16:05.568Z",` +
		`"requestContext":{"requestId":"e4b46cbf-b738-4a6d-9f8f-0b4e6f1d2a3c","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:streamer-dev-processor:$LATEST","condition":"RetriesExhausted","approximateInvokeCount":3},` +
		`"requestPayload":{"streamer_job":{"key":` + mustJSON(k.String()) + `}},` +
		`"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},` +
		`"responsePayload":{"errorMessage":"lambdaapp: request r is not due before the deadline","errorType":"wrapError"}}`)
}

// streamRecord is a failure-queue message as Lambda writes it for a
// DynamoDB stream batch that failed on every retry.
const streamRecord = `{"requestContext":{"requestId":"316aa6d0-8154-xmpl-9af7-85d5f4a6bc81","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:streamer-dev-processor","condition":"RetryAttemptsExhausted","approximateInvokeCount":3},` +
	`"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2026-12-07T18:16:05.568Z",` +
	`"DDBStreamBatchInfo":{"shardId":"shardId-00000001573689847184-864758bb","startSequenceNumber":"800000000003126276362","endSequenceNumber":"800000000003126276362","approximateArrivalOfFirstRecord":"2026-12-07T18:15:05Z","approximateArrivalOfLastRecord":"2026-12-07T18:15:05Z","batchSize":1,"streamArn":"arn:aws:dynamodb:us-east-1:123456789012:table/streamer-dev/stream/2026-12-07T00:00:00.000"}}`

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestParseFailure(t *testing.T) {
	k := storage.Key{Tenant: "a|b", Subject: "s", ID: "r"}
	fl, err := ops.ParseFailure(jobRecord(k))
	require.NoError(t, err)
	require.Equal(t, k, fl.Key)
	require.Equal(t, "RetriesExhausted", fl.Condition)
	require.Equal(t, 3, fl.Attempts)
	require.Contains(t, fl.Error, "not due")
	require.JSONEq(t, `{"streamer_job":{"key":`+mustJSON(k.String())+`}}`, string(fl.Job))

	fl, err = ops.ParseFailure([]byte(streamRecord))
	require.NoError(t, err)
	require.True(t, fl.StreamBatch)
	require.Equal(t, "RetryAttemptsExhausted", fl.Condition)

	for _, bad := range []string{`nope`, `{}`, `{"requestPayload":{"other":1}}`, `{"requestPayload":{"streamer_job":{"key":"no-bars"}}}`} {
		_, err := ops.ParseFailure([]byte(bad))
		require.ErrorIs(t, err, ops.ErrNotFailureRecord, bad)
	}
}

func TestRedrive(t *testing.T) {
	f := newFixture(t)
	f.submit(t, "ok", "later", streamer.SubmitOptions{NotBefore: time.Now().Add(time.Hour)}, "")
	f.submit(t, "fail", "f1", streamer.SubmitOptions{}, storage.StatusFailed)
	f.submit(t, "ok", "o1", streamer.SubmitOptions{}, storage.StatusSucceeded)
	var dispatched atomic.Int32
	dispatch := func(_ context.Context, fl ops.Failure) error {
		require.Equal(t, "later", fl.Key.ID)
		dispatched.Add(1)
		return nil
	}
	ctx := t.Context()
	res, err := f.ops.Redrive(ctx, jobRecord(f.key("later")), dispatch, false)
	require.NoError(t, err)
	require.Equal(t, ops.OutcomeRedriven, res.Outcome)
	require.EqualValues(t, 1, dispatched.Load())
	res, err = f.ops.Redrive(ctx, jobRecord(f.key("later")), nil, false)
	require.NoError(t, err)
	require.Equal(t, ops.OutcomeLive, res.Outcome)

	res, err = f.ops.Redrive(ctx, jobRecord(f.key("f1")), dispatch, false)
	require.NoError(t, err)
	require.Equal(t, ops.OutcomeFinished, res.Outcome)
	require.Equal(t, storage.StatusFailed, res.Status)
	res, err = f.ops.Redrive(ctx, jobRecord(f.key("f1")), dispatch, true)
	require.NoError(t, err)
	require.Equal(t, ops.OutcomeRetried, res.Outcome)
	require.Equal(t, "f1:retry-1", res.RetryID)

	res, err = f.ops.Redrive(ctx, jobRecord(f.key("o1")), dispatch, true)
	require.NoError(t, err)
	require.Equal(t, ops.OutcomeFinished, res.Outcome)
	res, err = f.ops.Redrive(ctx, jobRecord(f.key("gone")), dispatch, true)
	require.NoError(t, err)
	require.Equal(t, ops.OutcomeGone, res.Outcome)
	res, err = f.ops.Redrive(ctx, []byte(streamRecord), dispatch, true)
	require.NoError(t, err)
	require.Equal(t, ops.OutcomeStreamBatch, res.Outcome)
	require.EqualValues(t, 1, dispatched.Load())
	_, err = f.ops.Redrive(ctx, []byte(`{"x":1}`), dispatch, true)
	require.ErrorIs(t, err, ops.ErrNotFailureRecord)
}

func TestPage(t *testing.T) {
	f := newFixture(t)
	f.submit(t, "fail", "f1", streamer.SubmitOptions{}, storage.StatusFailed)
	h := ops.Handler(f.ops, "sekret")
	get := func(target, remote string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}
	w := get("/ops?s=sekret&status=failed", "127.0.0.1:5000")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), ">f1</a>")
	require.Contains(t, w.Body.String(), "PROCESSING_FAILED")
	w = get("/ops/request?s=sekret&key="+f.key("f1").String(), "[::1]:5000")
	require.Equal(t, http.StatusOK, w.Code)
	require.Contains(t, w.Body.String(), "<h1>f1</h1>")
	require.Contains(t, w.Body.String(), "<td>error</td>")

	require.Equal(t, http.StatusUnauthorized, get("/ops?status=failed", "127.0.0.1:5000").Code)
	require.Equal(t, http.StatusUnauthorized, get("/ops?s=wrong", "127.0.0.1:5000").Code)
	require.Equal(t, http.StatusForbidden, get("/ops?s=sekret", "10.0.0.1:5000").Code)
	require.Equal(t, http.StatusBadRequest, get("/ops?s=sekret&status=bogus", "127.0.0.1:5000").Code)
	require.Equal(t, http.StatusBadRequest, get("/ops?s=sekret&within=soon", "127.0.0.1:5000").Code)
	require.Equal(t, http.StatusNotFound, get("/ops/request?s=sekret&key="+f.key("nope").String(), "127.0.0.1:5000").Code)
	req := httptest.NewRequest(http.MethodPost, "/ops?s=sekret", nil)
	req.RemoteAddr = "127.0.0.1:5000"
	rw := httptest.NewRecorder()
	h.ServeHTTP(rw, req)
	require.Equal(t, http.StatusMethodNotAllowed, rw.Code, "the page is read-only")
}

// TestParseAWSLocalFailure: the records the local Lambda service writes
// for a failed job (awslocal.FailureRecord) name their request.
func TestParseAWSLocalFailure(t *testing.T) {
	k := storage.Key{Tenant: "acme", Subject: "a|b", ID: "r1"}
	rec, err := awslocal.FailureRecord(awslocal.Failure{
		Function: "processor", RequestID: "req-1", Payload: []byte(`{"streamer_job":{"key":` + mustJSON(k.String()) + `}}`),
		Err: errors.New("lambdaapp: boom"), Attempts: 3, Condition: awslocal.ConditionRetriesExhausted,
	}, "arn:aws:lambda:us-east-1:000000000000:function:processor", time.Now())
	require.NoError(t, err)
	f, err := ops.ParseFailure(rec)
	require.NoError(t, err)
	require.Equal(t, k, f.Key)
	require.Equal(t, "RetriesExhausted", f.Condition)
	require.Equal(t, 3, f.Attempts)
	require.Equal(t, "lambdaapp: boom", f.Error)
}
