// Package streamer is a framework for long-running requests over WebSocket,
// built for AWS Lambda behind API Gateway and runnable on one machine.
//
// A [Handler] receives a [Request] and a [Reporter]. It runs either
// synchronously, answering at once with a response, or asynchronously: the
// request is stored, picked up by a processor, and its progress and result
// are streamed back as events. The same handler runs unchanged in both modes.
//
// Handlers are grouped in [Plugin]s and wrapped by [Middleware]. An [App]
// built from a [Config] serves the wire protocol described in
// docs/protocol.md: [App.HandleMessage] is the router, [App.Process] the
// processor.
package streamer

import (
	"context"
	"encoding/json"
	"slices"
	"time"
)

// Principal is the verified identity of a connection. It comes only from the
// token presented at connect, never from a message.
type Principal struct {
	// Subject is the token's sub claim.
	Subject string `json:"sub"`
	// Tenant is the token's tenant_id claim; empty means no tenant.
	Tenant string `json:"tenant_id,omitempty"`
	// Scopes are granted by the scope (space separated) or permissions
	// (array) claims.
	Scopes []string `json:"scopes,omitempty"`
	// Claims holds every claim of the token.
	Claims map[string]any `json:"claims,omitempty"`
	// ExpiresAt is the token's exp; the zero time means it never expires.
	ExpiresAt time.Time `json:"exp,omitzero"`
}

// HasScope reports whether the principal was granted scope s.
func (p *Principal) HasScope(s string) bool { return slices.Contains(p.Scopes, s) }

// Mode says how an action runs.
type Mode int

// Modes. The zero value is ModeAuto.
const (
	// ModeAuto runs synchronously when the action's estimate is at most the
	// App's sync threshold, and asynchronously otherwise.
	ModeAuto Mode = iota
	// ModeSync runs the handler at once and replies with a response.
	ModeSync
	// ModeAsync stores the request; a processor runs it and streams events.
	ModeAsync
)

// String returns "auto", "sync" or "async".
func (m Mode) String() string {
	switch m {
	case ModeSync:
		return "sync"
	case ModeAsync:
		return "async"
	default:
		return "auto"
	}
}

// Stage says where a handler chain is running.
type Stage int

// Stages.
const (
	// StageSync: the router runs the handler for a synchronous request.
	StageSync Stage = iota + 1
	// StageAdmit: the router admits an asynchronous request. The chain ends
	// in storing the request instead of the handler, so middleware that
	// should refuse a request before it is stored (rate limits, for one)
	// acts here.
	StageAdmit
	// StageProcess: the processor runs the handler of a stored request.
	StageProcess
)

// String returns "sync", "admit" or "process".
func (s Stage) String() string {
	switch s {
	case StageSync:
		return "sync"
	case StageAdmit:
		return "admit"
	case StageProcess:
		return "process"
	default:
		return "unknown"
	}
}

// Request is what a handler receives.
type Request struct {
	// ID is the request id, chosen by the client or made by the server.
	ID string
	// Action names the handler.
	Action string
	// Payload is the raw JSON payload (nil when absent).
	Payload json.RawMessage
	// Metadata is informational, from the client.
	Metadata map[string]string
	// Principal is the verified identity of the sender.
	Principal Principal
	// ConnectionID is the connection that sent the request; empty for a
	// request submitted from a backend with [App.Submit].
	ConnectionID string
	// Stage is where the chain runs: sync, admit or process.
	Stage Stage
	// Attempt is 1 on the first run of an async request and grows with
	// each retry after a failure; 0 for sync requests and at admission.
	// A run that continues a stopped one (see [Checkpoint]) keeps its
	// attempt's number.
	Attempt int
	// Checkpoint is the state the request's previous runs saved last with
	// [Checkpoint] (JSON), nil on the first run or when none saved one:
	// the run continues from it. [CheckpointOf] decodes it.
	Checkpoint json.RawMessage
}

// Update is one progress report.
type Update struct {
	// Percentage is 0-100. Reports that would make it decrease are raised
	// to the last value, since the protocol promises it never decreases.
	Percentage float64
	// Message is a short human-readable description.
	Message string
	// Metadata is optional and sent as is.
	Metadata map[string]string
}

// Reporter receives a handler's progress. Implementations are safe for
// concurrent use. Report never blocks on the network for long: progress may
// be coalesced (at most 10 updates a second by default, the latest kept).
type Reporter interface {
	// Report records progress. It returns an error only when the request
	// can no longer make progress (its context is done, or it was
	// canceled); handlers may ignore the error, the context tells the same.
	Report(ctx context.Context, u Update) error
}

// ReporterFunc adapts a function to [Reporter].
type ReporterFunc func(ctx context.Context, u Update) error

// Report calls f.
func (f ReporterFunc) Report(ctx context.Context, u Update) error { return f(ctx, u) }

// Discard is a [Reporter] that drops every update.
var Discard Reporter = ReporterFunc(func(context.Context, Update) error { return nil })

