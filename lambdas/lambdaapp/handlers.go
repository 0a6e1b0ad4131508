package lambdaapp

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/internal/awsretry"
	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/ratelimit"
	rldynamodb "github.com/streamer-go/streamer/ratelimit/dynamodb"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/apigateway"
)

// ProcessConcurrency bounds how many records of one stream batch
// [Handlers.Process] runs at once.
const ProcessConcurrency = 8

// Handlers are the Lambda handlers of one function's configuration. They are
// safe for concurrent use; every goroutine they start ends before the
// handler returns.
type Handlers struct {
	cfg     Config
	app     *streamer.App
	log     zerolog.Logger
	invoker InvokeAPI
	// connLimiter takes the tokens of the connect function's rate limits
	// (nil when both are off, and in the other functions).
	connLimiter ratelimit.Limiter
	// flusher exports the spans of an invocation at its end; nil when
	// tracing is off.
	flusher flusher
	// invoked is set by the first invocation (cold_start in the logs).
	invoked atomic.Bool
}

// Options are optional dependencies of [New], for tests and the local AWS
// runtime (package awslocal). The Lambdas pass none.
type Options struct {
	// AWS replaces config.LoadDefaultConfig's configuration.
	AWS *aws.Config
	// Logger replaces the JSON logger on standard error.
	Logger *zerolog.Logger
	// Lease replaces the claim lease of the processor and the reaper
	// (streamer.DefaultLease): how long a request a dead processor held
	// waits before another may run it. The local AWS runtime uses a short
	// one.
	Lease time.Duration
	// Invoker replaces the Lambda client with which the processor invokes
	// itself (built from the AWS configuration by default).
	Invoker InvokeAPI
	// WrapStore, when set, wraps the DynamoDB store, for fault-injection
	// tests (storagetest.Faulty).
	WrapStore func(storage.Store) storage.Store
	// WrapSender, when set, wraps the Management API sender. The local AWS
	// runtime uses it to post every message to its gateway's current
	// Management API, whatever endpoint a connection stored in an earlier
	// run of the process.
	WrapSender func(transport.Sender) transport.Sender
	// Tracer replaces the tracer provider of STREAMER_TRACING (it becomes
	// streamer.Config.Tracer). When it has a ForceFlush method (as the
	// SDK's provider has), the handlers of [Handlers.Handler] call it at
	// the end of each invocation.
	Tracer trace.TracerProvider
	// MetricsOutput replaces standard output, where the handlers write
	// their metrics as CloudWatch Embedded Metric Format lines
	// (metrics.EMF).
	MetricsOutput io.Writer
	// Metrics, when set, replaces the EMF recorder: the local AWS runtime
	// gives the Prometheus one of `streamer dev`, or none.
	Metrics metrics.Recorder
}

