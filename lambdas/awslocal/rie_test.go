//go:build unix

package awslocal_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/awslocal"
)

// buildRIE compiles testdata/fn as a bootstrap (-tags lambda.norpc, as the
// Lambdas are built) and the go tool aws-lambda-rie into dir.
func buildRIE(t *testing.T, dir string) (rie, bootstrap string) {
	t.Helper()
	rie, bootstrap = filepath.Join(dir, "rie"), filepath.Join(dir, "bootstrap")
	for _, args := range [][]string{
		{"build", "-tags", "lambda.norpc", "-o", bootstrap, "./testdata/fn"},
		{"build", "-o", rie, "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie"},
	} {
		out, err := exec.Command("go", args...).CombinedOutput()
		require.NoError(t, err, "go %s:\n%s", strings.Join(args, " "), out)
	}
	return rie, bootstrap
}

// fnResult is testdata/fn's result.
type fnResult struct {
	Echo      json.RawMessage `json:"echo"`
	RequestID string          `json:"request_id"`
	PID       int             `json:"pid"`
}

// syncWriter serializes the emulators' output for the test's log.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// started records the invocations handed to emulators.
type started struct {
	mu  sync.Mutex
	got []awslocal.RIEInvocation
}

func (s *started) add(inv awslocal.RIEInvocation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, inv)
}

func (s *started) list() []awslocal.RIEInvocation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]awslocal.RIEInvocation(nil), s.got...)
}

// A function served by an RIEPool: one emulator per concurrently running
// invocation, function errors and timeouts as Lambda reports them, and a
// SIGKILL of the emulator running an asynchronous invocation is a failed
// attempt, retried in a fresh emulator.
func TestRIEPool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rie, bootstrap := buildRIE(t, dir)

	svc, url := startService(t)
	client := lambdaClient(url)
	out := &syncWriter{}
	starts := &started{}
	pool, err := awslocal.NewRIEPool(awslocal.RIEConfig{
		RIE: rie, Bootstrap: bootstrap, Output: out, OnStart: starts.add,
		Env: []string{"PATH=" + os.Getenv("PATH"), "AWS_REGION=us-east-1"},
	})
	require.NoError(t, err)
	// Registered after startService: runs before the service's shutdown.
	t.Cleanup(func() {
		require.NoError(t, pool.Close())
		require.Zero(t, pool.Emulators())
		if t.Failed() {
			t.Logf("emulators' output:\n%s", out.String())
		}
	})
	retries := aws.Int(1)
	require.NoError(t, svc.Register("fn", pool.Invoke, awslocal.FunctionConfig{
		Concurrency: 2, Timeout: 20 * time.Second, MaximumRetryAttempts: retries, RetryDelays: []time.Duration{10 * time.Millisecond},
	}))
	invoke := func(typ types.InvocationType, payload string) *lambda.InvokeOutput {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		res, err := client.Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), InvocationType: typ, Payload: []byte(payload)})
		require.NoError(t, err)
		return res
	}

	// A result, with the request ID the bootstrap saw.
	res := invoke(types.InvocationTypeRequestResponse, `{"echo":{"n":1}}`)
	require.Nil(t, res.FunctionError, "%s", res.Payload)
	var got fnResult
	require.NoError(t, json.Unmarshal(res.Payload, &got))
	require.JSONEq(t, `{"n":1}`, string(got.Echo))
	reqID, _ := awsmiddleware.GetRequestIDMetadata(res.ResultMetadata)
	require.Equal(t, reqID, got.RequestID)
	first := got.PID

	// A function error; the emulator stays warm.
	res = invoke(types.InvocationTypeRequestResponse, `{"fail":"boom"}`)
	require.Equal(t, "Unhandled", aws.ToString(res.FunctionError))
	require.JSONEq(t, `{"errorMessage":"boom","errorType":"errorString"}`, string(res.Payload))
	res = invoke(types.InvocationTypeRequestResponse, `{}`)
	require.NoError(t, json.Unmarshal(res.Payload, &got))
	require.Equal(t, first, got.PID, "the same bootstrap serves the next invocation")
	require.Equal(t, 1, pool.Emulators())

	// Two asynchronous invocations that block run in two emulators; the
	// emulator of one is SIGKILLed: its bootstrap dies with it, and the
	// event is retried in a new emulator, where it completes.
	killMe, other := filepath.Join(dir, "kill-me"), filepath.Join(dir, "other")
	invoke(types.InvocationTypeEvent, `{"block_once":"`+killMe+`"}`)
	invoke(types.InvocationTypeEvent, `{"block_once":"`+other+`"}`)
	marker := func(path string) (string, int) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", 0
		}
		id, pid, _ := strings.Cut(string(b), " ")
		n, _ := strconv.Atoi(pid)
		return id, n
	}
	require.Eventually(t, func() bool {
		_, a := marker(killMe)
		_, b := marker(other)
		return a != 0 && b != 0
	}, waitFor, tick, "both invocations run")
	require.Equal(t, 2, pool.Emulators(), "one emulator per concurrent invocation")
	st, _ := svc.Stats("fn")
	require.Equal(t, 2, st.Running)

	victim, bootstrapPID := marker(killMe)
	emulatorPID, ok := pool.PID(victim)
	require.True(t, ok)
	var attempt1 awslocal.RIEInvocation
	for _, s := range starts.list() {
		if s.RequestID == victim {
			attempt1 = s
		}
	}
	require.Equal(t, awslocal.RIEInvocation{RequestID: victim, Attempt: 1, PID: emulatorPID}, attempt1)
	require.NoError(t, syscall.Kill(emulatorPID, syscall.SIGKILL))

	st = waitStats(t, svc, "fn", func(st awslocal.FunctionStats) bool { return st.Succeeded == 3 && st.Errors == 2 })
	require.Equal(t, 1, st.Retries)
	require.Equal(t, 1, st.Running, "the other invocation still runs")
	require.Eventually(t, func() bool { return gone(bootstrapPID) }, waitFor, tick, "the killed emulator's bootstrap is gone")
	var retry awslocal.RIEInvocation
	for _, s := range starts.list() {
		if s.RequestID == victim && s.Attempt == 2 {
			retry = s
		}
	}
	require.NotZero(t, retry.PID, "the retry ran")
	require.NotEqual(t, emulatorPID, retry.PID, "in a fresh emulator")

	// The other one still runs, in its own emulator (closing the pool
	// kills it).
	otherID, _ := marker(other)
	otherPID, ok := pool.PID(otherID)
	require.True(t, ok)
	require.NoError(t, syscall.Kill(otherPID, 0), "still running")
}

