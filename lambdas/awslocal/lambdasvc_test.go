package awslocal_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/awslocal"
)

// startService serves a Lambda service on 127.0.0.1 and returns it with its
// URL. It is shut down when the test ends.
func startService(t *testing.T) (*awslocal.LambdaService, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	svc := awslocal.NewLambdaService(awslocal.LambdaServiceConfig{})
	served := make(chan error, 1)
	go func() { served <- svc.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		require.NoError(t, svc.Shutdown(ctx))
		require.NoError(t, <-served)
	})
	return svc, "http://" + l.Addr().String()
}

// lambdaClient is the SDK's client of the service at url, without retries.
func lambdaClient(url string) *lambda.Client {
	return lambda.New(lambda.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
	})
}

func echo(_ context.Context, payload []byte) ([]byte, error) { return payload, nil }

// waitStats polls a function's counters until ok accepts them.
func waitStats(t *testing.T, svc *awslocal.LambdaService, name string, ok func(awslocal.FunctionStats) bool) awslocal.FunctionStats {
	t.Helper()
	var st awslocal.FunctionStats
	require.Eventually(t, func() bool {
		st, _ = svc.Stats(name)
		return ok(st)
	}, waitFor, tick, "last stats of %s", name)
	return st
}

// The SDK's client configured by AWS_ENDPOINT_URL_LAMBDA, as a Lambda's
// would be, invokes a function and gets its result.
func TestLambdaServiceSyncInvokeWithEndpointEnv(t *testing.T) {
	svc, url := startService(t)
	require.NoError(t, svc.Register("echo", func(ctx context.Context, payload []byte) ([]byte, error) {
		inv, ok := awslocal.InvocationFromContext(ctx)
		if !ok || inv.Async || inv.Attempt != 1 || inv.Function != "echo" {
			return nil, errors.New("bad invocation")
		}
		if _, ok := ctx.Deadline(); !ok {
			return nil, errors.New("no deadline")
		}
		return json.Marshal(map[string]any{"got": json.RawMessage(payload), "request_id": inv.RequestID})
	}, awslocal.FunctionConfig{}))
	t.Setenv("AWS_ENDPOINT_URL_LAMBDA", url)
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "local")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "local")
	cfg, err := config.LoadDefaultConfig(context.Background())
	require.NoError(t, err)
	client := lambda.NewFromConfig(cfg)

	out, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{"n":1}`)})
	require.NoError(t, err)
	require.EqualValues(t, 200, out.StatusCode)
	require.Nil(t, out.FunctionError)
	require.Equal(t, "$LATEST", aws.ToString(out.ExecutedVersion))
	reqID, ok := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
	require.True(t, ok)
	require.JSONEq(t, `{"got":{"n":1},"request_id":"`+reqID+`"}`, string(out.Payload))

	// By ARN, and with the $LATEST qualifier.
	for _, name := range []string{"arn:aws:lambda:us-east-1:000000000000:function:echo", "echo:$LATEST"} {
		out, err = client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{}`)})
		require.NoError(t, err, name)
		require.Nil(t, out.FunctionError, "%s: %s", name, out.Payload)
	}
	st, _ := svc.Stats("echo")
	require.Equal(t, awslocal.FunctionStats{Invocations: 3, Succeeded: 3}, st)
}

type codedError struct{ code int }

func (e *codedError) Error() string { return "coded failure" }

