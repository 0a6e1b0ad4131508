package devserver_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// metricsPlugin: a sync echo that validates its payload, an async job
// that reports 3 times, one that fails, and a rate-limited action.
func metricsPlugin() streamer.Plugin {
	type echoIn struct {
		Text string `json:"text" validate:"required"`
	}
	return streamer.Plugin{Name: "m", Actions: []streamer.Action{
		{Name: "echo", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.Typed(func(_ context.Context, in echoIn, _ streamer.Reporter) (echoIn, error) { return in, nil })},
		{Name: "job", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
				for i := 1; i <= 3; i++ {
					_ = rep.Report(ctx, streamer.Update{Percentage: float64(30 * i)})
				}
				return "done", nil
			})},
		{Name: "fail", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return nil, streamer.NewError("BOOM", "it failed")
			})},
		{Name: "limited", Options: streamer.ActionOptions{Mode: streamer.ModeSync,
			RateLimit: streamer.RateLimit{Rule: ratelimit.Rule{Rate: 1, Per: time.Hour, Burst: 1}}},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return 1, nil })},
	}}
}

// scrape reads /metrics: each sample line, by its name and labels as
// written ("name{labels}"), with its value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url+"/metrics", nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close() //nolint:errcheck // test
	require.Equal(t, http.StatusOK, res.StatusCode)
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	require.NoError(t, sc.Err())
	_, _ = io.Copy(io.Discard, res.Body)
	return out
}

// A scripted workload over real WebSockets, then /metrics: the counts are
// exact.
func TestMetricsEndpointCountsAWorkload(t *testing.T) {
	t.Parallel()
	info := start(t, devserver.Config{DataDir: t.TempDir(), Store: memory.New(), Plugins: []streamer.Plugin{metricsPlugin()}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, info.WebSocketURL, client.Options{Token: info.Token})
	require.NoError(t, err)

	for range 3 {
		_, err := c.Request(ctx, "echo", map[string]string{"text": "hi"})
		require.NoError(t, err)
	}
	_, err = c.Request(ctx, "echo", map[string]string{})
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, streamer.CodeValidation, ce.Code)
	for range 2 {
		_, err := c.Request(ctx, "job", nil)
		require.NoError(t, err)
	}
	_, err = c.Request(ctx, "fail", nil)
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "BOOM", ce.Code)
	_, err = c.Request(ctx, "limited", nil)
	require.NoError(t, err)
	_, err = c.Request(ctx, "limited", nil)
	require.ErrorAs(t, err, &ce)
	require.Equal(t, streamer.CodeRateLimited, ce.Code)

	want := map[string]float64{
		`streamer_requests_total{action="echo",code="",outcome="ok"}`:                      3,
		`streamer_requests_total{action="echo",code="VALIDATION_ERROR",outcome="refused"}`: 1,
		`streamer_requests_total{action="job",code="",outcome="accepted"}`:                 2,
		`streamer_requests_total{action="fail",code="",outcome="accepted"}`:                1,
		`streamer_requests_total{action="limited",code="",outcome="ok"}`:                   1,
		`streamer_requests_total{action="limited",code="RATE_LIMITED",outcome="refused"}`:  1,
		`streamer_rate_limited_total{action="limited"}`:                                    1,
		`streamer_finished_total{action="job",code="",outcome="ok"}`:                       2,
		`streamer_finished_total{action="fail",code="BOOM",outcome="error"}`:               1,
		`streamer_sync_duration_seconds_count{action="echo",outcome="ok"}`:                 3,
		`streamer_sync_duration_seconds_count{action="echo",outcome="refused"}`:            1,
		`streamer_queue_lag_seconds_count{action="job"}`:                                   2,
		`streamer_queue_lag_seconds_count{action="fail"}`:                                  1,
		`streamer_run_duration_seconds_count{action="job",outcome="ok"}`:                   2,
		`streamer_run_duration_seconds_count{action="fail",outcome="error"}`:               1,
		`streamer_first_progress_seconds_count{action="job"}`:                              2,
		`streamer_connections_open`:                                                        1,
		// The router's answers: 4 echo, 3 acks, 2 limited.
		`streamer_replies_total{outcome="ok"}`: 9,
	}
	// A job's terminal event may reach the client before the router has
	// sent (and counted) its acknowledgment (docs/protocol.md): scrape
	// until the counts settle.
	var m map[string]float64
	deadline := time.Now().Add(30 * time.Second)
	for {
		m = scrape(t, info.URL)
		settled := true
		for series, n := range want {
			settled = settled && m[series] == n
		}
		if settled || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for series, n := range want {
		require.Equal(t, n, m[series], series)
	}
	// Each job reported 3 times: the first report is stored at once and
	// the last when the run ends; the one between is stored or coalesced
	// away, depending on how fast the handler ran (the default interval,
	// 100ms). Every post reached the client: per job started, its
	// progress events, complete; for fail started and error.
	stored := m[`streamer_progress_events_total{action="job",outcome="stored"}`]
	coalesced := m[`streamer_progress_events_total{action="job",outcome="coalesced"}`]
	require.InDelta(t, 6.0, stored+coalesced, 0, "every report is counted once")
	require.GreaterOrEqual(t, stored, 4.0)
	require.InDelta(t, 2*2+stored+2, m[`streamer_posts_total{outcome="ok"}`], 0)
	require.Zero(t, m[`streamer_posts_total{outcome="gone"}`])
	for series := range m {
		require.NotContains(t, series, `"dev"`, "no subject in a label")
	}

	require.NoError(t, c.Close())
	deadline = time.Now().Add(30 * time.Second)
	for scrape(t, info.URL)[`streamer_connections_open`] != 0 {
		if time.Now().After(deadline) {
			require.FailNow(t, "streamer_connections_open did not drop to 0")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
