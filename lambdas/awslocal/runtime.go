package awslocal

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/transport/local"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// Config configures [Run].
type Config struct {
	// Listener is where the gateway serves (/ws, /@connections/ and
	// Handlers). Required.
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
	Handlers    map[string]http.Handler
	Logger      zerolog.Logger
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// Ready is called once everything is serving.
	Ready func(devserver.Info)
	// Faults injects failures, for tests; none by default.
	Faults Faults
}

// Run serves the AWS path on this machine until ctx is canceled: the local
// gateway invokes the same connect, router and disconnect handlers the
// Lambdas run, with API-Gateway-shaped events; replies and events go
// through the gateway's Management API, as they do through API Gateway's;
// and a poller feeds the table's DynamoDB stream, filtered as
// serverless.yml filters it, to the processor handler.
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
	base := "http://" + cfg.Listener.Addr().String()
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

	lcfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, func(k string) string {
		switch k {
		case lambdaapp.EnvTable:
			return cfg.Table
		case lambdaapp.EnvJWTSecret:
			return string(cfg.Secret)
		case lambdaapp.EnvEndpoint:
			return base
		}
		return ""
	})
	if err != nil {
		return err
	}
	lcfg.LocalDynamoDB = true
	dbCfg := awsCfg.Copy()
	dbCfg.BaseEndpoint = endpoint // the store's client; the sender uses Endpoint
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
	// A short lease: after a crash of this process the requests it ran are
	// taken over seconds after the restart, not a minute.
	h, err := lambdaapp.New(ctx, lcfg, cfg.Plugins, lambdaapp.Options{AWS: &dbCfg, Logger: &cfg.Logger, Lease: 5 * time.Second})
	if err != nil {
		return err
	}

	gh := &gatewayHandler{h: h}
	gw, err := local.New(local.Config{Handler: gh, IdleTimeout: cfg.IdleTimeout, MaxLifetime: cfg.MaxLifetime, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/ws", gw)
	mux.Handle("/@connections/", gw.Management())
	for pattern, handler := range cfg.Handlers {
		mux.Handle(pattern, handler)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	streams := dynamodbstreams.NewFromConfig(awsCfg, func(o *dynamodbstreams.Options) { o.BaseEndpoint = endpoint })
	poller, err := NewPoller(PollerConfig{
		Streams: streams, StreamARN: aws.ToString(desc.Table.LatestStreamArn), Region: awsCfg.Region,
		Handler: h.Process, Logger: cfg.Logger, BatchSize: 10, MaxRetries: 3,
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
		cfg.Ready(devserver.Info{Addr: addr, URL: base, WebSocketURL: "ws://" + addr + "/ws", Token: token})
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
	g.Go(func() error { return poller.Run(pollCtx) })
	g.Go(func() error {
		<-gctx.Done()
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
		_ = gw.Close(shutCtx)
		stopPoll()
		return nil
	})
	return g.Wait()
}

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
