package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/storage/dynamodb/dynamodbtest"
	"github.com/streamer-go/streamer/transport"
)

// opsPlugins serves an async action that fails and one that succeeds.
func opsPlugins(context.Context, streamer.Env) ([]streamer.Plugin, error) {
	return []streamer.Plugin{{Name: "opstest", Actions: []streamer.Action{
		{Name: "fail", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return nil, errors.New("boom")
			})},
		{Name: "ok", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return "done", nil
			})},
	}}}, nil
}

var opsAlice = streamer.Principal{Subject: "alice", Tenant: "acme"}

func opsKey(id string) storage.Key { return storage.Key{Tenant: "acme", Subject: "alice", ID: id} }

// runOpsCmd runs `streamer ops ARGS` and returns its exit code and output.
func runOpsCmd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(t.Context(), append([]string{"ops"}, args...), &out, &errOut, opsPlugins)
	return code, out.String(), errOut.String()
}

func opsTestApp(t *testing.T, store storage.Store) *streamer.App {
	t.Helper()
	plugins, err := opsPlugins(t.Context(), streamer.Env{})
	require.NoError(t, err)
	nop := transport.SenderFunc(func(context.Context, string, string, []byte) error { return nil })
	app, err := streamer.New(streamer.Config{Store: store, Sender: nop, Plugins: plugins})
	require.NoError(t, err)
	return app
}

func waitStatus(t *testing.T, s storage.Store, k storage.Key, st storage.Status) {
	t.Helper()
	require.Eventually(t, func() bool {
		r, err := s.GetRequest(t.Context(), k)
		return err == nil && r.Status == st
	}, 30*time.Second, 10*time.Millisecond, "%s never became %s", k.ID, st)
}

func countTerminals(t *testing.T, s storage.Store, k storage.Key) int {
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

// failureRecord is a failure-queue message body as Lambda writes it for a
// processor job that failed on every attempt.
func failureRecord(k storage.Key) string {
	key, _ := json.Marshal(k.String())
	return `{"version":"1.0","timestamp":"2026-12-07T18:16:05.568Z","requestContext":{"requestId":"e4b46cbf-b738-4a6d-9f8f-0b4e6f1d2a3c",` +
		`"functionArn":"arn:aws:lambda:us-east-1:123456789012:function:streamer-dev-processor:$LATEST","condition":"RetriesExhausted","approximateInvokeCount":3},` +
		`"requestPayload":{"streamer_job":{"key":` + string(key) + `}},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},` +
		`"responsePayload":{"errorMessage":"lambdaapp: boom","errorType":"wrapError"}}`
}

const streamFailureRecord = `{"requestContext":{"requestId":"316aa6d0-8154-xmpl-9af7-85d5f4a6bc81","functionArn":"arn:aws:lambda:us-east-1:123456789012:function:streamer-dev-processor","condition":"RetryAttemptsExhausted","approximateInvokeCount":3},"responseContext":{"statusCode":200,"executedVersion":"$LATEST","functionError":"Unhandled"},"version":"1.0","timestamp":"2026-12-07T18:16:05.568Z","DDBStreamBatchInfo":{"shardId":"shardId-00000001573689847184-864758bb","startSequenceNumber":"800000000003126276362","endSequenceNumber":"800000000003126276362","approximateArrivalOfFirstRecord":"2026-12-07T18:15:05Z","approximateArrivalOfLastRecord":"2026-12-07T18:15:05Z","batchSize":1,"streamArn":"arn:aws:dynamodb:us-east-1:123456789012:table/streamer-dev/stream/2026-12-07T00:00:00.000"}}`

// sqsReceive wraps bodies as `aws sqs receive-message` prints them.
func sqsReceive(bodies ...string) string {
	type msg struct{ MessageId, ReceiptHandle, Body string }
	var ms []msg
	for i, b := range bodies {
		ms = append(ms, msg{MessageId: fmt.Sprint("m", i), ReceiptHandle: fmt.Sprint("rh", i), Body: b})
	}
	out, _ := json.Marshal(map[string]any{"Messages": ms})
	return string(out)
}

func TestOpsUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"frob"}, `unknown command "frob"`},
		{[]string{"inspect"}, "missing KEY"},
		{[]string{"inspect", "nokey"}, `KEY "nokey": want TENANT|SUBJECT|ID`},
		{[]string{"cancel", "a|b|c", "extra"}, `unexpected argument "extra"`},
		{[]string{"list", "--status", "bogus"}, `--status "bogus"`},
		{[]string{"list", "--limit", "0"}, "--limit 0: must be 1 to 100"},
		{[]string{"list", "--within", "-1h"}, "--within -1h0m0s: must be positive"},
		{[]string{"redrive", "--function", "p"}, "--function needs --table"},
		{[]string{"cancel", "a|b|c", "--endpoint", "http://127.0.0.1:1"}, "--endpoint needs --table"},
	} {
		code, _, stderr := runOpsCmd(t, c.args...)
		require.Equal(t, exitUsage, code, "%v", c.args)
		require.Contains(t, stderr, c.want, "%v", c.args)
	}
	code, _, stderr := runOpsCmd(t, "list", "--data-dir", t.TempDir())
	require.Equal(t, exitFailed, code)
	require.Contains(t, stderr, "no database")
}

