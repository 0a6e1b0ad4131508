package streamer

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/progress"
	"github.com/streamer-go/streamer/ratelimit"
	rlmemory "github.com/streamer-go/streamer/ratelimit/memory"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/transport"
)

// Defaults of [Config].
const (
	DefaultSyncThreshold = 5 * time.Second
	DefaultSyncTimeout   = 25 * time.Second
	DefaultAsyncTimeout  = 15 * time.Minute
	DefaultRetention     = 24 * time.Hour
	DefaultLease         = time.Minute
	DefaultConnectionTTL = 2*time.Hour + 10*time.Minute
	DefaultMaxStalls     = 3
	DefaultStallTimeout  = 2 * time.Minute
	DefaultReapInterval  = time.Minute
)

// Config configures an [App]. Zero values mean the documented defaults.
type Config struct {
	// Store persists connections, requests and events. Required.
	Store storage.Store
	// Sender posts messages to connections. Required.
	Sender transport.Sender
	// Authenticator verifies tokens in HandleConnect. Required for
	// HandleConnect only.
	Authenticator Authenticator
	// Plugins provide the actions. Two plugins may not register the same
	// action, and none may register a reserved one (see [Reserved]: ping,
	// status, resume, cancel, actions, list).
	Plugins []Plugin
	// Middleware wraps every action, outermost first, outside each plugin's
	// and action's own middleware, whatever order plugins are listed in.
	Middleware []Middleware
	// Logger receives the framework's logs. The zero value is quiet.
	Logger zerolog.Logger
	// Metrics receives the App's measurements (package metrics lists
	// them: requests by action and outcome, latencies, queue lag,
	// progress stored and coalesced, posts, retries, continuations,
	// rate-limit refusals). Nil means metrics.Discard, which costs no
	// allocation. The Lambdas write CloudWatch EMF lines (metrics.EMF);
	// `streamer dev` serves Prometheus' /metrics (metrics/prom).
	Metrics metrics.Recorder

	// SyncThreshold decides ModeAuto actions: sync when the estimate is at
	// most this. Default 5s.
	SyncThreshold time.Duration
	// SyncTimeout is the default timeout of sync runs. Default 25s (API
	// Gateway cuts requests at 29s).
	SyncTimeout time.Duration
	// AsyncTimeout is the default timeout of one async run. Default 15m.
	AsyncTimeout time.Duration
	// CoalesceInterval is the minimum time between two progress events of a
	// request. Default 100ms (10 a second); negative disables coalescing.
	CoalesceInterval time.Duration
	// Clock drives coalescing and timestamps. Default: the system clock.
	Clock progress.Clock
	// Retention is how long requests and events are kept. Default 24h.
	Retention time.Duration
	// ConnectionTTL is how long a connection record is kept at most.
	// Default 2h10m (API Gateway closes connections after 2h).
	ConnectionTTL time.Duration
	// Lease is how long a processor's claim lasts without renewal; the
	// processor renews it at a third of that. Default 1m.
	Lease time.Duration
	// CancelPoll, when positive, makes the processor re-read a running
	// request at that interval to notice a cancel made by another process
	// (the AWS runtime). The embedded runtime cancels in-process and needs
	// no polling. Default 0: off.
	CancelPoll time.Duration
	// SubscriberRefresh, when positive, makes the processor also re-read a
	// request's subscribers at that interval. Without it the processor
	// reads them when a run starts, when the store refuses an event
	// because a connection subscribed since (storage's SubsVersion), and
	// before the terminal event: no read per progress event. Default 0.
	SubscriberRefresh time.Duration
	// MaxStalls is how many times a request may stop without finishing (its
	// processor crashed, or lost its lease) or be rescued by the reaper
	// before it is ended with PROCESSING_FAILED instead of being run again.
	// Default 3.
	MaxStalls int
	// StallTimeout is how long a live request may stay due (queued past
	// its NotBefore, or running past its lease) before [App.Reap] takes it
	// for stalled and hands it to a processor again. Default 2m.
	StallTimeout time.Duration
	// ReapInterval is how often [App.Run] reaps stalled requests. Default
	// 1m; negative disables it.
	ReapInterval time.Duration
	// MaxPending is how many queued plus running requests one principal
	// may have; one more is refused with QUOTA_EXCEEDED before anything is
	// stored. Default 1000; negative: no limit. The embedded runtime
	// ([App.Run]) counts it in memory; on AWS the DynamoDB store counts it
	// (dynamodb.Limits.MaxPending, STREAMER_MAX_PENDING) and the router
	// answers its refusal with this value.
	MaxPending int
	// MaxResultBytes is the largest result (JSON) of one request: a larger
	// one ends the request with QUOTA_EXCEEDED and is not stored. Default
	// 16 MiB; negative: no limit.
	MaxResultBytes int
	// MaxEvents is how many events one request may store: a handler that
	// reports more is stopped and the request ends with QUOTA_EXCEEDED.
	// Default 200,000; negative: no limit.
	MaxEvents int
	// KeyConcurrency is how many requests of one concurrency key the
	// embedded worker ([App.Run]) runs at once: the key is the request's
	// tenant, or its subject when the principal has no tenant. Ready
	// requests of different keys take turns, so one tenant's flood waits
	// behind its own limit instead of holding every slot. Default: a
	// quarter of Run's concurrency, at most [DefaultKeyConcurrency] (100
	// of the default 10,000); negative: no limit. On AWS
	// the DynamoDB store enforces the same per-key limit across every
	// processor (dynamodb.Limits.KeyConcurrency, STREAMER_KEY_CONCURRENCY;
	// docs/fairness.md). An action's [ActionOptions.Concurrency] bounds
	// its runs across keys, in addition.
	KeyConcurrency int
	// MaxCheckpoint is the largest checkpoint a handler may save
	// ([Checkpoint]), in bytes of JSON. Default 64 KiB. On DynamoDB the
	// checkpoint is stored in the request's item, whose every write is
	// billed by its size, and which may hold 400 KB in all.
	MaxCheckpoint int
	// MaxContinuations is how many times a request may be continued: a
	// run stopped before it finished (at a Lambda's deadline, a shutdown,
	// a crash) hands the request back to continue from its checkpoint.
	// Past it, the request ends with TIMEOUT. Default 100.
	MaxContinuations int
	// Endpoint is the transport endpoint stored with requests when the
	// connection has none (the API Gateway Management API URL).
	Endpoint string
	// TokenLeeway is the clock skew tolerated on a connection's token
	// expiry (Principal.ExpiresAt): past expiry plus the leeway, every
	// frame of the connection, reserved actions included, is answered
	// UNAUTHORIZED and the connection is closed when the Sender can close
	// it (see [App.TokenDeadline]). Zero means [DefaultTokenLeeway] (30s);
	// negative means none. A principal without ExpiresAt never expires.
	TokenLeeway time.Duration
	// NewID makes request ids when the client sends none. Default: ULIDs,
	// which sort by creation time.
	NewID func() string

	// RateLimit is the App's own limit on what clients send, its first
	// admission step: every frame of a connection takes a token right
	// after it is decoded and its principal's token is checked, before
	// any middleware, payload decoding or store access (docs/protocol.md,
	// admission order). Frames of actions take from the action bucket;
	// reserved actions (ping, status, resume, cancel, actions, list) from
	// a bucket of their own (ReservedRateLimit), so a client polling
	// status does not use up its budget of requests, nor the reverse.
	// Requests of [App.Submit] take from the action bucket too (keyed by
	// principal when Key is RateKeyConnection). A refused frame is
	// answered RATE_LIMITED with details.retry_after_ms. Zero: no limit
	// (the default). `streamer dev --rate-limit` and the Lambda functions'
	// STREAMER_RATE_LIMIT set it, keyed by principal.
	RateLimit RateLimit
	// ReservedRateLimit is the bucket of reserved actions' frames. Zero
	// (the default) means RateLimit's rule, key and FailOpen, in a bucket
	// of its own: with RateLimit "10/s,burst=20", a principal may send 10
	// action frames and 10 reserved frames a second (bursts of 20 each).
	// Set it to limit reserved frames alone, or differently.
	ReservedRateLimit RateLimit
	// Limiter holds the buckets of RateLimit, ReservedRateLimit and every
	// action's [ActionOptions.RateLimit]. Nil means an in-process limiter
	// (ratelimit/memory, on Clock), right for the embedded runtime, where
	// one process serves every connection; on Lambda, where each
	// invocation may run in another process, give the DynamoDB one
	// (ratelimit/dynamodb; lambdaapp does).
	Limiter ratelimit.Limiter
	// Tracer, when set, records OpenTelemetry spans of $connect, of each
	// sync request, of each async request's admission and of every run
	// of the processor (claim, run, event appends, posts, retries and the
	// terminal write). An async request is one trace from the frame to
	// its terminal event: the admission's trace context is stored with
	// the request (a W3C traceparent) and continued by whichever process
	// runs it. Nil (the default): tracing is off and costs nothing. See
	// docs/tracing.md; lambdaapp sets it from the OTEL_* variables.
	Tracer trace.TracerProvider
	// TrustClientTrace makes a client's W3C traceparent, sent in a
	// frame's metadata under "traceparent", the parent of the request's
	// trace (docs/protocol.md). Off by default: a client then cannot pick
	// the trace ids of the spans it causes. Only with Tracer.
	TrustClientTrace bool
}

