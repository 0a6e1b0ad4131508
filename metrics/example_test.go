package metrics_test

import (
	"os"
	"time"

	"github.com/streamer-go/streamer/metrics"
)

// The EMF recorder writes one CloudWatch Embedded Metric Format line per
// measurement; CloudWatch Logs turns the lines Lambda sends it into
// metrics, with no API call. The App takes it as Config.Metrics
// (lambdaapp does so, with the Lambda's name as the function dimension).
func ExampleEMF() {
	rec := &metrics.EMF{
		W:         os.Stdout,
		Namespace: "Streamer",
		Function:  "router",
		Now:       func() time.Time { return time.UnixMilli(1700000000000) },
	}
	rec.Add(metrics.Requests, metrics.Dims{Action: "echo", Outcome: "ok"}, 1)
	rec.Observe(metrics.SyncDuration, metrics.Dims{Action: "echo", Outcome: "ok"}, 0.012)
	// Output:
	// {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Streamer","Dimensions":[["function","action","outcome"]],"Metrics":[{"Name":"requests","Unit":"Count"}]}]},"function":"router","action":"echo","outcome":"ok","requests":1}
	// {"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"Streamer","Dimensions":[["function","action","outcome"]],"Metrics":[{"Name":"sync_duration_seconds","Unit":"Seconds"}]}]},"function":"router","action":"echo","outcome":"ok","sync_duration_seconds":0.012}
}
