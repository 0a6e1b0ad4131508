package streamer_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/storage"
)

// countingRecorder keeps the sums of Add and the counts of Observe, by
// metric and dimensions.
type countingRecorder struct {
	mu  sync.Mutex
	add map[string]float64
	obs map[string]int
}

func newCountingRecorder() *countingRecorder {
	return &countingRecorder{add: map[string]float64{}, obs: map[string]int{}}
}

func recKey(name metrics.Name, d metrics.Dims) string {
	return fmt.Sprintf("%s{action=%s,outcome=%s,code=%s}", name, d.Action, d.Outcome, d.Code)
}

func (r *countingRecorder) Add(name metrics.Name, d metrics.Dims, delta float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.add[recKey(name, d)] += delta
}

func (r *countingRecorder) Observe(name metrics.Name, d metrics.Dims, seconds float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if seconds < 0 {
		r.obs["negative "+recKey(name, d)]++
	}
	r.obs[recKey(name, d)]++
}

// snapshot returns every series, "name{...} value" for sums and
// "name{...} #count" for observations, sorted.
func (r *countingRecorder) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for k, v := range r.add {
		out = append(out, fmt.Sprintf("%s %g", k, v))
	}
	for k, n := range r.obs {
		out = append(out, fmt.Sprintf("%s #%d", k, n))
	}
	sort.Strings(out)
	return out
}

