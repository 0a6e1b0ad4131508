// Package prom is the Prometheus [metrics.Recorder] of `streamer dev`,
// built on github.com/prometheus/client_golang. Each metric of
// [metrics.All] is registered as streamer_NAME (counters
// streamer_NAME_total), its dimensions as labels.
package prom

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/streamer-go/streamer/metrics"
)

// Prefix is prepended to every metric's name.
const Prefix = "streamer_"

// Buckets are the histograms' buckets, in seconds: 5ms to 15 minutes.
var Buckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900}

// Recorder records [metrics.All] in Prometheus collectors. It is safe for
// concurrent use.
type Recorder struct {
	counters   map[metrics.Name]*prometheus.CounterVec
	gauges     map[metrics.Name]*prometheus.GaugeVec
	histograms map[metrics.Name]*prometheus.HistogramVec
	labels     map[metrics.Name][]string
}

// MetricName is the Prometheus name of m: streamer_NAME, with _total for
// counters.
func MetricName(m metrics.Info) string {
	if m.Kind == metrics.Counter {
		return Prefix + string(m.Name) + "_total"
	}
	return Prefix + string(m.Name)
}

// New registers every metric of [metrics.All] but those named in skip
// with reg and returns the recorder that updates them. A metric may be
// skipped to be registered otherwise, such as ConnectionsOpen as a
// GaugeFunc of the gateway's count (package devserver does).
func New(reg prometheus.Registerer, skip ...metrics.Name) (*Recorder, error) {
	r := &Recorder{
		counters:   map[metrics.Name]*prometheus.CounterVec{},
		gauges:     map[metrics.Name]*prometheus.GaugeVec{},
		histograms: map[metrics.Name]*prometheus.HistogramVec{},
		labels:     map[metrics.Name][]string{},
	}
outer:
	for _, m := range metrics.All() {
		for _, s := range skip {
			if s == m.Name {
				continue outer
			}
		}
		var c prometheus.Collector
		switch m.Kind {
		case metrics.Counter:
			v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricName(m), Help: m.Help}, m.Dims)
			r.counters[m.Name], c = v, v
		case metrics.Gauge:
			v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricName(m), Help: m.Help}, m.Dims)
			r.gauges[m.Name], c = v, v
		case metrics.Histogram:
			v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricName(m), Help: m.Help, Buckets: Buckets}, m.Dims)
			r.histograms[m.Name], c = v, v
		}
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("prom: register %s: %w", MetricName(m), err)
		}
		r.labels[m.Name] = m.Dims
	}
	return r, nil
}

// values returns the label values of name from d, in the metric's order.
func (r *Recorder) values(name metrics.Name, d metrics.Dims) []string {
	ls := r.labels[name]
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = d.Get(l)
	}
	return out
}

// Add implements [metrics.Recorder]. Unknown and skipped names are
// ignored.
func (r *Recorder) Add(name metrics.Name, d metrics.Dims, delta float64) {
	if c, ok := r.counters[name]; ok {
		if delta > 0 {
			c.WithLabelValues(r.values(name, d)...).Add(delta)
		}
		return
	}
	if g, ok := r.gauges[name]; ok {
		g.WithLabelValues(r.values(name, d)...).Add(delta)
	}
}

// Observe implements [metrics.Recorder]. Unknown and skipped names are
// ignored.
func (r *Recorder) Observe(name metrics.Name, d metrics.Dims, seconds float64) {
	if h, ok := r.histograms[name]; ok {
		h.WithLabelValues(r.values(name, d)...).Observe(seconds)
	}
}
