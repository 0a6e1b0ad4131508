package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/ops/sqsredrive"
	"github.com/streamer-go/streamer/ops/sqsredrive/sqslocal"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/storage/dynamodb/dynamodbtest"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// TestOpsRedriveSQS: the AWS path on DynamoDB Local (awslocal.Run) runs a
// request whose processor job crashes on every attempt; the failed job's
// record goes, through --aws-local's failure-queue sender, to a real
// (local) SQS queue. `streamer ops redrive --queue-url --table --function
// processor` receives it, invokes the processor with the job (now
// healthy), and deletes the message: the request finishes with one
// terminal event and the queue is empty.
func TestOpsRedriveSQS(t *testing.T) {
	endpoint := dynamodbtest.Endpoint(t)
	sqsSrv, err := sqslocal.New(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sqsSrv.Close()) })
	queueURL, err := sqsSrv.CreateQueue(t.Context(), "streamer-local-processor-dlq", 0)
	require.NoError(t, err)
	t.Setenv("AWS_ENDPOINT_URL_SQS", sqsSrv.URL())
	awsCfg, err := awsConfig(t.Context())
	require.NoError(t, err)
	queue, err := sqsredrive.NewQueue(sqsredrive.QueueConfig{URL: queueURL, AWS: awsCfg, Endpoint: sqsEndpoint(awsCfg)})
	require.NoError(t, err)
	depth := func() string {
		attrs, err := queue.Attributes(t.Context(), "ApproximateNumberOfMessages")
		require.NoError(t, err)
		return attrs["ApproximateNumberOfMessages"]
	}

	// The stack, its processor job crashing for request sqs-1 until told.
	table := fmt.Sprintf("ops-sqs-%d", time.Now().UnixNano())
	plugins, err := opsPlugins(t.Context(), streamer.Env{})
	require.NoError(t, err)
	var crash atomic.Bool
	crash.Store(true)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan devserver.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- awslocal.Run(ctx, awslocal.Config{
			Listener: ln, DynamoDBEndpoint: endpoint, Table: table,
			Secret: []byte("0123456789abcdef0123456789abcdef"), Plugins: plugins, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
			ReapInterval: -1, JobRetryDelays: []time.Duration{50 * time.Millisecond, 50 * time.Millisecond},
			WrapJob: func(next awslocal.LambdaHandler) awslocal.LambdaHandler {
				return func(ctx context.Context, payload []byte) ([]byte, error) {
					if crash.Load() && strings.Contains(string(payload), "sqs-1") {
						return nil, fmt.Errorf("the function crashed at start")
					}
					return next(ctx, payload)
				}
			},
			OnJobFailure: failureQueue(filepath.Join(t.TempDir(), failureQueueFile), queue, zerolog.New(zerolog.NewTestWriter(t))),
			Ready:        func(info devserver.Info) { ready <- info },
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(60 * time.Second):
			t.Error("awslocal.Run did not return")
		}
	})
	var info devserver.Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("awslocal.Run: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("awslocal.Run did not get ready")
	}
	require.NotEmpty(t, info.LambdaURL)

	cfg, err := config.LoadDefaultConfig(t.Context())
	require.NoError(t, err)
	store, err := dynamodb.New(dynamodb.Config{Client: awsddb.NewFromConfig(cfg), Table: table})
	require.NoError(t, err)
	_, err = info.App.Submit(t.Context(), opsAlice, "ok", json.RawMessage(`{"n":1}`), streamer.SubmitOptions{IdempotencyKey: "sqs-1"})
	require.NoError(t, err)

	// The job fails three times (Lambda's two retries) and its record
	// lands in the queue; the request is still live.
	require.Eventually(t, func() bool { return depth() == "1" }, 60*time.Second, 50*time.Millisecond, "the failed job's record never reached the queue")
	r, err := store.GetRequest(t.Context(), opsKey("sqs-1"))
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, r.Status)
	require.Zero(t, countTerminals(t, store, opsKey("sqs-1")))

	// Redrive from the queue, the function healthy again.
	crash.Store(false)
	t.Setenv("AWS_ENDPOINT_URL_LAMBDA", info.LambdaURL)
	code, stdout, stderr := runOpsCmd(t, "redrive", "--queue-url", queueURL, "--table", table, "--function", "processor")
	require.Equal(t, exitOK, code, "%s\n%s", stdout, stderr)
	require.Regexp(t, `message 1 \(\S+\): acme\|alice\|sqs-1: redriven queued \[deleted\]`, stdout)
	require.Contains(t, stdout, "1 messages: 1 deleted, 0 left on the queue")
	waitStatus(t, store, opsKey("sqs-1"), storage.StatusSucceeded)
	require.Equal(t, 1, countTerminals(t, store, opsKey("sqs-1")))
	require.Equal(t, "0", depth())

	// An empty queue: nothing to do.
	code, stdout, stderr = runOpsCmd(t, "redrive", "--queue-url", queueURL, "--table", table)
	require.Equal(t, exitOK, code, stderr)
	require.Contains(t, stdout, "0 messages: 0 deleted, 0 left on the queue")
}

func TestOpsRedriveSQSUsage(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"redrive", "file.json", "--queue-url", "http://127.0.0.1:1/0/q"}, "give FILE or --queue-url, not both"},
		{[]string{"redrive", "--max", "5"}, "--max and --drop-malformed need --queue-url"},
		{[]string{"redrive", "--drop-malformed"}, "--max and --drop-malformed need --queue-url"},
		{[]string{"redrive", "--queue-url", "http://127.0.0.1:1/0/q", "--max", "0"}, "--max 0: must be at least 1"},
	} {
		code, _, stderr := runOpsCmd(t, c.args...)
		require.Equal(t, exitUsage, code, "%v", c.args)
		require.Contains(t, stderr, c.want, "%v", c.args)
	}
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, "streamer.db"), bolt.Options{})
	require.NoError(t, err)
	require.NoError(t, db.Close())
	code, _, stderr := runOpsCmd(t, "redrive", "--queue-url", "not-a-url", "--data-dir", dir)
	require.Equal(t, exitUsage, code, stderr)
	require.Contains(t, stderr, `--queue-url: sqs: queue URL "not-a-url"`)

	var out, errOut bytes.Buffer
	code = Run(t.Context(), []string{"dev", "--failure-queue-url", "http://127.0.0.1:1/0/q"}, &out, &errOut, opsPlugins)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut.String(), "--failure-queue-url needs --aws-local")
	errOut.Reset()
	code = Run(t.Context(), []string{"dev", "--aws-local", "--data-dir", t.TempDir(), "--failure-queue-url", "bogus"}, &out, &errOut, opsPlugins)
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut.String(), `--failure-queue-url: sqs: queue URL "bogus"`)
}