// TestOpsDataDir runs every ops command against an embedded data dir.
func TestOpsDataDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "streamer.db")
	store, err := bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	app := opsTestApp(t, store)
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, 0) }()
	for _, s := range []struct {
		action, id string
		notBefore  time.Time
		want       storage.Status
	}{{"fail", "f1", time.Time{}, storage.StatusFailed}, {"ok", "o1", time.Time{}, storage.StatusSucceeded}, {"ok", "later", time.Now().Add(time.Hour), storage.StatusQueued}} {
		_, err := app.Submit(t.Context(), opsAlice, s.action, json.RawMessage(`{"n":1}`), streamer.SubmitOptions{IdempotencyKey: s.id, NotBefore: s.notBefore})
		require.NoError(t, err)
		waitStatus(t, store, opsKey(s.id), s.want)
	}
	stop()
	require.NoError(t, <-done)

	// While another process (here: a handle) holds the file, ops says so.
	code, _, stderr := runOpsCmd(t, "list", "--data-dir", dir)
	require.Equal(t, exitFailed, code)
	require.Contains(t, stderr, "in use, most likely by a running streamer dev")
	require.NoError(t, store.Close())

	code, stdout, stderr := runOpsCmd(t, "list", "--data-dir", dir, "--status", "failed", "--within", "1h")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "acme|alice|f1")
	require.Contains(t, stdout, "PROCESSING_FAILED")
	require.NotContains(t, stdout, "o1")

	code, stdout, stderr = runOpsCmd(t, "list", "--data-dir", dir, "--status", "queued", "--action", "ok", "--tenant", "acme", "--json")
	require.Equal(t, exitOK, code, stderr)
	var listed struct {
		Requests []struct {
			Key    string `json:"key"`
			Status string
		} `json:"requests"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &listed), stdout)
	require.Len(t, listed.Requests, 1)
	require.Equal(t, "acme|alice|later", listed.Requests[0].Key)

	code, stdout, stderr = runOpsCmd(t, "inspect", "acme|alice|f1", "--data-dir", dir)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "status         failed")
	require.Contains(t, stdout, `"type":"error"`)

	code, stdout, stderr = runOpsCmd(t, "cancel", "acme|alice|later", "--data-dir", dir)
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "later: canceled\n", stdout)

	code, stdout, stderr = runOpsCmd(t, "retry", "acme|alice|f1", "--data-dir", dir)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "retry acme|alice|f1:retry-1 submitted (queued)")
	code, _, stderr = runOpsCmd(t, "retry", "acme|alice|o1", "--data-dir", dir)
	require.Equal(t, exitFailed, code)
	require.Contains(t, stderr, "only a failed request can be retried")

	// Redrive real failure-queue records, as `aws sqs receive-message`
	// prints them, and as one body per line.
	file := filepath.Join(t.TempDir(), "messages.json")
	require.NoError(t, os.WriteFile(file, []byte(sqsReceive(failureRecord(opsKey("later")), failureRecord(opsKey("f1")), streamFailureRecord, failureRecord(opsKey("gone")))), 0o600))
	code, stdout, stderr = runOpsCmd(t, "redrive", file, "--data-dir", dir, "--retry-failed")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "message 1: acme|alice|later: finished canceled")
	require.Contains(t, stdout, "message 2: acme|alice|f1: failed: retried as f1:retry-1")
	require.Contains(t, stdout, "message 3: a stream batch (RetryAttemptsExhausted)")
	require.Contains(t, stdout, "message 4: acme|alice|gone: gone")
	require.NoError(t, os.WriteFile(file, []byte(failureRecord(opsKey("o1"))+"\nnot json\n"), 0o600))
	code, stdout, stderr = runOpsCmd(t, "redrive", file, "--data-dir", dir)
	require.Equal(t, exitFailed, code)
	require.Contains(t, stdout, "message 1: acme|alice|o1: finished succeeded")
	require.Contains(t, stderr, "message 2: ops: not a failure-queue record")

	// The retry runs when the runtime does; the original keeps one
	// terminal event.
	store, err = bolt.Open(path, bolt.Options{})
	require.NoError(t, err)
	defer store.Close() //nolint:errcheck // test cleanup
	app = opsTestApp(t, store)
	ctx, stop = context.WithCancel(t.Context())
	go func() { done <- app.Run(ctx, 0) }()
	waitStatus(t, store, opsKey("f1:retry-1"), storage.StatusFailed)
	stop()
	require.NoError(t, <-done)
	require.Equal(t, 1, countTerminals(t, store, opsKey("f1")))
	require.Equal(t, 1, countTerminals(t, store, opsKey("later")))
}

// TestOpsDynamoDB runs the ops commands against a DynamoDB Local table,
// redriving a live request's job by invoking the processor function of a
// local Lambda service.
func TestOpsDynamoDB(t *testing.T) {
	client, table := dynamodbtest.NewTable(t, "ops")
	store, err := dynamodb.New(dynamodb.Config{Client: client, Table: table})
	require.NoError(t, err)

	// The processor function: it records the jobs it gets.
	var (
		mu   sync.Mutex
		jobs []string
	)
	svc := awslocal.NewLambdaService(awslocal.LambdaServiceConfig{})
	require.NoError(t, svc.Register("processor", func(_ context.Context, payload []byte) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		jobs = append(jobs, string(payload))
		return []byte("null"), nil
	}, awslocal.FunctionConfig{}))
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = svc.Serve(ln) }()
	t.Cleanup(func() { _ = svc.Shutdown(context.Background()) })
	t.Setenv("AWS_ENDPOINT_URL_LAMBDA", "http://"+ln.Addr().String())

	// A failed request, a succeeded one and a queued one, stored as the
	// processor would.
	now := time.Now()
	principal, _ := json.Marshal(opsAlice)
	for _, id := range []string{"f1", "o1", "later"} {
		require.NoError(t, store.CreateRequest(t.Context(), storage.Request{
			Key: opsKey(id), Action: map[bool]string{true: "fail", false: "ok"}[id == "f1"], Payload: json.RawMessage(`{"n":1}`),
			Principal: principal, Status: storage.StatusQueued, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour),
		}))
	}
	for id, st := range map[string]storage.Status{"f1": storage.StatusFailed, "o1": storage.StatusSucceeded} {
		_, err := store.ClaimRequest(t.Context(), opsKey(id), storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
		require.NoError(t, err)
		fin := storage.Finish{Attempt: 1, Status: st, Now: now.Add(time.Second),
			Event: storage.Event{Seq: 1, Type: "complete", Data: []byte(`{"type":"complete"}`), CreatedAt: now}}
		if st == storage.StatusFailed {
			fin.Event = storage.Event{Seq: 1, Type: "error", Data: []byte(`{"type":"error"}`), CreatedAt: now}
			fin.Error = &storage.ErrorInfo{Code: "PROCESSING_FAILED", Message: "boom"}
		}
		require.NoError(t, store.FinishRequest(t.Context(), opsKey(id), fin))
	}

	// The status index is eventually consistent: poll.
	var stdout, stderr string
	var code int
	require.Eventually(t, func() bool {
		code, stdout, stderr = runOpsCmd(t, "list", "--table", table, "--status", "failed", "--within", "1h")
		return code == exitOK && strings.Contains(stdout, "acme|alice|f1")
	}, 30*time.Second, 50*time.Millisecond, "%d %s %s", code, stdout, stderr)
	require.NotContains(t, stdout, "o1")

	code, stdout, stderr = runOpsCmd(t, "inspect", "acme|alice|f1", "--table", table, "--json")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, `"PROCESSING_FAILED"`)

	code, stdout, stderr = runOpsCmd(t, "retry", "acme|alice|f1", "--table", table)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "retry acme|alice|f1:retry-1 submitted (queued)")
	r, err := store.GetRequest(t.Context(), opsKey("f1:retry-1"))
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, r.Status)

	// Redrive: the live request's job goes to the processor function.
	code, stdout, stderr = runOpsCmd(t, "redrive", "-", "--table", table, "--function", "processor")
	require.Equal(t, exitUsage, code, "no messages on an empty stdin: %s %s", stdout, stderr)
	file := filepath.Join(t.TempDir(), "messages.jsonl")
	require.NoError(t, os.WriteFile(file, []byte(failureRecord(opsKey("later"))+"\n"+failureRecord(opsKey("o1"))+"\n"), 0o600))
	code, stdout, stderr = runOpsCmd(t, "redrive", file, "--table", table, "--function", "processor")
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "message 1: acme|alice|later: redriven queued")
	require.Contains(t, stdout, "message 2: acme|alice|o1: finished succeeded")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(jobs) == 1
	}, 30*time.Second, 10*time.Millisecond)
	mu.Lock()
	require.JSONEq(t, `{"streamer_job":{"key":"acme|alice|later"}}`, jobs[0])
	mu.Unlock()

	code, stdout, stderr = runOpsCmd(t, "cancel", "acme|alice|later", "--table", table)
	require.Equal(t, exitOK, code, stderr)
	require.Equal(t, "later: canceled\n", stdout)
	require.Equal(t, 1, countTerminals(t, store, opsKey("later")))
}

// TestFailureQueueFile: --aws-local keeps failed jobs in the data dir's
// failure queue file, in Lambda's record format, which ops redrive reads.
func TestFailureQueueFile(t *testing.T) {
	dir := t.TempDir()
	store, err := bolt.Open(filepath.Join(dir, "streamer.db"), bolt.Options{})
	require.NoError(t, err)
	now := time.Now()
	require.NoError(t, store.CreateRequest(t.Context(), storage.Request{Key: opsKey("q1"), Action: "ok", Status: storage.StatusQueued, CreatedAt: now, UpdatedAt: now}))
	require.NoError(t, store.Close())

	path := filepath.Join(dir, failureQueueFile)
	add := failureQueue(path, nil, zerolog.Nop())
	for _, id := range []string{"q1", "gone"} {
		job, err := json.Marshal(map[string]any{"streamer_job": map[string]string{"key": opsKey(id).String()}})
		require.NoError(t, err)
		add(awslocal.Failure{Function: "processor", RequestID: "r-" + id, Payload: job, Err: errors.New("boom"), Attempts: 3, Condition: awslocal.ConditionRetriesExhausted})
	}
	code, stdout, stderr := runOpsCmd(t, "redrive", path, "--data-dir", dir)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "message 1: acme|alice|q1: live (queued): left to the runtime")
	require.Contains(t, stdout, "message 2: acme|alice|gone: gone")
}