// Handler runs one request. Handlers must honour ctx: it is canceled when the
// request times out, is canceled by the client, or the runtime shuts down.
// The returned result is marshaled with encoding/json; a json.RawMessage is
// sent as is. A returned error becomes a protocol error: an [*Error] keeps its
// code, anything else becomes INTERNAL_ERROR (sync) or PROCESSING_FAILED
// (async) with a generic message, and is logged.
type Handler interface {
	Serve(ctx context.Context, req *Request, rep Reporter) (any, error)
}

// HandlerFunc adapts a function to [Handler].
type HandlerFunc func(ctx context.Context, req *Request, rep Reporter) (any, error)

// Serve calls f.
func (f HandlerFunc) Serve(ctx context.Context, req *Request, rep Reporter) (any, error) {
	return f(ctx, req, rep)
}

// Validator is an optional capability of a [Handler]: Validate checks a
// request's payload before anything is stored or run. It returns an error
// with code VALIDATION_ERROR and field details on failure. The router calls
// it on the handler as registered, at the end of the sync and admission
// chains: after every middleware (so rate limits and auth refuse first,
// see docs/protocol.md, admission order), before the handler runs or the
// request is stored.
type Validator interface {
	Validate(ctx context.Context, req *Request) error
}

// Estimator is an optional capability of a [Handler]: Estimate predicts how
// long a request will take. For actions in [ModeAuto] it overrides
// [ActionOptions.Estimate]. It runs before the middleware and the
// [Validator] (the mode it picks decides the chain), so it must tolerate a
// payload that will fail validation.
type Estimator interface {
	Estimate(req *Request) time.Duration
}

// Middleware wraps a handler. Middleware declared first is outermost: it runs
// first and sees the result last.
type Middleware func(Handler) Handler

// RetryPolicy says how an async request is retried after a retryable error
// (see [Retryable]). Retries re-queue the request with a delay; nothing
// sleeps while holding it.
type RetryPolicy struct {
	// MaxAttempts is the number of runs, the first included. Zero means 3;
	// 1 means never retry.
	MaxAttempts int
	// InitialBackoff is the delay before the second attempt. Zero means 1s.
	InitialBackoff time.Duration
	// MaxBackoff caps the delay. Zero means 1 minute.
	MaxBackoff time.Duration
	// Multiplier grows the delay per attempt. Zero means 2.
	Multiplier float64
	// Jitter is the fraction of the delay that is randomized, 0 to 1. Zero
	// means 0.2; a negative value disables jitter.
	Jitter float64
}

// ActionOptions configure one action.
type ActionOptions struct {
	// Mode is sync, async or auto (the default).
	Mode Mode
	// Estimate is the expected duration, used by ModeAuto. Zero counts as
	// instant.
	Estimate time.Duration
	// Timeout bounds one run of the handler. Zero means the App's default
	// for the mode (sync 25s, async 15 minutes).
	Timeout time.Duration
	// Scopes must all be granted to the principal, or the request is
	// refused with FORBIDDEN before anything is stored.
	Scopes []string
	// MaxPayload limits the payload's size in bytes; larger payloads are
	// refused with PAYLOAD_TOO_LARGE. Zero means no limit below the frame
	// limit.
	MaxPayload int
	// Retry is the retry policy of async runs.
	Retry RetryPolicy
	// MaxDuration bounds an async request's running time in all, from its
	// first run to its end, across continuations and retries: past it the
	// request ends with TIMEOUT. Zero means the App's Retention.
	MaxDuration time.Duration
	// RateLimit limits how often the action may be called, in buckets of
	// the App's [Config.Limiter] keyed by principal (the default), tenant,
	// connection, or RateKeyGlobal: one bucket for the action, whoever
	// calls it. It is in addition to the App's [Config.RateLimit], and
	// checked after it and the action lookup, before the middleware, the
	// mode's estimate, the scopes and the payload's decoding and
	// validation, so a flood of invalid requests is refused as cheaply as
	// valid ones; requests of [App.Submit] are counted too. A refused
	// request is answered RATE_LIMITED with details.retry_after_ms. Zero:
	// no limit of the action's own.
	RateLimit RateLimit
	// Concurrency is how many requests of the action run at once at most
	// on the runtime, whichever tenants sent them: a global limit for the
	// action, in addition to the per-tenant Config.KeyConcurrency. A
	// request over it waits queued, and starts as soon as a run of the
	// action ends; the requests of other actions, its tenant's included,
	// go on meanwhile (docs/fairness.md). The embedded worker ([App.Run])
	// enforces it, and on AWS the DynamoDB store (a counter per action,
	// shared by every processor). Zero means no limit of the action's
	// own; negative is refused by [New].
	Concurrency int
}

// Action is a named handler with its options and middleware.
type Action struct {
	// Name is the action clients send: 1-128 characters of
	// [A-Za-z0-9_.:-].
	Name    string
	Handler Handler
	Options ActionOptions
	// Middleware wraps this action only, inside the plugin's middleware.
	Middleware []Middleware
}

// Plugin is a bundle of actions with their middleware, shared by importing
// the package that builds it.
type Plugin struct {
	// Name identifies the plugin in errors and logs.
	Name string
	// Actions are the plugin's handlers.
	Actions []Action
	// Middleware wraps every action of the plugin, inside the App's
	// middleware.
	Middleware []Middleware
}
