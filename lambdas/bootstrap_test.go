//go:build unix

package lambdas_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// build compiles each function for this machine, as
// `go build -tags lambda.norpc -o <dir>/<fn>/bootstrap ./lambdas/<fn>`
// (the arm64 builds of scripts/package.sh do not run here), and the
// Runtime Interface Emulator, the go tool aws-lambda-rie. It returns the
// directory.
func build(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, fn := range functions {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, fn), 0o755))
		run(t, "go", "build", "-tags", "lambda.norpc", "-o", filepath.Join(dir, fn, "bootstrap"), "github.com/streamer-go/streamer/lambdas/"+fn)
	}
	run(t, "go", "build", "-o", filepath.Join(dir, "rie"), "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie")
	return dir
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s:\n%s", name, strings.Join(args, " "), out)
}

func TestBootstraps(t *testing.T) {
	t.Parallel()
	dir := build(t)
	t.Run("settings", func(t *testing.T) {
		t.Parallel()
		testSettings(t, dir)
	})
	t.Run("rie", func(t *testing.T) {
		t.Parallel()
		testUnderRIE(t, dir)
	})
}

// A bootstrap whose settings are missing exits 1 at start, naming the
// variable on standard error, before it asks the Runtime API for work.
func testSettings(t *testing.T, dir string) {
	for _, fn := range functions {
		stderr, code := start(t, filepath.Join(dir, fn, "bootstrap"), nil)
		require.Equal(t, 1, code, "%s: %s", fn, stderr)
		require.Contains(t, stderr, "STREAMER_TABLE", fn)
	}
	stderr, code := start(t, filepath.Join(dir, "connect", "bootstrap"), []string{"STREAMER_TABLE=t"})
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "STREAMER_JWT_SECRET, STREAMER_JWT_PUBLIC_KEY or STREAMER_JWT_JWKS_URL is required")
	stderr, code = start(t, filepath.Join(dir, "router", "bootstrap"), []string{"STREAMER_TABLE=t", "STREAMER_RETENTION=forever"})
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "STREAMER_RETENTION")
	stderr, code = start(t, filepath.Join(dir, "reaper", "bootstrap"), []string{"STREAMER_TABLE=t", "STREAMER_MAX_STALLS=0"})
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "STREAMER_MAX_STALLS")
	// The router and the processor serve the report plugin, whose files
	// go to STREAMER_BUCKET.
	stderr, code = start(t, filepath.Join(dir, "router", "bootstrap"), []string{"STREAMER_TABLE=t", "AWS_REGION=us-east-1"})
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "STREAMER_BUCKET is required")
	stderr, code = start(t, filepath.Join(dir, "router", "bootstrap"), []string{"STREAMER_TABLE=t", "STREAMER_BUCKET=Not_A_Bucket"})
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "STREAMER_BUCKET=")
}

// start runs a bootstrap without AWS_LAMBDA_RUNTIME_API and returns its
// standard error and exit code.
func start(t *testing.T, bin string, env []string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lambdatest.Wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the bootstrap should fail; stderr: %s", stderr.String())
	return stderr.String(), exit.ExitCode()
}

