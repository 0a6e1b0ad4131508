package apigateway

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	apigw "github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer/internal/awsretry"
	"github.com/streamer-go/streamer/transport"
)

var (
	_ transport.Sender       = (*Sender)(nil)
	_ transport.Disconnecter = (*Sender)(nil)
)

// ErrTooLarge is wrapped by [Sender.Send] when API Gateway refuses a message
// as too large (PayloadTooLargeException; its limit is 128 KiB). The
// connection is not gone: the caller should send something smaller.
var ErrTooLarge = errors.New("apigateway: message too large")

// Defaults of [Config].
const (
	DefaultMaxRetries = 5
	DefaultMaxBackoff = 2 * time.Second
)

// maxClients bounds the per-endpoint client cache. Endpoints are one per
// deployed API stage, so the bound is only a safeguard: past it the cache
// starts over.
const maxClients = 64

// Config configures a [Sender].
type Config struct {
	// Endpoint is the Management API endpoint used when Send gets no
	// endpoint, such as https://abc.execute-api.us-east-1.amazonaws.com/prod
	// or the local gateway's http://127.0.0.1:8080. Optional; when set it
	// must be an absolute http or https URL.
	Endpoint string
	// AWS is the SDK configuration (region, credentials, HTTP client), as
	// config.LoadDefaultConfig returns it. Its Region is required (requests
	// are signed for it). Its Retryer is replaced by one built from
	// MaxRetries and MaxBackoff.
	AWS aws.Config
	// MaxRetries is how many times a throttled or transiently failed call
	// is retried. 0 means DefaultMaxRetries; a negative value means none.
	MaxRetries int
	// MaxBackoff caps the delay before one retry (the delays grow
	// exponentially from about a second for throttling, with full jitter).
	// 0 means DefaultMaxBackoff.
	MaxBackoff time.Duration
	// Logger receives debug logs. The zero value logs nothing.
	Logger zerolog.Logger
}

// Sender posts messages to API Gateway WebSocket connections. It is safe for
// concurrent use. Create it with [New].
type Sender struct {
	cfg Config
	log zerolog.Logger

	mu      sync.Mutex
	clients map[string]*apigw.Client
}

// New validates cfg, fills in its defaults and returns a sender. The error
// names the invalid field. New makes no network call.
func New(cfg Config) (*Sender, error) {
	if cfg.AWS.Region == "" {
		return nil, errors.New("apigateway: Config.AWS.Region is required")
	}
	if cfg.Endpoint != "" {
		if err := validEndpoint(cfg.Endpoint); err != nil {
			return nil, fmt.Errorf("apigateway: Config.Endpoint: %w", err)
		}
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.MaxBackoff < 0 {
		return nil, fmt.Errorf("apigateway: Config.MaxBackoff %s is negative", cfg.MaxBackoff)
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	return &Sender{cfg: cfg, log: cfg.Logger, clients: map[string]*apigw.Client{}}, nil
}

// EndpointFromRequest returns the Management API endpoint of a connection
// from its WebSocket event's RequestContext.DomainName and Stage:
// https://{domainName}/{stage}. With a custom domain name, DomainName is
// that domain, which does not serve the Management API: use
// [EndpointFromAPI] instead.
func EndpointFromRequest(domainName, stage string) string {
	if stage == "" {
		return "https://" + domainName
	}
	return "https://" + domainName + "/" + stage
}

// EndpointFromAPI returns the Management API endpoint of a WebSocket API
// stage: https://{apiID}.execute-api.{region}.amazonaws.com/{stage} (the
// event's RequestContext.APIID and Stage, and the function's region).
func EndpointFromAPI(apiID, region, stage string) string {
	return EndpointFromRequest(apiID+".execute-api."+region+".amazonaws.com", stage)
}

func validEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http or https URL", endpoint)
	}
	return nil
}

// client returns the client of endpoint ("" for Config.Endpoint), creating
// it on first use.
func (s *Sender) client(endpoint string) (*apigw.Client, error) {
	if endpoint == "" {
		endpoint = s.cfg.Endpoint
	}
	if endpoint == "" {
		return nil, errors.New("no endpoint: the connection has none and Config.Endpoint is empty")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.clients[endpoint]; ok {
		return c, nil
	}
	if err := validEndpoint(endpoint); err != nil {
		return nil, fmt.Errorf("endpoint: %w", err)
	}
	if len(s.clients) >= maxClients {
		clear(s.clients)
	}
	c := apigw.NewFromConfig(s.cfg.AWS, func(o *apigw.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.RetryMaxAttempts = 0 // else the SDK wraps the retryer below
		o.Retryer = awsretry.New(awsretry.Options{
			MaxAttempts: s.cfg.MaxRetries + 1, MaxBackoff: s.cfg.MaxBackoff,
			BaseDelay: 50 * time.Millisecond, ThrottleBaseDelay: time.Second,
		})
	})
	s.clients[endpoint] = c
	s.log.Debug().Str("endpoint", endpoint).Msg("apigateway: new management api client")
	return c, nil
}

// Send posts data to connection connID with PostToConnection. endpoint is
// the connection's Management API endpoint ("" for Config.Endpoint). A gone
// connection wraps [transport.ErrGone], a message too large [ErrTooLarge].
func (s *Sender) Send(ctx context.Context, endpoint, connID string, data []byte) error {
	if connID == "" {
		return errors.New("apigateway: send: empty connection id")
	}
	c, err := s.client(endpoint)
	if err != nil {
		return fmt.Errorf("apigateway: send to %s: %w", connID, err)
	}
	_, err = c.PostToConnection(ctx, &apigw.PostToConnectionInput{ConnectionId: aws.String(connID), Data: data})
	if err != nil {
		return fmt.Errorf("apigateway: send to %s: %w", connID, translate(err))
	}
	return nil
}

// Disconnect closes connection connID with DeleteConnection. A gone
// connection wraps [transport.ErrGone].
func (s *Sender) Disconnect(ctx context.Context, endpoint, connID string) error {
	if connID == "" {
		return errors.New("apigateway: disconnect: empty connection id")
	}
	c, err := s.client(endpoint)
	if err != nil {
		return fmt.Errorf("apigateway: disconnect %s: %w", connID, err)
	}
	if _, err := c.DeleteConnection(ctx, &apigw.DeleteConnectionInput{ConnectionId: aws.String(connID)}); err != nil {
		return fmt.Errorf("apigateway: disconnect %s: %w", connID, translate(err))
	}
	return nil
}

// translate adds the transport's sentinel to the SDK errors that have one,
// keeping the SDK error reachable.
func translate(err error) error {
	var gone *types.GoneException
	if errors.As(err, &gone) {
		return fmt.Errorf("%w: %w", transport.ErrGone, err)
	}
	var tooLarge *types.PayloadTooLargeException
	if errors.As(err, &tooLarge) {
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	}
	return err
}
