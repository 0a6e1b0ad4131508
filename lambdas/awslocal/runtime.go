package awslocal

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/internal/awsretry"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/local"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// Config configures [Run].
type Config struct {
	// Listener is where the gateway serves (/ws and Handlers). Required.
	// The Management API listens on a loopback address of its own
	// (devserver.Info.ManagementURL); /@connections/ here is refused (403).
	Listener net.Listener
	// DynamoDBEndpoint is DynamoDB Local's URL (http://127.0.0.1:PORT).
	// Required.
	DynamoDBEndpoint string
	// Table is created when missing; default "streamer-local".
	Table string
	// Secret is the HS256 key of tokens (at least 32 bytes). Required.
	Secret []byte
	// Plugins are served by the router and the processor.
	Plugins []streamer.Plugin
	// Handlers are extra HTTP routes, as in devserver.
	Handlers map[string]http.Handler
	// Metrics receives the functions' metrics (lambdaapp.Options.Metrics)
	// instead of EMF lines on standard output; nil: none
	// (metrics.Discard). `streamer dev --aws-local` gives the Prometheus
	// recorder it serves at /metrics.
	Metrics     metrics.Recorder
	Logger      zerolog.Logger
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// ReapInterval is how often the reaper handler runs, standing in for
	// serverless.yml's schedule; default [streamer.DefaultReapInterval] (the
	// schedule's rate), negative disables it.
	ReapInterval time.Duration
	// StallTimeout and MaxStalls are the functions' STREAMER_STALL_TIMEOUT
	// and STREAMER_MAX_STALLS; zero means their defaults.
	StallTimeout time.Duration
	MaxStalls    int
	// MaxContinuations is the functions' STREAMER_MAX_CONTINUATIONS; zero
	// means its default.
	MaxContinuations int
	// MaxPending and KeyConcurrency are the functions'
	// STREAMER_MAX_PENDING and STREAMER_KEY_CONCURRENCY: zero means their
	// defaults, negative turns them off.
	MaxPending     int
	KeyConcurrency int
	// Lease is the claim lease of the processor and the reaper; default 5s,
	// so that after a crash of this process the requests it ran are taken
	// over seconds after the restart, not a minute.
	Lease time.Duration
	// Concurrency is the processor function's emulated concurrency: how
	// many jobs run at once (the account's, or the function's reserved,
	// concurrency); more wait in the local Lambda service's queue. Default
	// 1000, Lambda's default account concurrency.
	Concurrency int
	// ProcessorTimeout is the processor function's timeout: each job's
	// deadline (serverless.yml: 15 minutes, the default).
	ProcessorTimeout time.Duration
	// JobRetryDelays are the waits before the async retries of a failed
	// job (Lambda: about 1 and 2 minutes); default 1s and 2s.
	JobRetryDelays []time.Duration
	// OnJobFailure receives the jobs that failed on every attempt, as the
	// processor's on-failure destination (the SQS failure queue) would; by
	// default they are logged.
	OnJobFailure func(Failure)
	// WrapJob, when set, wraps the processor function's handler: a fault
	// injection point for tests (a job that never starts, say).
	WrapJob func(LambdaHandler) LambdaHandler
	// Ready is called once everything is serving.
	Ready func(devserver.Info)
	// Faults injects failures, for tests; none by default.
	Faults Faults
	// RateLimit is the handlers' STREAMER_RATE_LIMIT, such as
	// "10/s,burst=20": a limit on every frame per principal (actions and
	// reserved actions in a bucket each), its buckets in the table. Empty
	// means none.
	RateLimit string
	// MaxConnectionsPerPrincipal is the handlers'
	// STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL: the cap of a principal's
	// open connections, counted in the table. Zero means its default
	// (100); negative, no cap.
	MaxConnectionsPerPrincipal int
	// NewConnectionsPerPrincipal and NewConnectionsPerIP are the handlers'
	// STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL and
	// STREAMER_NEW_CONNECTIONS_PER_IP, such as "20/s,burst=100" or "off".
	// Empty means their defaults. The gateway applies no limit of its
	// own: the connect handler's answer 429 refuses the handshake, as on
	// API Gateway.
	NewConnectionsPerPrincipal string
	NewConnectionsPerIP        string
	// Tracer is the handlers' tracer provider (lambdaapp.Options.Tracer),
	// in place of the one STREAMER_TRACING would build; nil: tracing is
	// off.
	Tracer trace.TracerProvider
}