// Every bootstrap under the Runtime Interface Emulator, on DynamoDB Local,
// replying through a local gateway's Management API: a client connects,
// sends a sync and an async request, the processor dispatches the async one
// from its captured stream record to an invocation of its own (the local
// Lambda service, which runs it in another emulator of the processor
// bootstrap), the reaper runs from a scheduled event and finds nothing
// stalled, and the client disconnects.
func testUnderRIE(t *testing.T, dir string) {
	aws := lambdatest.DynamoDBLocal(t)
	table := aws.Table(t)
	gw := lambdatest.StartGateway(t)
	ws, id := gw.Dial(t)
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"AWS_ENDPOINT_URL_DYNAMODB=" + aws.Endpoint,
		"AWS_REGION=" + aws.Region,
		"AWS_ACCESS_KEY_ID=" + os.Getenv("AWS_ACCESS_KEY_ID"),
		"AWS_SECRET_ACCESS_KEY=" + os.Getenv("AWS_SECRET_ACCESS_KEY"),
		"STREAMER_TABLE=" + table,
		"STREAMER_JWT_SECRET=" + lambdatest.Secret,
		"STREAMER_ENDPOINT=" + gw.URL,
		"STREAMER_LOG_LEVEL=warn",
		"STREAMER_BUCKET=streamer-test",
		// Short, so that a job whose invocation was killed is taken over
		// within the test.
		"STREAMER_LEASE=3s",
	}
	// The Lambda service the processor invokes itself through, running
	// each job in an emulator of the processor's bootstrap.
	lambdaLn, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	env = append(env, "AWS_ENDPOINT_URL_LAMBDA=http://"+lambdaLn.Addr().String(), "AWS_LAMBDA_FUNCTION_NAME=processor")
	svc := awslocal.NewLambdaService(awslocal.LambdaServiceConfig{Region: aws.Region})
	started := make(chan awslocal.RIEInvocation, 16)
	pool, err := awslocal.NewRIEPool(awslocal.RIEConfig{
		RIE: filepath.Join(dir, "rie"), Bootstrap: filepath.Join(dir, "processor", "bootstrap"), Env: env,
		FunctionName: "processor", Timeout: time.Minute,
		OnStart: func(inv awslocal.RIEInvocation) { started <- inv },
	})
	require.NoError(t, err)
	require.NoError(t, svc.Register("processor", pool.Invoke, awslocal.FunctionConfig{
		Concurrency: 2, Timeout: time.Minute, RetryDelays: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond},
	}))
	go func() { _ = svc.Serve(lambdaLn) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = svc.Shutdown(ctx)
		_ = pool.Close()
	})
	rie := map[string]*emulator{}
	for _, fn := range functions {
		rie[fn] = startRIE(t, filepath.Join(dir, "rie"), filepath.Join(dir, fn, "bootstrap"), env)
	}
	for _, fn := range functions {
		rie[fn].waitReady(t)
	}

	wsEvent := func(route, body string, headers map[string]string) events.APIGatewayWebsocketProxyRequest {
		return events.APIGatewayWebsocketProxyRequest{
			Body: body, Headers: headers,
			RequestContext: events.APIGatewayWebsocketProxyRequestContext{
				ConnectionID: id, RouteKey: route, DomainName: "abc123.execute-api.us-east-1.amazonaws.com", Stage: "prod",
			},
		}
	}
	status := func(fn string, ev events.APIGatewayWebsocketProxyRequest) int {
		var resp events.APIGatewayProxyResponse
		rie[fn].invoke(t, ev, &resp)
		return resp.StatusCode
	}

	require.Equal(t, http.StatusUnauthorized, status("connect", wsEvent("$connect", "", nil)))
	require.Equal(t, http.StatusOK, status("connect", wsEvent("$connect", "", map[string]string{"Authorization": "Bearer " + lambdatest.Token(t, "erin")})))

	require.Equal(t, http.StatusOK, status("router", wsEvent("$default", `{"action":"echo","id":"e1","payload":{"n":1}}`, nil)))
	m := lambdatest.Read(t, ws)
	require.Equal(t, streamer.TypeResponse, m.Type)
	require.JSONEq(t, `{"n":1}`, string(m.Data))

	require.Equal(t, http.StatusOK, status("router", wsEvent("$default", `{"action":"delay","id":"job-9","payload":{"ms":50,"steps":2}}`, nil)))
	require.Equal(t, streamer.TypeAcknowledgment, lambdatest.Read(t, ws).Type)

	queued := func(id string) func(r types.Record) bool {
		return func(r types.Record) bool {
			return r.EventName == types.OperationTypeInsert && lambdatest.Str(r.Dynamodb.NewImage, dynamodb.AttrSK) == "REQ" &&
				lambdatest.Str(r.Dynamodb.NewImage, "status") == "queued" && strings.HasSuffix(lambdatest.Str(r.Dynamodb.NewImage, dynamodb.AttrPK), "|"+id)
		}
	}
	dispatch := func(id string) {
		t.Helper()
		var recs []types.Record
		aws.ReadStream(t, table, func(all []types.Record) bool {
			recs = recs[:0]
			for _, r := range all {
				if queued(id)(r) {
					recs = append(recs, r)
				}
			}
			return len(recs) > 0
		})
		batch := lambdatest.EventJSON(t, recs, aws.StreamARN(t, table), aws.Region)
		out := rie["processor"].invoke(t, json.RawMessage(batch), nil)
		require.JSONEq(t, `{"batchItemFailures":[]}`, string(out))
	}
	dispatch("job-9")
	got := lambdatest.ReadUntil(t, ws, streamer.TypeComplete)
	require.Equal(t, "job-9", got[len(got)-1].RequestID)
	require.Eventually(t, func() bool {
		stats, ok := svc.Stats("processor")
		return ok && stats.Succeeded == 1
	}, lambdatest.Wait, 10*time.Millisecond, "the job ran in an invocation of its own")
	<-started

	// A job whose invocation is killed (SIGKILL of its emulator) is
	// retried by Lambda; the retry waits out the dead run's lease, takes
	// the request over and completes it, exactly once, its seqs
	// contiguous.
	require.Equal(t, http.StatusOK, status("router", wsEvent("$default", `{"action":"delay","id":"job-kill","payload":{"ms":4000,"steps":8}}`, nil)))
	require.Equal(t, streamer.TypeAcknowledgment, lambdatest.Read(t, ws).Type)
	dispatch("job-kill")
	inv := <-started
	early := lambdatest.ReadUntil(t, ws, streamer.TypeProgress)
	require.Equal(t, streamer.TypeStarted, early[0].Type, "the job runs")
	require.NoError(t, syscall.Kill(inv.PID, syscall.SIGKILL))
	got = append(early, lambdatest.ReadUntil(t, ws, streamer.TypeComplete)...)
	seen := map[int64]bool{}
	var last int64
	for _, m := range got {
		require.Equal(t, "job-kill", m.RequestID)
		require.LessOrEqual(t, m.Seq, last+1, "no gap before seq %d", m.Seq)
		seen[m.Seq], last = true, max(last, m.Seq)
	}
	require.Equal(t, streamer.TypeComplete, got[len(got)-1].Type)
	retry := <-started
	require.Equal(t, 2, retry.Attempt, "Lambda retried the killed job")
	store, err := dynamodb.New(dynamodb.Config{Client: aws.DB, Table: table})
	require.NoError(t, err)
	key := storage.Key{Subject: "erin", ID: "job-kill"}
	evs, err := store.ReadEvents(context.Background(), key, 0, 0)
	require.NoError(t, err)
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.Seq, "stored seqs are contiguous")
		require.Equal(t, i == len(evs)-1, ev.Terminal(), "one terminal event, the last")
		require.True(t, seen[ev.Seq], "the client got seq %d", ev.Seq)
	}
	req, err := store.GetRequest(context.Background(), key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusSucceeded, req.Status)
	require.Equal(t, 1, req.Stalls, "the killed run counts one stall")

	// The event an EventBridge schedule (serverless.yml's rate(1 minute))
	// sends.
	scheduled := json.RawMessage(`{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event",
		"source":"aws.events","account":"123456789012","time":"2024-01-01T00:00:00Z","region":"us-east-1",
		"resources":["arn:aws:events:us-east-1:123456789012:rule/streamer-test-reaper"],"detail":{}}`)
	require.JSONEq(t, `{"reaped":0}`, string(rie["reaper"].invoke(t, scheduled, nil)))

	require.Equal(t, http.StatusOK, status("disconnect", wsEvent("$disconnect", "", nil)))
}

