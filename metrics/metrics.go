// Package metrics is Streamer's metrics interface: the [Recorder] the App
// reports to (streamer.Config.Metrics), the list of metrics it reports
// ([All]), a recorder that discards everything ([Discard], the default,
// which allocates nothing) and one that writes CloudWatch Embedded Metric
// Format lines ([EMF], what the Lambdas use). The Prometheus recorder of
// `streamer dev` is in package metrics/prom, so that this package, and
// the root package that imports it, depend on nothing.
//
// Dimensions are of low cardinality only: an action name (one the App
// registered, or a reserved one), an outcome, an error code. Tenants,
// subjects, connection and request ids are never dimensions.
package metrics

// Name names a metric. The Prometheus recorder prefixes it with
// "streamer_" and suffixes counters with "_total"; EMF uses it as it is.
type Name string

// Kind is how a metric is aggregated.
type Kind int

// Kinds.
const (
	// Counter counts events: Add with a positive delta.
	Counter Kind = iota + 1
	// Histogram observes durations, in seconds: Observe.
	Histogram
	// Gauge is a level that goes up and down: Add with either sign.
	Gauge
)

// The metrics the App reports.
const (
	// Requests counts the requests of actions, the frames' and those of
	// App.Submit (reserved actions are not counted), by action, outcome
	// and code. Outcome is "ok" (a sync
	// request answered with a result), "accepted" (an async request
	// stored, or attached to the stored one of the same id), "refused"
	// (refused before the handler ran: a rate limit, a validation, a
	// quota, a scope...; code is the error's) or "error" (a sync handler
	// failed; code is the error's).
	Requests Name = "requests"
	// SyncDuration is how long sync requests took, from the handler
	// chain's start to the answer, by action and outcome ("ok", "error",
	// "refused").
	SyncDuration Name = "sync_duration_seconds"
	// QueueLag is how long an async request waited between being queued
	// (created, or due again after a retry's backoff or a continuation)
	// and being claimed by a processor, by action.
	QueueLag Name = "queue_lag_seconds"
	// RunDuration is how long one run of an async request took, from its
	// claim to its end, by action and outcome: "ok", "error" (it ended
	// with an error, code set), "retry" (it failed and was re-queued to
	// be tried again), "continued" (it stopped before it could finish and
	// was handed back to continue: a Lambda's deadline, a shutdown, a
	// lost store) or "lost" (another processor took it over).
	RunDuration Name = "run_duration_seconds"
	// FirstProgress is how long a run took from its claim to its first
	// progress event stored, by action.
	FirstProgress Name = "first_progress_seconds"
	// Finished counts async requests that ended (their terminal event
	// stored), by action, outcome ("ok" or "error") and code.
	Finished Name = "finished"
	// ProgressEvents counts the progress reports of async handlers by
	// action and outcome: "stored" (stored and sent as an event) or
	// "coalesced" (replaced by a later report within the coalescing
	// interval, or dropped when the run ended, and never stored).
	ProgressEvents Name = "progress_events"
	// Posts counts the messages the processor posted to connections,
	// by outcome: "ok", "gone" (the connection was gone; it is dropped)
	// or "error".
	Posts Name = "posts"
	// Replies counts the messages the router sent to connections in
	// answer to their frames (acknowledgements, sync results, errors,
	// pongs, statuses), by outcome: "ok", "gone" or "error".
	Replies Name = "replies"
	// Retries counts failed attempts re-queued to be tried again, by
	// action and code.
	Retries Name = "retries"
	// Continuations counts runs handed back to be continued from their
	// checkpoint (a Lambda's deadline, a shutdown, a storage failure,
	// which re-queue the request), by action.
	Continuations Name = "continuations"
	// RateLimited counts frames refused with RATE_LIMITED, whichever
	// limit refused them (the App's, an action's, middleware.RateLimit),
	// by action: the action's name, a reserved action's, or "unknown"
	// for a name the App does not serve.
	RateLimited Name = "rate_limited"
	// ConnectionsOpen is how many WebSocket connections are open: a gauge
	// of the embedded runtime (`streamer dev`).
	ConnectionsOpen Name = "connections_open"
)

// Dimension names, as they appear in EMF lines and Prometheus labels.
const (
	DimAction   = "action"
	DimOutcome  = "outcome"
	DimCode     = "code"
	DimFunction = "function"
)

// Info describes one metric.
type Info struct {
	Name Name
	Kind Kind
	// Dims are the dimensions the metric carries, among DimAction,
	// DimOutcome and DimCode (the EMF recorder adds DimFunction).
	Dims []string
	// Help is a one-line description.
	Help string
}

// All lists every metric the App reports, with its kind and dimensions.
func All() []Info {
	ac, aoc, ao := []string{DimAction, DimCode}, []string{DimAction, DimOutcome, DimCode}, []string{DimAction, DimOutcome}
	return []Info{
		{Requests, Counter, aoc, "Requests of actions (frames and App.Submit) by action, outcome (ok, accepted, refused, error) and code."},
		{SyncDuration, Histogram, ao, "Duration of sync requests in seconds."},
		{QueueLag, Histogram, []string{DimAction}, "Seconds between an async request being due and its claim."},
		{RunDuration, Histogram, ao, "Duration of one run of an async request in seconds, by outcome (ok, error, retry, continued, lost)."},
		{FirstProgress, Histogram, []string{DimAction}, "Seconds from a run's claim to its first stored progress event."},
		{Finished, Counter, aoc, "Async requests ended, by action, outcome (ok, error) and code."},
		{ProgressEvents, Counter, ao, "Progress reports of async handlers, stored or coalesced away."},
		{Posts, Counter, []string{DimOutcome}, "Messages posted to connections by the processor, by outcome (ok, gone, error)."},
		{Replies, Counter, []string{DimOutcome}, "Messages the router sent to connections in answer to frames, by outcome (ok, gone, error)."},
		{Retries, Counter, ac, "Failed attempts re-queued to be tried again."},
		{Continuations, Counter, []string{DimAction}, "Runs handed back to continue from their checkpoint."},
		{RateLimited, Counter, []string{DimAction}, "Frames refused with RATE_LIMITED."},
		{ConnectionsOpen, Gauge, nil, "Open WebSocket connections (embedded runtime)."},
	}
}

// Dims are the dimensions of one measurement. Only those the metric
// declares ([Info].Dims) are used; empty ones are reported empty.
type Dims struct {
	Action  string
	Outcome string
	Code    string
}

// Get returns the dimension named name ("" for an unknown name).
func (d Dims) Get(name string) string {
	switch name {
	case DimAction:
		return d.Action
	case DimOutcome:
		return d.Outcome
	case DimCode:
		return d.Code
	}
	return ""
}

// Recorder receives measurements. Implementations must be safe for
// concurrent use and must not block for long: the App calls them on its
// request paths.
type Recorder interface {
	// Add adds delta to a Counter (delta positive) or a Gauge.
	Add(name Name, dims Dims, delta float64)
	// Observe records one value of a Histogram, in seconds.
	Observe(name Name, dims Dims, seconds float64)
}

// Discard is a Recorder that drops everything, at no cost: the App's
// default.
var Discard Recorder = discard{}

type discard struct{}

func (discard) Add(Name, Dims, float64)     {}
func (discard) Observe(Name, Dims, float64) {}