// Run serves the AWS path on this machine until ctx is canceled: the local
// gateway invokes the same connect, router and disconnect handlers the
// Lambdas run, with API-Gateway-shaped events; replies and events go
// through the gateway's Management API, as they do through API Gateway's;
// a poller feeds the table's DynamoDB stream, filtered as serverless.yml
// filters it, to the processor handler; and the reaper handler runs every
// ReapInterval, as the schedule runs it.
func Run(ctx context.Context, cfg Config) error {
	switch {
	case cfg.Listener == nil:
		return errors.New("awslocal: Config.Listener is required")
	case cfg.DynamoDBEndpoint == "":
		return errors.New("awslocal: Config.DynamoDBEndpoint is required")
	}
	if err := cfg.Faults.validate(); err != nil {
		return err
	}
	if cfg.Table == "" {
		cfg.Table = "streamer-local"
	}
	if cfg.ReapInterval == 0 {
		cfg.ReapInterval = streamer.DefaultReapInterval
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 5 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1000
	}
	if cfg.ProcessorTimeout <= 0 {
		cfg.ProcessorTimeout = 15 * time.Minute
	}
	if cfg.JobRetryDelays == nil {
		cfg.JobRetryDelays = []time.Duration{time.Second, 2 * time.Second}
	}
	base := "http://" + cfg.Listener.Addr().String()
	// The Management API listens on its own loopback address; the
	// functions post there (STREAMER_ENDPOINT), and a client of /ws cannot.
	mgmtLn, mgmtURL, err := local.ListenManagement(ctx)
	if err != nil {
		return err
	}
	defer mgmtLn.Close() //nolint:errcheck // Serve closes it first on a clean shutdown
	// Static credentials: DynamoDB Local accepts any, and the default chain
	// could otherwise go looking for an instance metadata service.
	awsCfg, err := config.LoadDefaultConfig(ctx,
		config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("local", "local", "")))
	if err != nil {
		return fmt.Errorf("awslocal: AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	awsCfg.BaseEndpoint = nil
	endpoint := aws.String(cfg.DynamoDBEndpoint)
	db := awsdynamodb.NewFromConfig(awsCfg, func(o *awsdynamodb.Options) {
		o.BaseEndpoint = endpoint
		o.DisableValidateResponseChecksum = true
	})
	if err := dynamodb.CreateTable(ctx, db, cfg.Table); err != nil {
		return fmt.Errorf("awslocal: create table %s at %s: %w", cfg.Table, cfg.DynamoDBEndpoint, err)
	}
	desc, err := db.DescribeTable(ctx, &awsdynamodb.DescribeTableInput{TableName: aws.String(cfg.Table)})
	if err != nil {
		return fmt.Errorf("awslocal: describe table %s: %w", cfg.Table, err)
	}

	getenv := func(k string) string {
		switch k {
		case lambdaapp.EnvFunctionName:
			return processorFunction
		case lambdaapp.EnvTable:
			return cfg.Table
		case lambdaapp.EnvRateLimit:
			return cfg.RateLimit
		case lambdaapp.EnvJWTSecret:
			return string(cfg.Secret)
		case lambdaapp.EnvEndpoint:
			return mgmtURL
		case lambdaapp.EnvStallTimeout:
			if cfg.StallTimeout != 0 {
				return cfg.StallTimeout.String()
			}
		case lambdaapp.EnvMaxStalls:
			if cfg.MaxStalls != 0 {
				return strconv.Itoa(cfg.MaxStalls)
			}
		case lambdaapp.EnvMaxContinuations:
			if cfg.MaxContinuations != 0 {
				return strconv.Itoa(cfg.MaxContinuations)
			}
		case lambdaapp.EnvMaxPending:
			return limitEnv(cfg.MaxPending)
		case lambdaapp.EnvKeyConcurrency:
			return limitEnv(cfg.KeyConcurrency)
		case lambdaapp.EnvMaxConnectionsPerPrincipal:
			if cfg.MaxConnectionsPerPrincipal != 0 {
				return strconv.Itoa(cfg.MaxConnectionsPerPrincipal)
			}
		case lambdaapp.EnvNewConnectionsPerPrincipal:
			return cfg.NewConnectionsPerPrincipal
		case lambdaapp.EnvNewConnectionsPerIP:
			return cfg.NewConnectionsPerIP
		}
		return ""
	}
	dbCfg := awsCfg.Copy()
	dbCfg.BaseEndpoint = endpoint // the store's client; the sender uses Endpoint
	// Every emulated instance of a function shares this process's client;
	// on AWS each instance has a retry quota of its own, so one shared
	// quota would stop retries that AWS would make.
	dbCfg.Retryer = awsretry.Provider(awsretry.Options{NoRetryQuota: true})
	var thr *throttler
	if cfg.Faults.DynamoDBThrottle > 0 {
		thr = newThrottler(cfg.Faults)
		dbCfg.APIOptions = append(slices.Clone(dbCfg.APIOptions), thr.addTo)
		cfg.Logger.Warn().Float64("fraction", cfg.Faults.DynamoDBThrottle).Uint64("seed", cfg.Faults.Seed).
			Msg("fault injection: throttling the handlers' DynamoDB calls")
		defer func() {
			calls, throttled := thr.counts()
			cfg.Logger.Info().Int64("calls", calls).Int64("throttled", throttled).Msg("fault injection: DynamoDB calls throttled")
		}()
	}
	build := func(fn lambdaapp.Function, opts lambdaapp.Options) (*lambdaapp.Handlers, error) {
		lcfg, err := lambdaapp.ConfigFromEnv(fn, getenv)
		if err != nil {
			return nil, err
		}
		lcfg.LocalDynamoDB = true
		opts.AWS, opts.Logger, opts.Lease = &dbCfg, &cfg.Logger, cfg.Lease
		opts.Tracer = cfg.Tracer
		opts.Metrics = cfg.Metrics
		if opts.Metrics == nil {
			opts.Metrics = metrics.Discard
		}
		// One gateway: post to its Management API as it is now, not at
		// an address a connection stored before a restart.
		opts.WrapSender = func(s transport.Sender) transport.Sender { return currentEndpoint{s} }
		return lambdaapp.New(ctx, lcfg, cfg.Plugins, opts)
	}
	h, err := build(lambdaapp.Connect, lambdaapp.Options{})
	if err != nil {
		return err
	}

	// The local Lambda service runs the processor's jobs, each in an
	// invocation of its own, as Lambda runs its async invocations.
	lambdaLn, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("awslocal: Lambda service listener: %w", err)
	}
	svc := NewLambdaService(LambdaServiceConfig{Region: awsCfg.Region, Logger: cfg.Logger})
	lambdaURL := "http://" + lambdaLn.Addr().String()
	invoker := awslambda.NewFromConfig(awsCfg, func(o *awslambda.Options) { o.BaseEndpoint = aws.String(lambdaURL) })
	proc, err := build(lambdaapp.Processor, lambdaapp.Options{Invoker: invoker})
	if err != nil {
		return err
	}
	onFailure := cfg.OnJobFailure
	if onFailure == nil {
		onFailure = func(f Failure) {
			cfg.Logger.Error().Err(f.Err).Str("function", f.Function).Int("attempts", f.Attempts).Str("condition", f.Condition).
				RawJSON("payload", f.Payload).Msg("awslocal: a job failed on every attempt (the on-failure queue would get it)")
		}
	}
	retries := 2
	var job LambdaHandler = func(ctx context.Context, payload []byte) ([]byte, error) {
		out, err := proc.Handle(ctx, payload)
		if err != nil {
			return nil, err
		}
		return json.Marshal(out)
	}
	if cfg.WrapJob != nil {
		job = cfg.WrapJob(job)
	}
	if err := svc.Register(processorFunction, job, FunctionConfig{
		Concurrency: cfg.Concurrency, Timeout: cfg.ProcessorTimeout,
		MaximumRetryAttempts: &retries, RetryDelays: cfg.JobRetryDelays, OnFailure: onFailure,
	}); err != nil {
		return err
	}

	gh := &gatewayHandler{h: h}
	gw, err := local.New(local.Config{
		Handler: gh, IdleTimeout: cfg.IdleTimeout, MaxLifetime: cfg.MaxLifetime, Logger: cfg.Logger,
		// The connect handler limits new connections per source address
		// (STREAMER_NEW_CONNECTIONS_PER_IP), as on AWS; and without
		// PrincipalOf the gateway has no per-principal limits.
		NewConnectionsPerIP: local.Rate{PerSecond: -1},
	})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", gw)
	mux.Handle("/@connections/", local.ManagementRefused())
	for pattern, handler := range cfg.Handlers {
		mux.Handle(pattern, handler)
	}
	srv := local.NewHTTPServer(mux, 0)
	mgmtSrv := local.NewHTTPServer(gw.Management(), 0)

	streams := dynamodbstreams.NewFromConfig(awsCfg, func(o *dynamodbstreams.Options) { o.BaseEndpoint = endpoint })
	poller, err := NewPoller(PollerConfig{
		Streams: streams, StreamARN: aws.ToString(desc.Table.LatestStreamArn), Region: awsCfg.Region,
		Handler: proc.Dispatch, Logger: cfg.Logger, BatchSize: 10, MaxRetries: 3,
		Filter: func(r events.DynamoDBEventRecord) bool {
			_, ok, err := lambdaapp.QueuedKey(r)
			return ok || err != nil // unreadable records reach the handler, which reports them
		},
	})
	if err != nil {
		return err
	}

	if cfg.Ready != nil {
		token, err := middleware.SignHS256(cfg.Secret, middleware.Claims{Subject: "dev", TTL: 24 * time.Hour})
		if err != nil {
			return err
		}
		addr := cfg.Listener.Addr().String()
		var actions []string
		for _, p := range cfg.Plugins {
			for _, a := range p.Actions {
				actions = append(actions, a.Name)
			}
		}
		cfg.Ready(devserver.Info{Addr: addr, URL: base, WebSocketURL: "ws://" + addr + "/ws", ManagementURL: mgmtURL, Token: token, Actions: actions, App: h.App(), LambdaURL: lambdaURL})
	}

	g, gctx := errgroup.WithContext(ctx)
	pollCtx, stopPoll := context.WithCancel(context.WithoutCancel(ctx))
	defer stopPoll()
	g.Go(func() error {
		if err := srv.Serve(cfg.Listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("awslocal: serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := mgmtSrv.Serve(mgmtLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("awslocal: serve the Management API: %w", err)
		}
		return nil
	})
	g.Go(func() error { return poller.Run(pollCtx) })
	g.Go(func() error {
		if err := svc.Serve(lambdaLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("awslocal: Lambda service: %w", err)
		}
		return nil
	})
	if cfg.ReapInterval > 0 {
		g.Go(func() error {
			reap(pollCtx, h, cfg.ReapInterval)
			return nil
		})
	}
	g.Go(func() error {
		<-gctx.Done()
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
		_ = gw.Close(shutCtx)
		stopPoll()
		// Running jobs get a moment to end; then their contexts are
		// canceled and they re-queue their requests, as at a deadline.
		// A request whose job did not get that far is taken over after
		// its lease.
		jobCtx, cancelJobs := context.WithTimeout(shutCtx, 2*time.Second)
		defer cancelJobs()
		_ = svc.Shutdown(jobCtx)
		_ = mgmtSrv.Shutdown(shutCtx) // after the jobs, which post through it
		return nil
	})
	return g.Wait()
}

// processorFunction is the local name of the processor function.
const processorFunction = "processor"

// gatewayHandler turns the local gateway's calls into API Gateway's
// WebSocket events for the Lambda handlers.
type gatewayHandler struct {
	h *lambdaapp.Handlers
}

func requestContext(c *local.Conn, eventType, route string) events.APIGatewayWebsocketProxyRequestContext {
	return events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: c.ID, EventType: eventType, RouteKey: route, Stage: "local",
		ConnectedAt: c.ConnectedAt.UnixMilli(), RequestTimeEpoch: time.Now().UnixMilli(),
	}
}