// emulator is one aws-lambda-rie process running one bootstrap.
type emulator struct {
	addr string
	out  *syncBuffer
}

// startRIE runs `aws-lambda-rie --runtime-interface-emulator-address
// 127.0.0.1:P --runtime-api-address 127.0.0.1:Q bootstrap` in its own
// process group, killed with the bootstrap it starts when the test ends.
func startRIE(t *testing.T, rie, bootstrap string, env []string) *emulator {
	t.Helper()
	e := &emulator{addr: freeAddr(t), out: &syncBuffer{}}
	cmd := exec.Command(rie, "--runtime-interface-emulator-address", e.addr, "--runtime-api-address", freeAddr(t), bootstrap)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = e.out, e.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s under the RIE:\n%s", filepath.Base(filepath.Dir(bootstrap)), e.out.String())
		}
	})
	return e
}

// freeAddr returns a loopback address free right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

// waitReady polls until the emulator accepts connections.
func (e *emulator) waitReady(t *testing.T) {
	t.Helper()
	deadline := time.NewTimer(lambdatest.Wait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err == nil {
			_ = c.Close()
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("the RIE at %s did not start within %v: %v\n%s", e.addr, lambdatest.Wait, err, e.out.String())
		case <-tick.C:
		}
	}
}

// invoke posts event to the function and returns its response, decoded
// into out when out is not nil. An invocation error fails the test.
func (e *emulator) invoke(t *testing.T, event, out any) []byte {
	t.Helper()
	body, err := json.Marshal(event)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 2*lambdatest.Wait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://%s/2015-03-31/functions/function/invocations", e.addr), bytes.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", data)
	require.NotContains(t, string(data), `"errorMessage"`, "the invocation failed")
	if out != nil {
		require.NoError(t, json.Unmarshal(data, out), "%s", data)
	}
	return data
}

// syncBuffer is a bytes.Buffer safe for the process's two writers and the
// test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
