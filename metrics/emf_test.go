package metrics_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/metrics"
)

func TestEMFLineIsEmbeddedMetricFormat(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	e := &metrics.EMF{W: &buf, Namespace: "Acme/Streamer", Function: "router", Now: func() time.Time { return time.UnixMilli(1700000000123) }}
	e.Add(metrics.Requests, metrics.Dims{Action: "echo", Outcome: "refused", Code: "VALIDATION_ERROR"}, 1)
	e.Observe(metrics.QueueLag, metrics.Dims{Action: `we"ird`}, 0.25)
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	require.Len(t, lines, 2, "one line per measurement")
	var l struct {
		AWS struct {
			Timestamp         int64
			CloudWatchMetrics []struct {
				Namespace  string
				Dimensions [][]string
				Metrics    []struct{ Name, Unit string }
			}
		} `json:"_aws"`
		Function string  `json:"function"`
		Action   string  `json:"action"`
		Outcome  string  `json:"outcome"`
		Code     string  `json:"code"`
		Requests float64 `json:"requests"`
		Lag      float64 `json:"queue_lag_seconds"`
	}
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &l))
	require.Equal(t, int64(1700000000123), l.AWS.Timestamp)
	require.Len(t, l.AWS.CloudWatchMetrics, 1)
	d := l.AWS.CloudWatchMetrics[0]
	require.Equal(t, "Acme/Streamer", d.Namespace)
	require.Equal(t, [][]string{{"function", "action", "outcome", "code"}}, d.Dimensions)
	require.Equal(t, "requests", d.Metrics[0].Name)
	require.Equal(t, "Count", d.Metrics[0].Unit)
	require.Equal(t, "router", l.Function)
	require.Equal(t, "echo", l.Action)
	require.Equal(t, "refused", l.Outcome)
	require.Equal(t, "VALIDATION_ERROR", l.Code)
	require.InDelta(t, 1.0, l.Requests, 0)

	l.Action = ""
	require.NoError(t, json.Unmarshal([]byte(lines[1]), &l), "quotes are escaped")
	require.Equal(t, `we"ird`, l.Action)
	require.InDelta(t, 0.25, l.Lag, 0)
	require.Contains(t, lines[1], `"Unit":"Seconds"`)
	require.Contains(t, lines[1], `"Dimensions":[["function","action"]]`)
}

func TestEMFDefaultNamespaceAndNoFunction(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	e := &metrics.EMF{W: &buf}
	e.Add(metrics.Posts, metrics.Dims{Outcome: "gone"}, 1)
	require.Contains(t, buf.String(), `"Namespace":"Streamer"`)
	require.Contains(t, buf.String(), `"Dimensions":[["outcome"]]`)
	require.Contains(t, buf.String(), `"outcome":"gone","posts":1}`)
}

// Every metric has a kind and help; no dimension names a person.
func TestAllMetricsAreDescribed(t *testing.T) {
	t.Parallel()
	seen := map[metrics.Name]bool{}
	for _, m := range metrics.All() {
		require.False(t, seen[m.Name], "%s listed twice", m.Name)
		seen[m.Name] = true
		require.NotZero(t, m.Kind, m.Name)
		require.NotEmpty(t, m.Help, m.Name)
		for _, d := range m.Dims {
			require.Contains(t, []string{metrics.DimAction, metrics.DimOutcome, metrics.DimCode}, d, m.Name)
		}
	}
}
