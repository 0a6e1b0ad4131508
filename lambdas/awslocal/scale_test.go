package awslocal_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// holdPlugin has "hold", an async action that runs until release is closed
// (or its context ends), counting how many run at once, and "quick", an
// async action that returns at once.
type holdPlugin struct {
	running atomic.Int64
	peak    atomic.Int64
	release chan struct{}
}

func newHoldPlugin() *holdPlugin { return &holdPlugin{release: make(chan struct{})} }

func (p *holdPlugin) plugin() streamer.Plugin {
	return streamer.Plugin{Name: "hold", Actions: []streamer.Action{
		{
			Name:    "hold",
			Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
				n := p.running.Add(1)
				defer p.running.Add(-1)
				for {
					peak := p.peak.Load()
					if n <= peak || p.peak.CompareAndSwap(peak, n) {
						break
					}
				}
				_ = rep.Report(ctx, streamer.Update{Percentage: 1, Message: "holding"})
				select {
				case <-p.release:
					return "released", nil
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}),
		},
		{
			Name:    "quick",
			Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return "ok", nil
			}),
		},
	}}
}

// runScale serves the AWS path with plugins on a fresh table until the test
// ends, with the processor's emulated concurrency given. These tests are
// about how many jobs Lambda runs at once, so the tenant limits (whose
// counters are hot items, each a queue of transactions in DynamoDB Local)
// are off; limits_test.go tests them.
func runScale(t *testing.T, concurrency int, plugins ...streamer.Plugin) devserver.Info {
	t.Helper()
	_, _, info := startLocal(t, awslocal.Config{
		Plugins: plugins, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
		Concurrency: concurrency, ReapInterval: -1, KeyConcurrency: -1, MaxPending: -1,
	})
	return info
}

// dial connects as subject.
func dial(t *testing.T, info devserver.Info, subject string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lambdatest.Wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, info.WebSocketURL+"?token="+url.QueryEscape(lambdatest.Token(t, subject)), nil) //nolint:bodyclose // coder/websocket closes it
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func send(t *testing.T, c *websocket.Conn, frame string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lambdatest.Wait)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(frame)))
}

// waitRunning polls until n holds run at once.
func (p *holdPlugin) waitRunning(t *testing.T, n int64, within time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool { return p.running.Load() >= n }, within, 10*time.Millisecond,
		"%d holds should run at once; %d do (peak %d)", n, p.running.Load(), p.peak.Load())
}