// App is a configured Streamer runtime: the router ([App.HandleMessage]),
// the connection lifecycle ([App.HandleConnect], [App.HandleDisconnect]),
// the processor ([App.Process]) and, for the embedded runtime, a worker that
// runs queued requests in-process ([App.Run]). An App is safe for concurrent
// use.
type App struct {
	cfg Config
	log zerolog.Logger
	// logQuiet: log logs nothing (disabled or the zero Logger), found once.
	logQuiet bool
	metrics  metrics.Recorder
	routes   map[string]*route

	mu sync.Mutex
	// local holds the Process calls in flight in this App, by key.
	local  map[string][]*localRun
	worker *worker // set while Run runs
	// pending counts each principal's live requests while Run runs.
	pending pendingCounts

	// limiter holds the buckets of appLimit, reservedLimit and the
	// routes' limits; nil when there are none.
	limiter                 ratelimit.Limiter
	appLimit, reservedLimit *limit

	// tracing records spans (Config.Tracer); nil when off.
	tracing *tracing
}

// route is one registered action with its built chain.
type route struct {
	action Action
	plugin string
	// chain is the handler wrapped in all middleware; admit is the same
	// middleware around the admission terminal.
	chain Handler
	mw    []Middleware
	// limit is the action's ActionOptions.RateLimit; nil when none.
	limit *limit
}