// A scripted workload through the router and the processor: every metric
// is counted exactly, with only low-cardinality dimensions.
func TestMetricsOfAScriptedWorkload(t *testing.T) {
	t.Parallel()
	rec := newCountingRecorder()
	limited := streamer.Action{Name: "limited",
		Options: streamer.ActionOptions{Mode: streamer.ModeSync, RateLimit: streamer.RateLimit{Rule: ratelimit.Rule{Rate: 1, Per: time.Hour, Burst: 1}}},
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return 1, nil })}
	b := setup(t, setupOpts{noRun: true, extra: []streamer.Action{limited}, cfg: func(c *streamer.Config) {
		c.Metrics = rec
		// Coalescing that never ends within a run: of 5 reports, the
		// first is stored at once, the last when the run ends, and the
		// 3 between are coalesced away.
		c.CoalesceInterval = time.Hour
		c.ReservedRateLimit = streamer.RateLimit{Rule: ratelimit.Rule{Rate: 1, Per: time.Hour, Burst: 1}}
	}})
	ctx := context.Background()
	key := func(id string) storage.Key { return storage.Key{Tenant: "t1", Subject: "alice", ID: id} }
	// processAll delivers id until it is final (retries are due at once).
	processAll := func(id string) {
		t.Helper()
		deadline := time.Now().Add(wait)
		for {
			err := b.app.Process(ctx, key(id))
			var nd *streamer.NotDueError
			if err != nil && !errors.As(err, &nd) {
				require.NoError(t, err)
			}
			r, gerr := b.store.GetRequest(ctx, key(id))
			require.NoError(t, gerr)
			if r.Status.Final() {
				return
			}
			require.True(t, time.Now().Before(deadline), "%s not final in %v", id, wait)
			time.Sleep(5 * time.Millisecond)
		}
	}

	for i := range 3 {
		b.send(t, fmt.Sprintf(`{"action":"echo","id":"e%d","payload":{"i":%d}}`, i, i))
	}
	b.send(t, `{"action":"steps","id":"bad","payload":{"steps":0}}`)     // VALIDATION_ERROR at admission
	b.send(t, `{"action":"small","id":"big","payload":"0123456789abc"}`) // PAYLOAD_TOO_LARGE, sync
	b.send(t, `{"action":"no-such-action","id":"u1"}`)                   // INVALID_ACTION
	b.send(t, `{"action":"limited","id":"l1"}`)
	b.send(t, `{"action":"limited","id":"l2"}`) // RATE_LIMITED: the action's limit
	b.send(t, `{"action":"ping","id":"p1"}`)
	b.send(t, `{"action":"ping","id":"p2"}`) // RATE_LIMITED: the reserved bucket

	b.send(t, `{"action":"steps","id":"s1","payload":{"steps":5}}`)
	b.send(t, `{"action":"steps","id":"s2","payload":{"steps":5}}`)
	b.send(t, `{"action":"coded","id":"c1"}`)
	b.send(t, `{"action":"flaky","id":"f1"}`)
	gone := streamer.Conn{ID: "conn-gone", Principal: b.conn.Principal}
	b.sendAs(t, gone, `{"action":"coded","id":"c2"}`)
	b.rec.Gone(gone.ID)
	for _, id := range []string{"s1", "s2", "c1", "f1", "c2"} {
		processAll(id)
	}
	// A run stopped at a Lambda-like deadline is continued.
	b.send(t, `{"action":"steps","id":"h1","payload":{"steps":1,"hold":true}}`)
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	require.NoError(t, b.app.Process(dctx, key("h1")))

	// App.Submit counts as requests too: one accepted, one refused (a
	// sync action cannot be submitted), and not as replies (it has no
	// connection).
	_, err := b.app.Submit(ctx, *b.conn.Principal, "coded", nil, streamer.SubmitOptions{IdempotencyKey: "sub1"})
	require.NoError(t, err)
	_, err = b.app.Submit(ctx, *b.conn.Principal, "echo", nil, streamer.SubmitOptions{})
	require.Error(t, err)

	// Replies: one per frame sent (16), c2's ack included (its
	// connection went away after it).
	// Posts: s1 and s2 each started, 2 progress events, complete (8); c1
	// started and error (2); f1 three times started, twice retrying, then
	// complete (6); h1 started and its progress (2). c2's first post
	// finds its connection gone, which is then dropped.
	require.Equal(t, []string{
		"continuations{action=steps,outcome=,code=} 1",
		"finished{action=coded,outcome=error,code=QUOTA_EXCEEDED} 2",
		"finished{action=flaky,outcome=ok,code=} 1",
		"finished{action=steps,outcome=ok,code=} 2",
		"first_progress_seconds{action=steps,outcome=,code=} #3",
		"posts{action=,outcome=gone,code=} 1",
		"posts{action=,outcome=ok,code=} 18",
		"progress_events{action=steps,outcome=coalesced,code=} 6",
		"progress_events{action=steps,outcome=stored,code=} 5",
		"queue_lag_seconds{action=coded,outcome=,code=} #2",
		"queue_lag_seconds{action=flaky,outcome=,code=} #3",
		"queue_lag_seconds{action=steps,outcome=,code=} #3",
		"rate_limited{action=limited,outcome=,code=} 1",
		"rate_limited{action=ping,outcome=,code=} 1",
		"replies{action=,outcome=ok,code=} 16",
		"requests{action=coded,outcome=accepted,code=} 3",
		"requests{action=echo,outcome=ok,code=} 3",
		"requests{action=echo,outcome=refused,code=INVALID_ACTION} 1",
		"requests{action=flaky,outcome=accepted,code=} 1",
		"requests{action=limited,outcome=ok,code=} 1",
		"requests{action=limited,outcome=refused,code=RATE_LIMITED} 1",
		"requests{action=small,outcome=refused,code=PAYLOAD_TOO_LARGE} 1",
		"requests{action=steps,outcome=accepted,code=} 3",
		"requests{action=steps,outcome=refused,code=VALIDATION_ERROR} 1",
		"requests{action=unknown,outcome=refused,code=INVALID_ACTION} 1",
		"retries{action=flaky,outcome=,code=PROCESSING_FAILED} 2",
		"run_duration_seconds{action=coded,outcome=error,code=} #2",
		"run_duration_seconds{action=flaky,outcome=ok,code=} #1",
		"run_duration_seconds{action=flaky,outcome=retry,code=} #2",
		"run_duration_seconds{action=steps,outcome=continued,code=} #1",
		"run_duration_seconds{action=steps,outcome=ok,code=} #2",
		"sync_duration_seconds{action=echo,outcome=ok,code=} #3",
		"sync_duration_seconds{action=limited,outcome=ok,code=} #1",
		"sync_duration_seconds{action=small,outcome=refused,code=} #1",
	}, rec.snapshot())
	for _, s := range rec.snapshot() {
		require.NotContains(t, s, "alice")
		require.NotContains(t, s, "t1")
		require.NotContains(t, s, "no-such-action", "client-chosen names are not dimensions")
	}
}

// Without Config.Metrics, recording costs no allocation.
func TestDiscardRecorderAllocatesNothing(t *testing.T) {
	rec := metrics.Discard
	d := metrics.Dims{Action: "echo", Outcome: "ok"}
	n := testing.AllocsPerRun(100, func() {
		rec.Add(metrics.Requests, d, 1)
		rec.Observe(metrics.SyncDuration, d, 0.25)
	})
	require.Zero(t, n)
	require.False(t, strings.Contains(fmt.Sprint(metrics.All()), "tenant"), "no tenant dimension")
}