// A function's error comes back as Lambda returns one: 200, the
// X-Amz-Function-Error header and the runtime's error document.
func TestLambdaServiceFunctionError(t *testing.T) {
	t.Parallel()
	svc, url := startService(t)
	client := lambdaClient(url)
	require.NoError(t, svc.Register("plain", func(context.Context, []byte) ([]byte, error) { return nil, errors.New("boom") }, awslocal.FunctionConfig{}))
	require.NoError(t, svc.Register("typed", func(context.Context, []byte) ([]byte, error) { return nil, &codedError{code: 7} }, awslocal.FunctionConfig{}))
	require.NoError(t, svc.Register("panics", func(context.Context, []byte) ([]byte, error) { panic("oops") }, awslocal.FunctionConfig{}))
	require.NoError(t, svc.Register("slow", func(ctx context.Context, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return []byte(`"late"`), nil
	}, awslocal.FunctionConfig{Timeout: 50 * time.Millisecond}))

	for name, want := range map[string]string{
		"plain": `{"errorMessage":"boom","errorType":"errorString"}`,
		"typed": `{"errorMessage":"coded failure","errorType":"codedError"}`,
	} {
		out, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{}`)})
		require.NoError(t, err, name)
		require.EqualValues(t, 200, out.StatusCode)
		require.Equal(t, "Unhandled", aws.ToString(out.FunctionError), name)
		require.JSONEq(t, want, string(out.Payload), name)
	}
	for name, typ := range map[string]string{"panics": "Runtime.ExitError", "slow": "Sandbox.Timedout"} {
		out, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), Payload: []byte(`{}`)})
		require.NoError(t, err, name)
		require.Equal(t, "Unhandled", aws.ToString(out.FunctionError), name)
		var doc struct{ ErrorType, ErrorMessage string }
		require.NoError(t, json.Unmarshal(out.Payload, &doc))
		require.Equal(t, typ, doc.ErrorType, name)
	}
	st, _ := svc.Stats("slow")
	require.Equal(t, 1, st.Errors)
}

// An unknown function, or an unknown version of one, is the SDK's
// ResourceNotFoundException; a DryRun answers 204; a malformed payload is
// refused.
func TestLambdaServiceRefusals(t *testing.T) {
	t.Parallel()
	svc, url := startService(t)
	client := lambdaClient(url)
	require.NoError(t, svc.Register("echo", echo, awslocal.FunctionConfig{}))

	for _, in := range []*lambda.InvokeInput{
		{FunctionName: aws.String("nope"), Payload: []byte(`{}`)},
		{FunctionName: aws.String("nope"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)},
		{FunctionName: aws.String("echo"), Qualifier: aws.String("7"), Payload: []byte(`{}`)},
	} {
		_, err := client.Invoke(context.Background(), in)
		var nf *types.ResourceNotFoundException
		require.ErrorAs(t, err, &nf)
		require.Contains(t, aws.ToString(nf.Message), "Function not found: arn:aws:lambda:us-east-1:000000000000:function:")
	}

	out, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("echo"), InvocationType: types.InvocationTypeDryRun})
	require.NoError(t, err)
	require.EqualValues(t, 204, out.StatusCode)

	_, err = client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("echo"), Payload: []byte(`{not json`)})
	var bad *types.InvalidRequestContentException
	require.ErrorAs(t, err, &bad)

	_, err = client.Invoke(context.Background(), &lambda.InvokeInput{
		FunctionName: aws.String("echo"), InvocationType: types.InvocationTypeEvent,
		Payload: []byte(`"` + strings.Repeat("a", 1024*1024) + `"`),
	})
	var large *types.RequestTooLargeException
	require.ErrorAs(t, err, &large)

	st, _ := svc.Stats("echo")
	require.Equal(t, awslocal.FunctionStats{}, st, "nothing ran")
}

// gate holds invocations until opened and counts how many run at once.
type gate struct {
	open    chan struct{}
	running atomic.Int32
	most    atomic.Int32
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

// release opens the gate unless it is open.
func (g *gate) release() {
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *gate) handler(ctx context.Context, payload []byte) ([]byte, error) {
	n := g.running.Add(1)
	defer g.running.Add(-1)
	for {
		m := g.most.Load()
		if n <= m || g.most.CompareAndSwap(m, n) {
			break
		}
	}
	select {
	case <-g.open:
		return payload, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Events beyond the function's reserved concurrency wait in the queue and
// run as slots free up: the caller is answered 202 at once, nothing is
// dropped, at most Concurrency invocations run at a time.
func TestLambdaServiceAsyncConcurrency(t *testing.T) {
	t.Parallel()
	svc, url := startService(t)
	client := lambdaClient(url)
	g := newGate()
	require.NoError(t, svc.Register("work", g.handler, awslocal.FunctionConfig{Concurrency: 2, Timeout: time.Minute}))
	defer g.release()

	for range 5 {
		out, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("work"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)})
		require.NoError(t, err)
		require.EqualValues(t, 202, out.StatusCode)
		require.Empty(t, out.Payload)
	}
	st := waitStats(t, svc, "work", func(st awslocal.FunctionStats) bool { return st.Running == 2 && st.Queued == 3 })
	require.Equal(t, 2, st.Invocations)
	require.EqualValues(t, 2, g.running.Load())

	// A synchronous invocation beyond the concurrency is throttled.
	_, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("work"), Payload: []byte(`{}`)})
	var throttled *types.TooManyRequestsException
	require.ErrorAs(t, err, &throttled)
	require.Equal(t, types.ThrottleReasonReservedFunctionConcurrentInvocationLimitExceeded, throttled.Reason)

	g.open <- struct{}{} // one ends: one queued event starts
	waitStats(t, svc, "work", func(st awslocal.FunctionStats) bool {
		return st.Succeeded == 1 && st.Running == 2 && st.Queued == 2 && st.Invocations == 3
	})
	g.release()
	st = waitStats(t, svc, "work", func(st awslocal.FunctionStats) bool { return st.Succeeded == 5 })
	require.Equal(t, awslocal.FunctionStats{Invocations: 5, Succeeded: 5, Throttled: 1}, st)
	require.EqualValues(t, 2, g.most.Load(), "never more than Concurrency at once")
}

// failures collects what reaches a function's OnFailure.
type failures struct {
	mu  sync.Mutex
	got []awslocal.Failure
}

func (f *failures) add(fl awslocal.Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, fl)
}

func (f *failures) list() []awslocal.Failure {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]awslocal.Failure(nil), f.got...)
}

// A failing event is retried MaximumRetryAttempts times after the delays,
// with its request ID, then handed to OnFailure; an event that succeeds on
// a retry is not.
func TestLambdaServiceAsyncRetries(t *testing.T) {
	t.Parallel()
	svc, url := startService(t)
	client := lambdaClient(url)
	var mu sync.Mutex
	attempts := map[string][]int{} // request ID -> attempts seen
	failing := func(ctx context.Context, payload []byte) ([]byte, error) {
		inv, _ := awslocal.InvocationFromContext(ctx)
		mu.Lock()
		attempts[inv.RequestID] = append(attempts[inv.RequestID], inv.Attempt)
		mu.Unlock()
		if !inv.Async {
			return nil, errors.New("not async")
		}
		if string(payload) == `{"flaky":true}` && inv.Attempt > 1 {
			return payload, nil
		}
		return nil, errors.New("always fails")
	}
	fails := &failures{}
	delays := []time.Duration{5 * time.Millisecond, 10 * time.Millisecond}
	require.NoError(t, svc.Register("failing", failing, awslocal.FunctionConfig{RetryDelays: delays, OnFailure: fails.add}))
	require.NoError(t, svc.Register("once", failing, awslocal.FunctionConfig{RetryDelays: delays, OnFailure: fails.add, MaximumRetryAttempts: aws.Int(0)}))

	invoke := func(name, payload string) string {
		out, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: types.InvocationTypeEvent, Payload: []byte(payload)})
		require.NoError(t, err)
		id, _ := awsmiddleware.GetRequestIDMetadata(out.ResultMetadata)
		require.NotEmpty(t, id)
		return id
	}
	bad := invoke("failing", `{"bad":true}`)
	flaky := invoke("failing", `{"flaky":true}`)
	once := invoke("once", `{"bad":true}`)

	st := waitStats(t, svc, "failing", func(st awslocal.FunctionStats) bool { return st.Failed == 1 && st.Succeeded == 1 && st.Running == 0 })
	require.Equal(t, awslocal.FunctionStats{Invocations: 5, Succeeded: 1, Errors: 4, Retries: 3, Failed: 1}, st)
	st = waitStats(t, svc, "once", func(st awslocal.FunctionStats) bool { return st.Failed == 1 && st.Running == 0 })
	require.Equal(t, awslocal.FunctionStats{Invocations: 1, Errors: 1, Failed: 1}, st)

	mu.Lock()
	require.Equal(t, []int{1, 2, 3}, attempts[bad])
	require.Equal(t, []int{1, 2}, attempts[flaky])
	require.Equal(t, []int{1}, attempts[once])
	mu.Unlock()
	got := fails.list()
	require.Len(t, got, 2)
	byID := map[string]awslocal.Failure{got[0].RequestID: got[0], got[1].RequestID: got[1]}
	for id, want := range map[string]awslocal.Failure{bad: {Function: "failing", Attempts: 3}, once: {Function: "once", Attempts: 1}} {
		fl := byID[id]
		require.Equal(t, want.Function, fl.Function)
		require.Equal(t, want.Attempts, fl.Attempts)
		require.Equal(t, awslocal.ConditionRetriesExhausted, fl.Condition)
		require.JSONEq(t, `{"bad":true}`, string(fl.Payload))
		require.EqualError(t, fl.Err, "always fails")
	}
}

// An event older than MaximumEventAge is dropped to OnFailure: one that
// waits for a slot, without being invoked, and one whose retry would come
// too late.
func TestLambdaServiceMaximumEventAge(t *testing.T) {
	t.Parallel()
	svc, url := startService(t)
	client := lambdaClient(url)
	g := newGate()
	defer g.release()
	fails := &failures{}
	require.NoError(t, svc.Register("busy", g.handler, awslocal.FunctionConfig{
		Concurrency: 1, Timeout: time.Minute, MaximumEventAge: 200 * time.Millisecond, OnFailure: fails.add,
	}))
	require.NoError(t, svc.Register("late", func(context.Context, []byte) ([]byte, error) { return nil, errors.New("fails") }, awslocal.FunctionConfig{
		MaximumEventAge: 200 * time.Millisecond, RetryDelays: []time.Duration{time.Hour}, OnFailure: fails.add,
	}))
	event := func(name, payload string) {
		_, err := client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String(name), InvocationType: types.InvocationTypeEvent, Payload: []byte(payload)})
		require.NoError(t, err)
	}
	event("busy", `{"n":1}`)
	waitStats(t, svc, "busy", func(st awslocal.FunctionStats) bool { return st.Running == 1 })
	event("busy", `{"n":2}`) // waits for the slot the first holds
	event("late", `{"n":3}`)

	// Both are dropped while the first event still runs.
	require.Eventually(t, func() bool { return len(fails.list()) == 2 }, waitFor, tick)
	st, _ := svc.Stats("busy")
	require.Equal(t, awslocal.FunctionStats{Running: 1, Invocations: 1, Failed: 1}, st)
	st, _ = svc.Stats("late")
	require.Equal(t, awslocal.FunctionStats{Invocations: 1, Errors: 1, Retries: 1, Failed: 1}, st)
	for _, fl := range fails.list() {
		require.Equal(t, awslocal.ConditionEventAgeExceeded, fl.Condition)
		switch fl.Function {
		case "busy":
			require.JSONEq(t, `{"n":2}`, string(fl.Payload))
			require.Zero(t, fl.Attempts)
			require.NoError(t, fl.Err)
		case "late":
			require.JSONEq(t, `{"n":3}`, string(fl.Payload))
			require.Equal(t, 1, fl.Attempts)
			require.EqualError(t, fl.Err, "fails")
		}
	}
}

// Shutdown waits for the running invocations; when its ctx ends first it
// cancels theirs and returns.
func TestLambdaServiceShutdown(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	svc := awslocal.NewLambdaService(awslocal.LambdaServiceConfig{})
	served := make(chan error, 1)
	go func() { served <- svc.Serve(l) }()
	client := lambdaClient("http://" + l.Addr().String())
	g := newGate()
	defer g.release()
	require.NoError(t, svc.Register("held", g.handler, awslocal.FunctionConfig{Timeout: time.Minute}))

	_, err = client.Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("held"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)})
	require.NoError(t, err)
	waitStats(t, svc, "held", func(st awslocal.FunctionStats) bool { return st.Running == 1 })

	shut := make(chan error, 1)
	go func() { shut <- svc.Shutdown(context.Background()) }()
	require.NoError(t, <-served, "Serve returns once Shutdown began")
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while an invocation ran", err)
	default:
	}
	g.release()
	require.NoError(t, <-shut)
	st, _ := svc.Stats("held")
	require.Equal(t, 1, st.Succeeded)

	// A second service whose handler only stops when canceled.
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	svc2 := awslocal.NewLambdaService(awslocal.LambdaServiceConfig{})
	canceled := make(chan struct{})
	go func() { served <- svc2.Serve(l2) }()
	require.NoError(t, svc2.Register("stuck", func(ctx context.Context, _ []byte) ([]byte, error) {
		<-ctx.Done()
		close(canceled)
		return nil, ctx.Err()
	}, awslocal.FunctionConfig{Timeout: time.Minute}))
	_, err = lambdaClient("http://"+l2.Addr().String()).Invoke(context.Background(), &lambda.InvokeInput{FunctionName: aws.String("stuck"), InvocationType: types.InvocationTypeEvent, Payload: []byte(`{}`)})
	require.NoError(t, err)
	waitStats(t, svc2, "stuck", func(st awslocal.FunctionStats) bool { return st.Running == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, svc2.Shutdown(ctx), context.DeadlineExceeded)
	require.NoError(t, <-served)
	select {
	case <-canceled:
	case <-time.After(waitFor):
		t.Fatal("the invocation's ctx was not canceled")
	}
	waitStats(t, svc2, "stuck", func(st awslocal.FunctionStats) bool { return st.Running == 0 && st.Errors == 1 })
	require.Error(t, svc2.Register("late", echo, awslocal.FunctionConfig{}))
}