// An invocation that outlives its function's timeout fails with
// Sandbox.Timedout, and its emulator is killed.
func TestRIEPoolTimeout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rie, bootstrap := buildRIE(t, dir)
	svc, url := startService(t)
	starts := &started{}
	out := &syncWriter{}
	pool, err := awslocal.NewRIEPool(awslocal.RIEConfig{RIE: rie, Bootstrap: bootstrap, OnStart: starts.add, Output: out})
	require.NoError(t, err)
	t.Cleanup(func() {
		require.NoError(t, pool.Close())
		if t.Failed() {
			t.Logf("emulators' output:\n%s", out.String())
		}
	})
	// Generous, as the emulator's cold start counts against it.
	require.NoError(t, svc.Register("fn", pool.Invoke, awslocal.FunctionConfig{Timeout: 3 * time.Second}))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	res, err := lambdaClient(url).Invoke(ctx, &lambda.InvokeInput{FunctionName: aws.String("fn"), Payload: []byte(`{"sleep_ms":60000}`)})
	require.NoError(t, err)
	require.Equal(t, "Unhandled", aws.ToString(res.FunctionError))
	var doc struct{ ErrorType string }
	require.NoError(t, json.Unmarshal(res.Payload, &doc))
	require.Equal(t, "Sandbox.Timedout", doc.ErrorType)
	require.Eventually(t, func() bool { return pool.Emulators() == 0 }, waitFor, tick, "the timed-out emulator is killed")
	list := starts.list()
	require.Len(t, list, 1)
	require.Eventually(t, func() bool { return gone(list[0].PID) }, waitFor, tick)
}

// gone tells a process that no longer runs: not there, or a zombie (an
// orphan's new parent may not reap it).
func gone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return os.IsNotExist(err)
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && bytes.HasPrefix(bytes.TrimSpace(stat[i+1:]), []byte("Z"))
}
