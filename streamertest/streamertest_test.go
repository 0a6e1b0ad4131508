package streamertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/streamertest"
)

type greetIn struct {
	Name string `json:"name" validate:"required"`
}

type greetOut struct {
	Greeting string `json:"greeting"`
}

type countIn struct {
	To   int  `json:"to" validate:"min=1,max=100"`
	Hold bool `json:"hold"` // block until the context ends after counting
}

type testBundle struct {
	plugin  streamer.Plugin
	started chan struct{} // receives when "slow" starts
	runs    atomic.Int64  // runs of "flaky"
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{started: make(chan struct{}, 1)}
	b.plugin = streamer.Plugin{Name: "test", Actions: []streamer.Action{
		{Name: "greet", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.Typed(func(_ context.Context, in greetIn, _ streamer.Reporter) (greetOut, error) {
				return greetOut{Greeting: "hello " + in.Name}, nil
			})},
		{Name: "count", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.Typed(func(ctx context.Context, in countIn, rep streamer.Reporter) (map[string]int, error) {
				for i := 1; i <= in.To; i++ {
					if err := rep.Report(ctx, streamer.Update{Percentage: float64(100 * i / in.To), Message: fmt.Sprint(i)}); err != nil {
						return nil, err
					}
				}
				if in.Hold {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return map[string]int{"counted": in.To}, nil
			})},
		{Name: "quota", Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
			return nil, streamer.NewError("QUOTA_EXCEEDED", "no quota left")
		})},
		{Name: "flaky", Options: streamer.ActionOptions{Mode: streamer.ModeAsync,
			Retry: streamer.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Minute, MaxBackoff: time.Hour}},
			Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
				b.runs.Add(1)
				if req.Attempt < 3 {
					return nil, streamer.Retryable(errors.New("transient"))
				}
				return map[string]int{"attempt": req.Attempt}, nil
			})},
		{Name: "always_busy", Options: streamer.ActionOptions{Mode: streamer.ModeAsync,
			Retry: streamer.RetryPolicy{MaxAttempts: 2, InitialBackoff: time.Hour}},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return nil, streamer.Retryable(streamer.NewError("BUSY", "try later"))
			})},
		{Name: "slow", Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			select {
			case b.started <- struct{}{}:
			default:
			}
			<-ctx.Done()
			return nil, ctx.Err()
		})},
		{Name: "whoami", Options: streamer.ActionOptions{Scopes: []string{"admin"}},
			Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
				return map[string]any{"sub": req.Principal.Subject, "tenant": req.Principal.Tenant, "md": req.Metadata, "id": req.ID, "stage": req.Stage.String()}, nil
			})},
		{Name: "big", Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
			return strings.Repeat("é\"x", 100000), nil
		})},
	}}
	return b
}

func (b *testBundle) run(t *testing.T, action string, payload any, opts ...func(*streamertest.Options)) *streamertest.Outcome {
	t.Helper()
	out, err := streamertest.RunPlugin(context.Background(), b.plugin, action, payload, opts...)
	require.NoError(t, err)
	return out
}

func TestSync(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.run(t, "greet", greetIn{Name: "ada"})
	assert.Equal(t, streamer.ModeSync, out.Mode)
	assert.Nil(t, out.Err)
	assert.Empty(t, out.Code())
	assert.JSONEq(t, `{"greeting":"hello ada"}`, string(out.Result))
	got, err := streamertest.DecodeResult[greetOut](out)
	require.NoError(t, err)
	assert.Equal(t, "hello ada", got.Greeting)
	assert.Zero(t, out.Seq)
	assert.Zero(t, out.Attempts)
}

func TestAsyncProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.run(t, "count", countIn{To: 3})
	assert.Equal(t, streamer.ModeAsync, out.Mode)
	assert.Equal(t, []streamer.Update{{Percentage: 33, Message: "1"}, {Percentage: 66, Message: "2"}, {Percentage: 100, Message: "3"}}, out.Progress)
	assert.JSONEq(t, `{"counted":3}`, string(out.Result))
	assert.Equal(t, int64(5), out.Seq, "started, three progress events, complete")
	assert.Equal(t, 1, out.Attempts)
	require.Len(t, out.Lifecycle, 1)
	assert.Equal(t, streamer.TypeStarted, out.Lifecycle[0].Type)
	assert.Equal(t, 1, out.Lifecycle[0].Attempt)
	types := make([]string, 0, len(out.Messages))
	for _, m := range out.Messages {
		types = append(types, m.Type)
	}
	assert.Equal(t, []string{"acknowledgment", "started", "progress", "progress", "progress", "complete"}, types)
}

