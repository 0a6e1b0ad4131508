package prom_test

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/metrics/prom"
)

// The Prometheus recorder registers every metric of metrics.All with a
// registry, which an HTTP handler (promhttp.HandlerFor) serves; the App
// takes it as Config.Metrics, as `streamer dev` does.
func ExampleNew() {
	reg := prometheus.NewRegistry()
	rec, err := prom.New(reg)
	if err != nil {
		panic(err)
	}
	_ = streamer.Config{Metrics: rec}
	rec.Add(metrics.Requests, metrics.Dims{Action: "echo", Outcome: "ok"}, 1)
	rec.Add(metrics.Requests, metrics.Dims{Action: "echo", Outcome: "ok"}, 1)
	families, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			if m.GetCounter() == nil {
				continue
			}
			fmt.Print(f.GetName())
			for _, l := range m.GetLabel() {
				fmt.Printf(" %s=%q", l.GetName(), l.GetValue())
			}
			fmt.Println(" ", m.GetCounter().GetValue())
		}
	}
	// Output:
	// streamer_requests_total action="echo" code="" outcome="ok"  2
}
