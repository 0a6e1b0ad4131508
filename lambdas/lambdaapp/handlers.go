package lambdaapp

import (
	"context"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/transport/apigateway"
)

// processConcurrency bounds how many records of one batch run at once.
const processConcurrency = 8

// Handlers are the Lambda handlers of one function's configuration. They are
// safe for concurrent use; every goroutine they start ends before the
// handler returns.
type Handlers struct {
	cfg Config
	app *streamer.App
	log zerolog.Logger
}

// Options are optional dependencies of [New], for tests and the local AWS
// runtime.
type Options struct {
	// AWS replaces config.LoadDefaultConfig.
	AWS *aws.Config
	// Logger replaces the JSON logger on standard error.
	Logger *zerolog.Logger
}

// New builds the handlers: AWS clients from config.LoadDefaultConfig (so
// AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION and AWS_CA_BUNDLE point them at
// local services), the DynamoDB store, the Management API sender and the
// App with the given plugins.
func New(ctx context.Context, cfg Config, plugins []streamer.Plugin, opts Options) (*Handlers, error) {
	log := zerolog.New(os.Stderr).Level(cfg.LogLevel).With().Timestamp().Str("function", string(cfg.Function)).Logger()
	if opts.Logger != nil {
		log = *opts.Logger
	}
	var awsCfg aws.Config
	if opts.AWS != nil {
		awsCfg = *opts.AWS
	} else {
		var err error
		if awsCfg, err = config.LoadDefaultConfig(ctx); err != nil {
			return nil, fmt.Errorf("lambdaapp: load AWS configuration: %w", err)
		}
	}
	db := awsdynamodb.NewFromConfig(awsCfg, func(o *awsdynamodb.Options) {
		// DynamoDB Local answers without the checksums AWS sends.
		o.DisableValidateResponseChecksum = cfg.LocalDynamoDB
	})
	store, err := dynamodb.New(dynamodb.Config{Client: db, Table: cfg.Table, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: %s: %w", EnvTable, err)
	}
	sender, err := apigateway.New(apigateway.Config{Endpoint: cfg.Endpoint, AWS: awsCfg, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: %s: %w", EnvEndpoint, err)
	}
	appCfg := streamer.Config{
		Store: store, Sender: sender, Plugins: plugins, Logger: log,
		Middleware:    []streamer.Middleware{middleware.Logging(log), middleware.Auth(middleware.AuthOptions{})},
		SyncThreshold: cfg.SyncThreshold, Retention: cfg.Retention,
		SubscriberRefresh: cfg.SubscriberRefresh, CancelPoll: cfg.CancelPoll, Endpoint: cfg.Endpoint,
	}
	if cfg.JWTSecret != nil || cfg.JWTPublicKey != nil {
		jc := middleware.JWTConfig{Secret: cfg.JWTSecret, Algorithms: cfg.JWTAlgorithms, Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience}
		if cfg.JWTPublicKey != nil {
			jc.Keys = map[string]crypto.PublicKey{"default": cfg.JWTPublicKey}
		}
		auth, err := middleware.NewJWT(jc)
		if err != nil {
			return nil, fmt.Errorf("lambdaapp: %s/%s: %w", EnvJWTSecret, EnvJWTPublicKey, err)
		}
		appCfg.Authenticator = auth
	}
	app, err := streamer.New(appCfg)
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: %w", err)
	}
	return &Handlers{cfg: cfg, app: app, log: log}, nil
}

// App returns the App the handlers run.
func (h *Handlers) App() *streamer.App { return h.app }

func (h *Handlers) endpoint(rc events.APIGatewayWebsocketProxyRequestContext) string {
	if h.cfg.Endpoint != "" {
		return h.cfg.Endpoint
	}
	if rc.DomainName == "" {
		return ""
	}
	return apigateway.EndpointFromRequest(rc.DomainName, rc.Stage)
}

// Connect is the $connect route: it verifies the token (Authorization
// header, then the Authorization and token query parameters) and stores the
// connection. A refused token answers 401, and API Gateway refuses the
// upgrade.
func (h *Handlers) Connect(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	headers := ev.Headers
	if len(headers) == 0 && len(ev.MultiValueHeaders) > 0 {
		headers = first(ev.MultiValueHeaders)
	}
	query := ev.QueryStringParameters
	if len(query) == 0 && len(ev.MultiValueQueryStringParameters) > 0 {
		query = first(ev.MultiValueQueryStringParameters)
	}
	token := middleware.TokenFromMaps(headers, query)
	_, err := h.app.HandleConnect(ctx, ev.RequestContext.ConnectionID, h.endpoint(ev.RequestContext), token)
	switch {
	case errors.Is(err, streamer.ErrUnauthorized):
		h.log.Info().Err(err).Str("connection_id", ev.RequestContext.ConnectionID).Msg("connection refused")
		return events.APIGatewayProxyResponse{StatusCode: http.StatusUnauthorized, Body: "unauthorized"}, nil
	case err != nil:
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, err
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

func first(m map[string][]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

// Disconnect is the $disconnect route: it forgets the connection.
func (h *Handlers) Disconnect(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	if err := h.app.HandleDisconnect(ctx, ev.RequestContext.ConnectionID); err != nil {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, err
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

// Route is the $default route, the router: replies go through the
// Management API, so the response body is empty.
func (h *Handlers) Route(ctx context.Context, ev events.APIGatewayWebsocketProxyRequest) (events.APIGatewayProxyResponse, error) {
	data := []byte(ev.Body)
	if ev.IsBase64Encoded {
		dec, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			dec = data
		}
		data = dec
	}
	conn := streamer.Conn{ID: ev.RequestContext.ConnectionID, Endpoint: h.endpoint(ev.RequestContext)}
	if err := h.app.HandleMessage(ctx, conn, data, ev.IsBase64Encoded); err != nil {
		return events.APIGatewayProxyResponse{StatusCode: http.StatusInternalServerError}, err
	}
	return events.APIGatewayProxyResponse{StatusCode: http.StatusOK}, nil
}

// Process is the processor, invoked by the table's DynamoDB stream. It runs
// every record that is a newly queued request (other records are skipped,
// although the event source mapping's filter already drops them), up to 8
// at a time, and reports the records that failed in BatchItemFailures so
// that only they are retried. A request whose retry delay has not passed is
// waited for when the wait ends before the invocation's deadline, and
// reported as failed otherwise, so the stream delivers it again.
func (h *Handlers) Process(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var (
		mu       sync.Mutex
		failures []events.DynamoDBBatchItemFailure
		wg       sync.WaitGroup
		sem      = make(chan struct{}, processConcurrency)
	)
	for _, rec := range ev.Records {
		if rec.EventName != "INSERT" && rec.EventName != "MODIFY" {
			continue
		}
		img, err := fromEventImage(rec.Change.NewImage)
		if err == nil {
			k, ok, kerr := dynamodb.QueuedRequest(img)
			if kerr == nil && !ok {
				continue
			}
			err = kerr
			if err == nil {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					if perr := h.process(ctx, k); perr != nil {
						h.log.Error().Err(perr).Str("request_id", k.ID).Str("sequence_number", rec.Change.SequenceNumber).Msg("processing failed")
						mu.Lock()
						failures = append(failures, events.DynamoDBBatchItemFailure{ItemIdentifier: rec.Change.SequenceNumber})
						mu.Unlock()
					}
				}()
				continue
			}
		}
		h.log.Error().Err(err).Str("sequence_number", rec.Change.SequenceNumber).Msg("unreadable stream record")
		mu.Lock()
		failures = append(failures, events.DynamoDBBatchItemFailure{ItemIdentifier: rec.Change.SequenceNumber})
		mu.Unlock()
	}
	wg.Wait()
	return events.DynamoDBEventResponse{BatchItemFailures: failures}, nil
}

func (h *Handlers) process(ctx context.Context, k storage.Key) error {
	for {
		err := h.app.Process(ctx, k)
		var nd *streamer.NotDueError
		if !errors.As(err, &nd) {
			return err
		}
		wait := time.Until(nd.At)
		if dl, ok := ctx.Deadline(); ok && time.Now().Add(wait).After(dl.Add(-streamer.StopMargin)) {
			return fmt.Errorf("lambdaapp: request %s is not due before the deadline: %w", k.ID, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}