func (g *gatewayHandler) Connect(ctx context.Context, c *local.Conn) error {
	ev := events.APIGatewayWebsocketProxyRequest{
		RequestContext:        requestContext(c, "CONNECT", "$connect"),
		Headers:               map[string]string{},
		QueryStringParameters: map[string]string{},
	}
	ev.RequestContext.Identity.SourceIP = c.RemoteAddr
	if host, _, err := net.SplitHostPort(c.RemoteAddr); err == nil {
		ev.RequestContext.Identity.SourceIP = host
	}
	for k, v := range c.Request.Header {
		ev.Headers[k] = strings.Join(v, ",")
	}
	for k, v := range c.Request.URL.Query() {
		if len(v) > 0 {
			ev.QueryStringParameters[k] = v[0]
		}
	}
	resp, err := g.h.Connect(ctx, ev)
	if err != nil {
		return err
	}
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%w: $connect answered 401", streamer.ErrUnauthorized)
	}
	if resp.StatusCode >= 400 && resp.StatusCode <= 499 {
		// API Gateway refuses the handshake with the integration's
		// status (429 over a connection limit), its body and headers.
		ref := &local.RefusedError{Status: resp.StatusCode, Message: resp.Body}
		if secs, err := strconv.Atoi(resp.Headers["Retry-After"]); err == nil && secs > 0 {
			ref.RetryAfter = time.Duration(secs) * time.Second
		}
		return ref
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("awslocal: $connect answered %d", resp.StatusCode)
	}
	return nil
}

