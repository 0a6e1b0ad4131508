package lambdaapp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

// lockedBuf is the metrics output of every function of a stack.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// emfSeries parses EMF lines: for each metric, its function, namespace and
// dimensions as "ns function name{dim=value,...}", the sum of its values
// (Count) or the number of its lines (Seconds, "#n").
func emfSeries(t *testing.T, out string) []string {
	t.Helper()
	sums, counts := map[string]float64{}, map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var l map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &l), line)
		aws := l["_aws"].(map[string]any)
		require.NotZero(t, aws["Timestamp"])
		cw := aws["CloudWatchMetrics"].([]any)
		require.Len(t, cw, 1)
		d := cw[0].(map[string]any)
		sets := d["Dimensions"].([]any)
		require.Len(t, sets, 1)
		var dims []string
		for _, name := range sets[0].([]any) {
			v, ok := l[name.(string)].(string)
			require.True(t, ok, "dimension %s has a value: %s", name, line)
			require.NotEmpty(t, v, "CloudWatch refuses empty dimension values: %s", line)
			if name != "function" {
				dims = append(dims, fmt.Sprintf("%s=%s", name, v))
			}
		}
		ms := d["Metrics"].([]any)
		require.Len(t, ms, 1)
		m := ms[0].(map[string]any)
		name := m["Name"].(string)
		key := fmt.Sprintf("%s %s %s{%s}", d["Namespace"], l["function"], name, strings.Join(dims, ","))
		v := l[name].(float64)
		switch m["Unit"] {
		case "Count":
			sums[key] += v
		case "Seconds":
			require.GreaterOrEqual(t, v, 0.0, line)
			counts[key]++
		default:
			t.Fatalf("unit %v: %s", m["Unit"], line)
		}
	}
	var out2 []string
	for k, v := range sums {
		out2 = append(out2, fmt.Sprintf("%s %g", k, v))
	}
	for k, n := range counts {
		out2 = append(out2, fmt.Sprintf("%s #%d", k, n))
	}
	sort.Strings(out2)
	return out2
}

// The Lambdas write their metrics as EMF lines, one per measurement, in
// the namespace of STREAMER_METRICS_NAMESPACE with the function as a
// dimension: a scripted workload through the router and the processor
// (DynamoDB Local) is counted exactly.
func TestLambdasWriteEMFMetrics(t *testing.T) {
	t.Parallel()
	lambdatest.DynamoDBLocal(t)
	var out lockedBuf
	s := newStackEnv(t, lambdaapp.Options{MetricsOutput: &out}, map[string]string{"STREAMER_METRICS_NAMESPACE": "Test/Streamer"})
	c, id := s.open(t, "erin")
	for i := range 3 {
		s.send(t, id, fmt.Sprintf(`{"action":"echo","id":"e%d","payload":{"i":%d}}`, i, i))
		require.Equal(t, streamer.TypeResponse, lambdatest.Read(t, c).Type)
	}
	s.send(t, id, `{"action":"delay","id":"bad","payload":{"ms":0}}`)
	require.Equal(t, streamer.CodeValidation, lambdatest.Read(t, c).Error.Code)
	// 2 steps 200 ms apart: above the 100 ms coalescing interval, so both
	// are stored.
	for _, f := range []string{
		`{"action":"delay","id":"d1","payload":{"ms":400,"steps":2}}`,
		`{"action":"delay","id":"d2","payload":{"ms":400,"steps":2}}`,
		`{"action":"fail","id":"f1","payload":{"code":"BOOM"}}`,
	} {
		s.send(t, id, f)
		require.Equal(t, streamer.TypeAcknowledgment, lambdatest.Read(t, c).Type)
	}
	for _, rid := range []string{"d1", "d2", "f1"} {
		_, insert := s.capture(t, isQueuedInsert(rid))
		require.Empty(t, s.process(t, context.Background(), decode(t, insert)))
	}
	ended := 0
	for ended < 3 {
		if m := lambdatest.Read(t, c); m.Terminal() {
			ended++
		}
	}
	// Posts: d1 and d2 each started, 2 progress events, complete; f1
	// started, its progress event, error.
	require.Equal(t, []string{
		"Test/Streamer processor finished{action=delay,outcome=ok} 2",
		"Test/Streamer processor finished{action=fail,outcome=error,code=BOOM} 1",
		"Test/Streamer processor first_progress_seconds{action=delay} #2",
		"Test/Streamer processor first_progress_seconds{action=fail} #1",
		"Test/Streamer processor posts{outcome=ok} 11",
		"Test/Streamer processor progress_events{action=delay,outcome=stored} 4",
		"Test/Streamer processor progress_events{action=fail,outcome=stored} 1",
		"Test/Streamer processor queue_lag_seconds{action=delay} #2",
		"Test/Streamer processor queue_lag_seconds{action=fail} #1",
		"Test/Streamer processor run_duration_seconds{action=delay,outcome=ok} #2",
		"Test/Streamer processor run_duration_seconds{action=fail,outcome=error} #1",
		"Test/Streamer router replies{outcome=ok} 7", // 3 results, 1 refusal, 3 acks
		"Test/Streamer router requests{action=delay,outcome=accepted} 2",
		"Test/Streamer router requests{action=delay,outcome=refused,code=VALIDATION_ERROR} 1",
		"Test/Streamer router requests{action=echo,outcome=ok} 3",
		"Test/Streamer router requests{action=fail,outcome=accepted} 1",
		"Test/Streamer router sync_duration_seconds{action=echo,outcome=ok} #3",
	}, emfSeries(t, out.String()))
	require.NotContains(t, out.String(), "erin", "no subject in the metrics")
}
