package prom_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/metrics/prom"
)

func TestRecorderUpdatesCollectors(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	rec, err := prom.New(reg)
	require.NoError(t, err)
	rec.Add(metrics.Requests, metrics.Dims{Action: "echo", Outcome: "ok"}, 1)
	rec.Add(metrics.Requests, metrics.Dims{Action: "echo", Outcome: "ok"}, 1)
	rec.Add(metrics.Requests, metrics.Dims{Action: "echo", Outcome: "refused", Code: "VALIDATION_ERROR"}, 1)
	rec.Add(metrics.Requests, metrics.Dims{Action: "echo", Outcome: "ok"}, -5) // counters never go down
	rec.Observe(metrics.QueueLag, metrics.Dims{Action: "job", Outcome: "ignored"}, 0.3)
	rec.Add(metrics.ConnectionsOpen, metrics.Dims{}, 2)
	rec.Add(metrics.ConnectionsOpen, metrics.Dims{}, -1)
	rec.Add("no_such_metric", metrics.Dims{}, 1)

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP streamer_requests_total Requests of actions (frames and App.Submit) by action, outcome (ok, accepted, refused, error) and code.
# TYPE streamer_requests_total counter
streamer_requests_total{action="echo",code="",outcome="ok"} 2
streamer_requests_total{action="echo",code="VALIDATION_ERROR",outcome="refused"} 1
# HELP streamer_connections_open Open WebSocket connections (embedded runtime).
# TYPE streamer_connections_open gauge
streamer_connections_open 1
`), "streamer_requests_total", "streamer_connections_open"))
	n, err := testutil.GatherAndCount(reg, "streamer_queue_lag_seconds")
	require.NoError(t, err)
	require.Equal(t, 1, n, "one series: action only")
}

func TestNewSkipsAndRefusesDuplicates(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	_, err := prom.New(reg, metrics.ConnectionsOpen)
	require.NoError(t, err)
	require.NoError(t, reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "streamer_connections_open", Help: "h"}, func() float64 { return 3 })),
		"the skipped metric's name is free")
	_, err = prom.New(reg)
	require.ErrorContains(t, err, "streamer_requests_total")
}