// TestLongJobsDoNotHoldBackShortOnes: with 12 long jobs running, 50 short
// jobs of 50 other principals all complete long before any long job could
// end. When jobs ran inside the stream's batches, a long job held its
// stream lane, and the short jobs behind it in that lane waited for it.
func TestLongJobsDoNotHoldBackShortOnes(t *testing.T) {
	t.Parallel()
	holds := newHoldPlugin()
	defer close(holds.release)
	info := runScale(t, 1000, holds.plugin())

	for i := range 12 {
		c := dial(t, info, fmt.Sprintf("long-%d", i))
		send(t, c, fmt.Sprintf(`{"action":"hold","id":"long-%d"}`, i))
	}
	holds.waitRunning(t, 12, 3*lambdatest.Wait)

	// The long jobs run for as long as the test lasts, so a short job held
	// behind one would never complete; the bound is only there to end the
	// test, generous for a loaded machine (unloaded, the slowest short job
	// completes within a few seconds: see the log line below).
	const bound = 60 * time.Second
	var wg sync.WaitGroup
	took := make([]time.Duration, 50)
	for i := range 50 {
		c := dial(t, info, fmt.Sprintf("short-%d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			send(t, c, fmt.Sprintf(`{"action":"quick","id":"short-%d"}`, i))
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			for {
				_, data, err := c.Read(ctx)
				if err != nil {
					t.Errorf("short-%d did not complete within %v: %v", i, bound, err)
					return
				}
				var m streamer.Message
				if json.Unmarshal(data, &m) == nil && m.Type == streamer.TypeComplete {
					took[i] = time.Since(start)
					return
				}
			}
		}()
	}
	wg.Wait()
	require.Equal(t, int64(12), holds.running.Load(), "the long jobs are still running")
	var slowest time.Duration
	for _, d := range took {
		slowest = max(slowest, d)
	}
	t.Logf("50 short jobs beside 12 long ones: the slowest completed %v after it was sent", slowest)
}

// TestJobsRunAtOnceUpToTheConcurrency: 200 jobs all run at once, as the
// emulated function concurrency allows; inside stream batches at most
// lanes × batch concurrency (10 × 8) could.
func TestJobsRunAtOnceUpToTheConcurrency(t *testing.T) {
	t.Parallel()
	holds := newHoldPlugin()
	info := runScale(t, 1000, holds.plugin())
	conns := make([]*websocket.Conn, 20)
	for i := range conns {
		conns[i] = dial(t, info, fmt.Sprintf("many-%d", i))
	}
	for j := range 200 {
		send(t, conns[j%len(conns)], fmt.Sprintf(`{"action":"hold","id":"many-%d"}`, j))
	}
	holds.waitRunning(t, 200, 6*lambdatest.Wait)
	close(holds.release)
	for _, c := range conns {
		done := 0
		for done < 10 {
			for _, m := range lambdatest.ReadUntil(t, c, streamer.TypeComplete) {
				if m.Type == streamer.TypeComplete {
					done++
				}
			}
		}
	}
	require.Equal(t, int64(200), holds.peak.Load())
}

// TestJobThatNeverStartsEnds: a job whose invocation fails every time (its
// function crashes before it can claim the request) is retried by Lambda,
// then lands in the failure queue; the reaper dispatches its request again
// and, once it stalled more than MaxStalls times, ends it: the client gets a
// terminal PROCESSING_FAILED error, never silence, and the handler never ran.
func TestJobThatNeverStartsEnds(t *testing.T) {
	t.Parallel()
	holds := newHoldPlugin()
	var (
		mu       sync.Mutex
		failures []awslocal.Failure
		ran      atomic.Int64
	)
	_, _, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{holds.plugin()}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
		ReapInterval: 200 * time.Millisecond, StallTimeout: time.Second, MaxStalls: 1, Lease: time.Second,
		JobRetryDelays: []time.Duration{50 * time.Millisecond, 50 * time.Millisecond},
		WrapJob: func(next awslocal.LambdaHandler) awslocal.LambdaHandler {
			return func(ctx context.Context, payload []byte) ([]byte, error) {
				if strings.Contains(string(payload), "never-1") {
					return nil, errors.New("the function crashed at start")
				}
				ran.Add(1)
				return next(ctx, payload)
			}
		},
		OnJobFailure: func(f awslocal.Failure) {
			mu.Lock()
			failures = append(failures, f)
			mu.Unlock()
		},
	})

	c := dial(t, info, "nora")
	send(t, c, `{"action":"quick","id":"never-1"}`)
	got := lambdatest.ReadUntil(t, c, streamer.TypeError)
	last := got[len(got)-1]
	require.Equal(t, "never-1", last.RequestID)
	require.NotNil(t, last.Error)
	require.Equal(t, streamer.CodeProcessingFailed, last.Error.Code)
	require.Positive(t, last.Seq, "a terminal event")
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, ran.Load(), "no job of never-1 ever started")
	require.NotEmpty(t, failures, "the failed job went to the failure queue")
	require.Equal(t, 3, failures[0].Attempts, "the first try and Lambda's two retries")
	require.Contains(t, string(failures[0].Payload), "never-1")

	// Another principal's requests run meanwhile and after.
	other := dial(t, info, "omar")
	send(t, other, `{"action":"quick","id":"fine-1"}`)
	fine := lambdatest.ReadUntil(t, other, streamer.TypeComplete)
	require.Equal(t, "fine-1", fine[len(fine)-1].RequestID)
}