// New validates cfg, registers the plugins and builds every middleware
// chain once.
func New(cfg Config) (*App, error) {
	if cfg.Store == nil {
		return nil, errors.New("streamer: Config.Store is required")
	}
	if cfg.Sender == nil {
		return nil, errors.New("streamer: Config.Sender is required")
	}
	setDefault(&cfg.SyncThreshold, DefaultSyncThreshold)
	setDefault(&cfg.SyncTimeout, DefaultSyncTimeout)
	setDefault(&cfg.AsyncTimeout, DefaultAsyncTimeout)
	setDefault(&cfg.CoalesceInterval, progress.DefaultInterval)
	setDefault(&cfg.Retention, DefaultRetention)
	setDefault(&cfg.ConnectionTTL, DefaultConnectionTTL)
	setDefault(&cfg.Lease, DefaultLease)
	setDefault(&cfg.StallTimeout, DefaultStallTimeout)
	setDefault(&cfg.ReapInterval, DefaultReapInterval)
	if cfg.MaxStalls == 0 {
		cfg.MaxStalls = DefaultMaxStalls
	}
	if cfg.MaxCheckpoint == 0 {
		cfg.MaxCheckpoint = DefaultMaxCheckpoint
	}
	if cfg.MaxContinuations == 0 {
		cfg.MaxContinuations = DefaultMaxContinuations
	}
	if cfg.MaxPending == 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	if cfg.MaxResultBytes == 0 {
		cfg.MaxResultBytes = DefaultMaxResultBytes
	}
	if cfg.MaxEvents == 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = progress.System
	}
	if cfg.NewID == nil {
		cfg.NewID = func() string { return ulid.Make().String() }
	}
	a := &App{cfg: cfg, log: cfg.Logger, routes: map[string]*route{}, local: map[string][]*localRun{}}
	a.logQuiet = quiet(&a.log)
	a.tracing = newTracing(&cfg)
	if a.metrics = cfg.Metrics; a.metrics == nil {
		a.metrics = metrics.Discard
	}
	if err := a.compileLimits(); err != nil {
		return nil, err
	}
	owner := map[string]string{}
	for _, p := range cfg.Plugins {
		if p.Name == "" {
			return nil, errors.New("streamer: a plugin has no Name")
		}
		for _, act := range p.Actions {
			if err := a.register(p, act, owner); err != nil {
				return nil, err
			}
		}
	}
	if a.limiter == nil && a.limited() {
		a.limiter = rlmemory.New(rlmemory.Options{Now: cfg.Clock.Now})
	}
	return a, nil
}

