package metrics

import (
	"io"
	"math"
	"strconv"
	"sync"
	"time"
)

// DefaultNamespace is the CloudWatch namespace of [EMF] when none is given.
const DefaultNamespace = "Streamer"

// EMF is a Recorder that writes each measurement as one line of
// CloudWatch Embedded Metric Format JSON to W: on Lambda, standard output,
// from which CloudWatch Logs extracts the metrics (no API call, no
// goroutine: each line is written before Add or Observe returns). Each
// line carries the metric's dimensions that have a value (CloudWatch
// refuses empty ones: a request answered "ok" has no code) plus
// "function" (when Function is set), as one dimension set. Counters and gauges have unit Count,
// histograms Seconds.
//
// Lines are written whole, one Write each, under a lock.
type EMF struct {
	// W receives the lines. Required.
	W io.Writer
	// Namespace is the CloudWatch namespace; default [DefaultNamespace].
	Namespace string
	// Function, when set, is added to every line as the dimension
	// "function" (the Lambda: router, processor...).
	Function string
	// Now stamps the lines; default time.Now.
	Now func() time.Time

	mu  sync.Mutex
	buf []byte
}

// Add implements [Recorder].
func (e *EMF) Add(name Name, dims Dims, delta float64) {
	e.write(name, dims, delta, "Count")
}

// Observe implements [Recorder].
func (e *EMF) Observe(name Name, dims Dims, seconds float64) {
	e.write(name, dims, seconds, "Seconds")
}

func (e *EMF) write(name Name, dims Dims, v float64, unit string) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return
	}
	names := dimsOf(name)
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	ns := e.Namespace
	if ns == "" {
		ns = DefaultNamespace
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	b := e.buf[:0]
	b = append(b, `{"_aws":{"Timestamp":`...)
	b = strconv.AppendInt(b, now().UnixMilli(), 10)
	b = append(b, `,"CloudWatchMetrics":[{"Namespace":`...)
	b = appendJSONString(b, ns)
	b = append(b, `,"Dimensions":[[`...)
	first := true
	if e.Function != "" {
		b = appendJSONString(b, DimFunction)
		first = false
	}
	for _, d := range names {
		if dims.Get(d) == "" {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, d)
	}
	b = append(b, `]],"Metrics":[{"Name":`...)
	b = appendJSONString(b, string(name))
	b = append(b, `,"Unit":"`...)
	b = append(b, unit...)
	b = append(b, `"}]}]}`...)
	if e.Function != "" {
		b = append(b, ',')
		b = appendJSONString(b, DimFunction)
		b = append(b, ':')
		b = appendJSONString(b, e.Function)
	}
	for _, d := range names {
		if dims.Get(d) == "" {
			continue
		}
		b = append(b, ',')
		b = appendJSONString(b, d)
		b = append(b, ':')
		b = appendJSONString(b, dims.Get(d))
	}
	b = append(b, ',')
	b = appendJSONString(b, string(name))
	b = append(b, ':')
	b = strconv.AppendFloat(b, v, 'g', -1, 64)
	b = append(b, "}\n"...)
	e.buf = b
	_, _ = e.W.Write(b)
}

// dimsByName maps each metric of [All] to its dimensions.
var dimsByName = func() map[Name][]string {
	m := map[Name][]string{}
	for _, i := range All() {
		m[i.Name] = i.Dims
	}
	return m
}()

// dimsOf returns the dimensions of name; a name not in [All] has none.
func dimsOf(name Name) []string { return dimsByName[name] }

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