// New builds the handlers: AWS clients from config.LoadDefaultConfig (so
// AWS_REGION, AWS_ENDPOINT_URL_DYNAMODB and AWS_CA_BUNDLE point them at
// local services), the DynamoDB store (its client retries throttles with
// the retryer of package internal/awsretry, as the sender's does), the
// Management API sender (with cfg.Endpoint as its default endpoint), the
// token verifier when a key is
// configured, and the App with the given plugins behind the Logging and
// Auth middleware, with the DynamoDB rate limiter (ratelimit/dynamodb, on
// the table) holding the buckets of cfg.RateLimit (the App's limit on
// every frame, reserved actions included) and of the actions' own. Logs are JSON lines on standard error, where Lambda sends them to
// CloudWatch. New makes no network call, but for the connect function
// whose HS256 secret is in SSM or Secrets Manager: that is read once, here
// ([ResolveJWTSecret]).
//
// When the DynamoDB client has a custom endpoint (DynamoDB Local), or
// cfg.LocalDynamoDB is set, its response checksum validation is off:
// DynamoDB Local does not send the CRC32 checksums AWS does.
func New(ctx context.Context, cfg Config, plugins []streamer.Plugin, opts Options) (*Handlers, error) {
	log := zerolog.New(os.Stderr).Level(cfg.LogLevel).With().Timestamp().Str("function", string(cfg.Function)).Logger()
	if opts.Logger != nil {
		log = *opts.Logger
	}
	// Lines logged with an invocation's context say which invocation.
	log = log.Hook(lambdaHook{})
	var awsCfg aws.Config
	if opts.AWS != nil {
		awsCfg = *opts.AWS
	} else {
		var err error
		if awsCfg, err = config.LoadDefaultConfig(ctx); err != nil {
			return nil, fmt.Errorf("lambdaapp: load the AWS configuration: %w", err)
		}
	}
	if awsCfg.Retryer == nil {
		// Throttles are retried longer than the SDK's default, with a
		// bounded backoff (package awsretry); AWS_MAX_ATTEMPTS still
		// overrides the number of attempts. A retryer of Options.AWS is
		// kept.
		awsCfg.Retryer = awsretry.Provider(awsretry.Options{})
	}
	db := awsdynamodb.NewFromConfig(awsCfg, func(o *awsdynamodb.Options) {
		// BaseEndpoint is resolved (from AWS_ENDPOINT_URL_DYNAMODB,
		// AWS_ENDPOINT_URL or the shared config) before option functions
		// run; it is nil for AWS itself.
		o.DisableValidateResponseChecksum = cfg.LocalDynamoDB || o.BaseEndpoint != nil
	})
	store, err := dynamodb.New(dynamodb.Config{Client: db, Table: cfg.Table, Logger: log,
		Limits: dynamodb.Limits{MaxPending: cfg.MaxPending, KeyConcurrency: cfg.KeyConcurrency, Actions: actionLimits(plugins)}})
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: %s: %w", EnvTable, err)
	}
	var st storage.Store = store
	if opts.WrapStore != nil {
		st = opts.WrapStore(store)
	}
	apiSender, err := apigateway.New(apigateway.Config{Endpoint: cfg.Endpoint, AWS: awsCfg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: Management API sender: %w", err)
	}
	var sender transport.Sender = apiSender
	if opts.WrapSender != nil {
		sender = opts.WrapSender(sender)
	}
	if opts.Lease > 0 {
		cfg.Lease = opts.Lease
	}
	mw := []streamer.Middleware{middleware.Logging(log), middleware.Auth(middleware.AuthOptions{})}
	// The buckets of STREAMER_RATE_LIMIT and of the actions' own
	// RateLimit are items of the table, shared by every instance.
	limiter, err := rldynamodb.New(rldynamodb.Config{Client: db, Table: cfg.Table})
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: rate limiter: %w", err)
	}
	var connLimiter ratelimit.Limiter
	if cfg.Function == Connect {
		if cfg.NewConnectionsPerIP.Rate > 0 || cfg.NewConnectionsPerPrincipal.Rate > 0 {
			if connLimiter, err = rldynamodb.New(rldynamodb.Config{Client: db, Table: cfg.Table}); err != nil {
				return nil, fmt.Errorf("lambdaapp: %s/%s: %w", EnvNewConnectionsPerIP, EnvNewConnectionsPerPrincipal, err)
			}
		}
		st = admitting(st, store, cfg, connLimiter)
	}
	metricsOut := opts.MetricsOutput
	if metricsOut == nil {
		metricsOut = os.Stdout
	}
	ns := cfg.MetricsNamespace
	if ns == "" {
		ns = metrics.DefaultNamespace
	}
	var rec metrics.Recorder = &metrics.EMF{W: metricsOut, Namespace: ns, Function: string(cfg.Function)}
	if opts.Metrics != nil {
		rec = opts.Metrics
	}
	appCfg := streamer.Config{
		Metrics: rec,
		Store:   st, Sender: sender, Plugins: plugins, Logger: log,
		Middleware: mw, Limiter: limiter, RateLimit: streamer.RateLimit{Rule: cfg.RateLimit},
		SyncThreshold: cfg.SyncThreshold, Retention: cfg.Retention,
		SubscriberRefresh: cfg.SubscriberRefresh, CancelPoll: cfg.CancelPoll, Endpoint: cfg.Endpoint,
		StallTimeout: cfg.StallTimeout, MaxStalls: cfg.MaxStalls, Lease: cfg.Lease,
		MaxContinuations: cfg.MaxContinuations, MaxCheckpoint: cfg.MaxCheckpoint,
		MaxPending: cfg.MaxPending,
	}
	tp, fl, err := tracerProvider(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	appCfg.Tracer, appCfg.TrustClientTrace = tp, cfg.TraceClient
	if cfg.Function == Connect {
		// Once per cold start: the secret is kept in the verifier.
		if err := ResolveJWTSecret(ctx, &cfg, awsCfg); err != nil {
			return nil, err
		}
	}
	if cfg.JWTSecret != nil || cfg.JWTPublicKey != nil || cfg.JWTJWKSURL != "" {
		auth, err := middleware.NewJWT(cfg.jwtConfig())
		if err != nil {
			return nil, fmt.Errorf("lambdaapp: %s/%s/%s/%s: %w", EnvJWTSecret, EnvJWTPublicKey, EnvJWTJWKSURL, EnvJWTAlgorithms, err)
		}
		appCfg.Authenticator = auth
	}
	app, err := streamer.New(appCfg)
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: %w", err)
	}
	h := &Handlers{cfg: cfg, app: app, log: log, invoker: opts.Invoker, connLimiter: connLimiter, flusher: fl}
	if h.invoker == nil && cfg.Function == Processor {
		h.invoker = lambda.NewFromConfig(awsCfg)
	}
	return h, nil
}