func TestWithModeRunsEitherWay(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sync := b.run(t, "count", countIn{To: 2}, streamertest.WithMode(streamer.ModeSync))
	async := b.run(t, "greet", greetIn{Name: "ada"}, streamertest.WithMode(streamer.ModeAsync))
	assert.Equal(t, streamer.ModeSync, sync.Mode)
	assert.Len(t, sync.Progress, 2)
	assert.JSONEq(t, `{"counted":2}`, string(sync.Result))
	assert.Equal(t, streamer.ModeAsync, async.Mode)
	assert.JSONEq(t, `{"greeting":"hello ada"}`, string(async.Result))
}

func TestCustomErrorCode(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, mode := range []streamer.Mode{streamer.ModeSync, streamer.ModeAsync} {
		out := b.run(t, "quota", nil, streamertest.WithMode(mode))
		assert.Equal(t, mode, out.Mode)
		assert.Equal(t, "QUOTA_EXCEEDED", out.Code())
		assert.Equal(t, "no quota left", out.Err.Message)
		assert.Nil(t, out.Result)
		_, err := streamertest.DecodeResult[any](out)
		assert.ErrorContains(t, err, "QUOTA_EXCEEDED")
	}
}

func TestValidationError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, mode := range []streamer.Mode{streamer.ModeSync, streamer.ModeAsync} {
		out := b.run(t, "greet", json.RawMessage(`{"name":""}`), streamertest.WithMode(mode))
		assert.Equal(t, streamer.ModeAuto, out.Mode, "refused before it ran")
		assert.Equal(t, streamer.CodeValidation, out.Code())
		fe := out.FieldErrors()
		require.Len(t, fe, 1)
		assert.Equal(t, "name", fe[0].Field)
		assert.Equal(t, "required", fe[0].Rule)
	}
}

func TestCancelAfterProgress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.run(t, "count", countIn{To: 5}, streamertest.WithCancelAfter(2))
	assert.Equal(t, streamer.CodeCanceled, out.Code())
	assert.Len(t, out.Progress, 2, "the handler saw the cancel at its third Report")
	assert.Equal(t, int64(4), out.Seq)
}

func TestCancelWhileBlocked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	r, err := streamertest.Start(ctx, b.plugin, "slow", nil, streamertest.WithMode(streamer.ModeAsync))
	require.NoError(t, err)
	<-b.started
	require.NoError(t, r.Cancel(ctx))
	out, err := r.Wait()
	require.NoError(t, err)
	assert.Equal(t, streamer.CodeCanceled, out.Code())
	assert.Equal(t, int64(2), out.Seq, "started, then the terminal error")
}

func TestCancelNeedsAsync(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := streamertest.RunPlugin(context.Background(), b.plugin, "greet", greetIn{Name: "ada"}, streamertest.WithCancelAfter(1))
	require.ErrorIs(t, err, streamertest.ErrNotAsync)

	r, err := streamertest.Start(context.Background(), b.plugin, "greet", greetIn{Name: "ada"})
	require.NoError(t, err)
	require.ErrorIs(t, r.Cancel(context.Background()), streamertest.ErrNotAsync)
	out, err := r.Wait()
	require.NoError(t, err)
	assert.Equal(t, streamer.ModeSync, out.Mode)
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.run(t, "slow", nil, streamertest.WithMode(streamer.ModeAsync), streamertest.WithTimeout(20*time.Millisecond))
	assert.Equal(t, streamer.CodeTimeout, out.Code())

	out = b.run(t, "slow", nil, streamertest.WithMode(streamer.ModeAsync), streamertest.WithDeadline(time.Now().Add(20*time.Millisecond)))
	assert.Equal(t, streamer.CodeTimeout, out.Code())
}

func TestSyncTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out, err := streamertest.RunPlugin(context.Background(), b.plugin, "slow", nil, streamertest.WithTimeout(20*time.Millisecond))
	require.NoError(t, err, "the TIMEOUT reply of a sync run arrives")
	assert.Equal(t, streamer.ModeSync, out.Mode)
	assert.Equal(t, streamer.CodeTimeout, out.Code())
}

func TestRetryableErrorIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now()
	out := b.run(t, "flaky", nil)
	assert.JSONEq(t, `{"attempt":3}`, string(out.Result))
	assert.Equal(t, 3, out.Attempts)
	assert.Equal(t, int64(3), b.runs.Load())
	assert.Less(t, time.Since(start), 10*time.Second, "the backoff (1m, then 2m) is jumped, not slept")
}

func TestRetryableErrorGivesUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.run(t, "always_busy", nil)
	assert.Equal(t, "BUSY", out.Code())
	assert.True(t, out.Err.Retryable)
	assert.Equal(t, 2, out.Attempts)
}

func TestPrincipalMetadataAndScopes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.run(t, "whoami", nil, streamertest.WithMetadata(map[string]string{"trace": "t-1"}), streamertest.WithRequestID("r-9"))
	assert.Equal(t, "r-9", out.RequestID)
	assert.JSONEq(t, `{"sub":"streamertest","tenant":"","md":{"trace":"t-1"},"id":"r-9","stage":"sync"}`, string(out.Result), "the default principal has the action's scopes")

	p := streamer.Principal{Subject: "bob", Tenant: "acme", Scopes: []string{"admin"}}
	out = b.run(t, "whoami", nil, streamertest.WithPrincipal(p), streamertest.WithMode(streamer.ModeAsync))
	assert.JSONEq(t, `{"sub":"bob","tenant":"acme","md":null,"id":"streamertest-1","stage":"process"}`, string(out.Result))

	out = b.run(t, "whoami", nil, streamertest.WithPrincipal(streamer.Principal{Subject: "eve"}))
	assert.Equal(t, streamer.CodeForbidden, out.Code())
}

func TestMiddlewareRuns(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var stages []string
	record := func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			stages = append(stages, req.Stage.String())
			return next.Serve(ctx, req, rep)
		})
	}
	b.plugin.Middleware = []streamer.Middleware{record}
	out := b.run(t, "count", countIn{To: 1}, streamertest.WithConfig(func(c *streamer.Config) {
		c.Middleware = []streamer.Middleware{record}
	}))
	require.Nil(t, out.Err)
	assert.Equal(t, []string{"admit", "admit", "process", "process"}, stages)
}

func TestRunAndRunHandler(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out, err := streamertest.Run(context.Background(), b.plugin.Actions[0], greetIn{Name: "ada"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"greeting":"hello ada"}`, string(out.Result))

	h := streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
		return req.Payload, nil
	})
	out, err = streamertest.RunHandler(context.Background(), h, json.RawMessage(`[1, 2]`))
	require.NoError(t, err)
	assert.Equal(t, streamer.ModeSync, out.Mode)
	assert.JSONEq(t, `[1,2]`, string(out.Result))
}

func TestBigResultIsReassembled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	want := strings.Repeat("é\"x", 100000)
	for _, mode := range []streamer.Mode{streamer.ModeSync, streamer.ModeAsync} {
		out := b.run(t, "big", nil, streamertest.WithMode(mode))
		got, err := streamertest.DecodeResult[string](out)
		require.NoError(t, err)
		assert.Equal(t, want, got)
		assert.Greater(t, len(out.Messages), 2, "the result came in chunks")
	}
}

func TestUnknownAction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	out := b.run(t, "nope", nil)
	assert.Equal(t, streamer.CodeInvalidAction, out.Code())
}

func TestRunErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := streamertest.RunPlugin(context.Background(), b.plugin, "greet", json.RawMessage(`{`))
	require.ErrorContains(t, err, "not valid JSON")
	_, err = streamertest.RunPlugin(context.Background(), streamer.Plugin{Name: "bad", Actions: []streamer.Action{{Name: "ping"}}}, "ping", nil)
	require.ErrorContains(t, err, "reserved")
}