func (g *gatewayHandler) Message(ctx context.Context, c *local.Conn, m local.Inbound) {
	ev := events.APIGatewayWebsocketProxyRequest{RequestContext: requestContext(c, "MESSAGE", "$default"), Body: string(m.Data)}
	if m.Binary {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(m.Data), true
	}
	_, _ = g.h.Route(ctx, ev)
}

func (g *gatewayHandler) Disconnect(ctx context.Context, c *local.Conn) {
	_, _ = g.h.Disconnect(ctx, events.APIGatewayWebsocketProxyRequest{RequestContext: requestContext(c, "DISCONNECT", "$disconnect")})
}

// reap invokes the reaper handler every interval until ctx is canceled, with
// the event an EventBridge schedule sends. The handler logs its runs and
// their failures; the next run tries again, as on AWS.
func reap(ctx context.Context, h *lambdaapp.Handlers, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			ev := events.EventBridgeEvent{
				Version: "0", ID: fmt.Sprintf("awslocal-%d", now.UnixNano()), DetailType: "Scheduled Event",
				Source: "aws.events", Region: "local", Time: now.UTC(), Detail: []byte("{}"),
			}
			_, _ = h.Reap(ctx, ev)
		}
	}
}

// currentEndpoint is a Sender that posts every message to its Sender's
// default endpoint (the local gateway's current Management API), ignoring
// the endpoint stored with the connection, which names the Management API
// of the process that stored it: after a restart of `streamer dev
// --aws-local` that address is gone, while on AWS an API's endpoint never
// changes.
type currentEndpoint struct{ transport.Sender }

// Send implements transport.Sender.
func (c currentEndpoint) Send(ctx context.Context, _ string, connID string, data []byte) error {
	return c.Sender.Send(ctx, "", connID, data)
}

// Disconnect implements transport.Disconnecter, at the current endpoint.
func (c currentEndpoint) Disconnect(ctx context.Context, _ string, connID string) error {
	d, ok := c.Sender.(transport.Disconnecter)
	if !ok {
		return errors.New("awslocal: the sender cannot disconnect")
	}
	return d.Disconnect(ctx, "", connID)
}

// limitEnv is the variable of a limit: unset for zero (its default), off
// for negative.
func limitEnv(n int) string {
	switch {
	case n == 0:
		return ""
	case n < 0:
		return "off"
	}
	return strconv.Itoa(n)
}