// App returns the App the handlers run.
func (h *Handlers) App() *streamer.App { return h.app }

// endpoint is where replies to a connection go: Config.Endpoint when set,
// else the Management API of the event's domain name and stage.
func (h *Handlers) endpoint(rc events.APIGatewayWebsocketProxyRequestContext) string {
	if h.cfg.Endpoint != "" || rc.DomainName == "" {
		return h.cfg.Endpoint
	}
	return apigateway.EndpointFromRequest(rc.DomainName, rc.Stage)
}

// Connect is the $connect route: it verifies the token (an "Authorization:
// Bearer" header, then the Authorization and token query parameters; the
// multi-value maps are read when the single-value ones are absent) and
// stores the connection with its endpoint. A refused token answers 401, and
// API Gateway refuses the upgrade; a storage failure is returned as the
// invocation's error (API Gateway answers 500).
//
// The connection limits answer 429, with a Retry-After header and a body
// naming the limit, and API Gateway refuses the upgrade: before the token
// is verified, STREAMER_NEW_CONNECTIONS_PER_IP (by the event's source
// address); after it, STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL, then
// STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL (the connection is stored only
// when the principal's count of open connections, kept in the table, is
// below it).
func (h *Handlers) Connect(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	connID := ev.RequestContext.ConnectionID
	var ref *refusal
	if err := h.checkSourceIP(ctx, ev); errors.As(err, &ref) {
		// Debug: a flood from one address, before any token, must not
		// flood the logs too.
		h.log.Debug().Str("connection_id", connID).Str("source_ip", ev.RequestContext.Identity.SourceIP).Msg("connection refused: " + ref.reason)
		return ref.response(), nil
	} else if err != nil {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, fmt.Errorf("lambdaapp: connect %s: %w", connID, err)
	}
	ctx = h.invocation(ctx)
	headers := ev.Headers
	if len(headers) == 0 {
		headers = first(ev.MultiValueHeaders)
	}
	query := ev.QueryStringParameters
	if len(query) == 0 {
		query = first(ev.MultiValueQueryStringParameters)
	}
	token := middleware.TokenFromMaps(headers, query)
	_, err := h.app.HandleConnect(ctx, connID, h.endpoint(ev.RequestContext), token)
	switch {
	case errors.As(err, &ref):
		h.log.Info().Str("connection_id", connID).Msg("connection refused: " + ref.reason)
		return ref.response(), nil
	case errors.Is(err, streamer.ErrUnauthorized):
		h.log.Info().Ctx(ctx).Err(err).Str("connection_id", connID).Msg("connection refused")
		return events.APIGatewayProxyResponse{StatusCode: http.StatusUnauthorized, Body: "unauthorized"}, nil
	case err != nil:
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, fmt.Errorf("lambdaapp: connect %s: %w", connID, err)
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

// first reads a multi-value map as a single-value one (the first values).
func first(m map[string][]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

// Disconnect is the $disconnect route: it forgets the connection. Its
// requests keep running, and their events stay stored for a resume.
func (h *Handlers) Disconnect(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	ctx = h.invocation(ctx)
	if err := h.app.HandleDisconnect(ctx, ev.RequestContext.ConnectionID); err != nil {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, fmt.Errorf("lambdaapp: %w", err)
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

// Route is the $default route, the router. Every reply goes through the
// Management API, so the response has an empty body. A base64-encoded body
// is a binary frame, which the router answers with INVALID_MESSAGE; one that
// does not decode is answered 400. Failures to reach storage (already
// answered UNAVAILABLE to the client) are returned as the invocation's
// error.
func (h *Handlers) Route(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	ctx = h.invocation(ctx)
	data, binary, err := body(ev)
	if err != nil {
		h.log.Warn().Ctx(ctx).Err(err).Str("connection_id", ev.RequestContext.ConnectionID).Msg("unreadable message")
		return events.APIGatewayProxyResponse{StatusCode: http.StatusBadRequest}, nil
	}
	conn := streamer.Conn{ID: ev.RequestContext.ConnectionID, Endpoint: h.endpoint(ev.RequestContext)}
	if err := h.app.HandleMessage(ctx, conn, data, binary); err != nil {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, fmt.Errorf("lambdaapp: %w", err)
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

// body is a message event's data, and whether it is a binary frame (which
// API Gateway delivers base64-encoded).
func body(ev events.APIGatewayWebsocketProxyRequest) ([]byte, bool, error) {
	if !ev.IsBase64Encoded {
		return []byte(ev.Body), false, nil
	}
	data, err := base64.StdEncoding.DecodeString(ev.Body)
	if err != nil {
		return nil, true, fmt.Errorf("lambdaapp: base64 body: %w", err)
	}
	return data, true, nil
}

// QueuedKey reads a stream record as Lambda delivers it. It returns the
// request's key and true when the record inserts or modifies a request item
// into status queued, and false for any other record, and for a queued
// request that stays queued the same (a connection subscribed to it: see
// dynamodb.NewlyQueued), so a client that resumes a delayed request does
// not dispatch another job. The new image is
// converted to the SDK's attribute values and read by storage/dynamodb, the
// package that wrote it. A request image that cannot be read is an error.
func QueuedKey(rec events.DynamoDBEventRecord) (storage.Key, bool, error) {
	if rec.EventName != "INSERT" && rec.EventName != "MODIFY" {
		return storage.Key{}, false, nil
	}
	img, err := FromEventImage(rec.Change.NewImage)
	if err != nil {
		return storage.Key{}, false, fmt.Errorf("lambdaapp: record %s: new image: %w", rec.Change.SequenceNumber, err)
	}
	var old map[string]types.AttributeValue
	if rec.EventName == "MODIFY" && len(rec.Change.OldImage) > 0 {
		if old, err = FromEventImage(rec.Change.OldImage); err != nil {
			old = nil // unreadable: dispatch, the claim decides
		}
	}
	k, ok, err := dynamodb.NewlyQueued(old, img)
	if err != nil {
		return storage.Key{}, false, fmt.Errorf("lambdaapp: record %s: %w", rec.Change.SequenceNumber, err)
	}
	return k, ok, nil
}

// ReapResult is the reaper's response: how many stalled requests one run
// handed back to the processor or ended.
type ReapResult struct {
	Reaped int `json:"reaped"`
}

// Reap is the reaper, invoked on a schedule (an EventBridge rule, once a
// minute in serverless.yml; the event's content is not used). It runs
// [streamer.App.Reap] once: each request that stayed due longer than
// Config.StallTimeout (its stream record was never processed, or its
// processor died) is claimed, which fences out a processor still writing to
// it, and re-queued, which the stream delivers to the processor again; a
// canceling one is finished canceled, and one that stalled more than
// Config.MaxStalls times is ended with PROCESSING_FAILED, its terminal
// event posted to its subscribers. A failure to list or settle a request is
// the invocation's error, after the others are handled; the next run tries
// again.
func (h *Handlers) Reap(ctx context.Context, _ events.EventBridgeEvent) (ReapResult, error) {
	ctx = h.invocation(ctx)
	start := time.Now()
	n, err := h.app.Reap(ctx)
	lev := h.log.Debug()
	if n > 0 {
		lev = h.log.Info()
	}
	if err != nil {
		lev = h.log.Error().Err(err)
	}
	lev.Ctx(ctx).Int("reaped", n).Dur("took", time.Since(start)).Msg("reaper run")
	if err != nil {
		return ReapResult{Reaped: n}, fmt.Errorf("lambdaapp: %w", err)
	}
	return ReapResult{Reaped: n}, nil
}

// actionLimits is every action's ActionOptions.Concurrency that is set, by
// name: the store counts their runs across every processor.
func actionLimits(plugins []streamer.Plugin) map[string]int {
	out := map[string]int{}
	for _, p := range plugins {
		for _, a := range p.Actions {
			if a.Options.Concurrency > 0 {
				out[a.Name] = a.Options.Concurrency
			}
		}
	}
	return out
}