// compileLimits checks the App's own rate limits.
func (a *App) compileLimits() error {
	var err error
	if a.appLimit, err = compileLimit(appLimitName, a.cfg.RateLimit); err != nil {
		return fmt.Errorf("streamer: Config.RateLimit: %w", err)
	}
	reserved := a.cfg.ReservedRateLimit
	if !reserved.enabled() {
		reserved = a.cfg.RateLimit
	}
	if a.reservedLimit, err = compileLimit(reservedLimitName, reserved); err != nil {
		return fmt.Errorf("streamer: Config.ReservedRateLimit: %w", err)
	}
	a.limiter = a.cfg.Limiter
	return nil
}

// limited reports whether any rate limit is declared.
func (a *App) limited() bool {
	if a.appLimit != nil || a.reservedLimit != nil {
		return true
	}
	for _, rt := range a.routes {
		if rt.limit != nil {
			return true
		}
	}
	return false
}

// validate refuses settings that would break a guarantee.
func (c *Config) validate() error {
	if c.Lease < 0 || c.StallTimeout < 0 || c.MaxStalls < 0 || c.MaxCheckpoint < 0 || c.MaxContinuations < 0 {
		return errors.New("streamer: Config.Lease, StallTimeout, MaxStalls, MaxCheckpoint and MaxContinuations must not be negative")
	}
	// A run must be able to finish within its request's retention, or the
	// request expires under it.
	if c.Retention < c.AsyncTimeout+c.Lease {
		return fmt.Errorf("streamer: Config.Retention (%s) must exceed AsyncTimeout (%s) plus Lease (%s): a run would outlive its request", c.Retention, c.AsyncTimeout, c.Lease)
	}
	return nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

func (a *App) register(p Plugin, act Action, owner map[string]string) error {
	switch {
	case !ValidName(act.Name):
		return fmt.Errorf("streamer: plugin %q: action name %q must be 1-128 characters of [A-Za-z0-9_.:-]", p.Name, act.Name)
	case Reserved(act.Name):
		return fmt.Errorf("streamer: plugin %q: action %q is reserved by the framework", p.Name, act.Name)
	case act.Handler == nil:
		return fmt.Errorf("streamer: plugin %q: action %q has no Handler", p.Name, act.Name)
	case act.Options.MaxDuration < 0:
		return fmt.Errorf("streamer: plugin %q: action %q: MaxDuration (%s) must not be negative", p.Name, act.Name, act.Options.MaxDuration)
	case act.Options.Concurrency < 0:
		return fmt.Errorf("streamer: plugin %q: action %q: Concurrency (%d) must not be negative", p.Name, act.Name, act.Options.Concurrency)
	case act.Options.Timeout+a.cfg.Lease > a.cfg.Retention:
		return fmt.Errorf("streamer: plugin %q: action %q: Timeout (%s) plus Lease (%s) exceeds Config.Retention (%s): a run would outlive its request", p.Name, act.Name, act.Options.Timeout, a.cfg.Lease, a.cfg.Retention)
	}
	if prev, dup := owner[act.Name]; dup {
		return fmt.Errorf("streamer: action %q is registered by both plugin %q and plugin %q", act.Name, prev, p.Name)
	}
	owner[act.Name] = p.Name
	mw := make([]Middleware, 0, len(a.cfg.Middleware)+len(p.Middleware)+len(act.Middleware))
	mw = append(mw, a.cfg.Middleware...)
	mw = append(mw, p.Middleware...)
	mw = append(mw, act.Middleware...)
	lim, err := compileLimit("action:"+act.Name, act.Options.RateLimit)
	if err != nil {
		return fmt.Errorf("streamer: plugin %q: action %q: RateLimit: %w", p.Name, act.Name, err)
	}
	rt := &route{action: act, plugin: p.Name, mw: mw, limit: lim}
	rt.chain = Chain(a.gate(rt), mw...)
	a.routes[act.Name] = rt
	return nil
}

// Chain wraps h in mw, the first outermost. Nil middleware is skipped.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		if mw[i] != nil {
			h = mw[i](h)
		}
	}
	return h
}

// Actions lists the registered action names with the plugin of each.
func (a *App) Actions() map[string]string {
	out := make(map[string]string, len(a.routes))
	for name, r := range a.routes {
		out[name] = r.plugin
	}
	return out
}

// Logger returns the App's logger.
func (a *App) Logger() zerolog.Logger { return a.log }

func (a *App) now() time.Time { return a.cfg.Clock.Now() }
