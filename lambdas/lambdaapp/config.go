// Package lambdaapp builds Streamer's AWS Lambda handlers from STREAMER_*
// environment variables: $connect, $disconnect and $default for API
// Gateway's WebSocket API, the processor for the table's DynamoDB stream,
// and the reaper, run on a schedule, which hands stalled requests back to
// the processor. The main packages in lambdas/ are one line around it.
package lambdaapp

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/ratelimit"
)

// Function names one of the Lambdas; each needs its own settings.
type Function string

// The Lambdas.
const (
	Connect    Function = "connect"
	Disconnect Function = "disconnect"
	Router     Function = "router"
	Processor  Function = "processor"
	// Reaper runs [streamer.App.Reap] on a schedule (once a minute in
	// serverless.yml).
	Reaper Function = "reaper"
)

// Functions lists every Lambda. Each has its main package in
// lambdas/<function>, its zip dist/<function>.zip (scripts/package.sh) and
// its function of that name in serverless.yml.
var Functions = []Function{Connect, Disconnect, Router, Processor, Reaper}

// Environment variables read by [ConfigFromEnv]. serverless.yml declares
// them all.
const (
	EnvTable             = "STREAMER_TABLE"
	EnvJWTSecret         = "STREAMER_JWT_SECRET"
	EnvJWTPublicKey      = "STREAMER_JWT_PUBLIC_KEY"
	EnvJWTJWKSURL        = "STREAMER_JWT_JWKS_URL"
	EnvJWTAlgorithms     = "STREAMER_JWT_ALGORITHMS"
	EnvJWTIssuer         = "STREAMER_JWT_ISSUER"
	EnvJWTAudience       = "STREAMER_JWT_AUDIENCE"
	EnvEndpoint          = "STREAMER_ENDPOINT"
	EnvLogLevel          = "STREAMER_LOG_LEVEL"
	EnvRetention         = "STREAMER_RETENTION"
	EnvSyncThreshold     = "STREAMER_SYNC_THRESHOLD"
	EnvSubscriberRefresh = "STREAMER_SUBSCRIBER_REFRESH"
	EnvCancelPoll        = "STREAMER_CANCEL_POLL"
	EnvStallTimeout      = "STREAMER_STALL_TIMEOUT"
	EnvLease             = "STREAMER_LEASE"
	EnvMaxStalls         = "STREAMER_MAX_STALLS"
	EnvMaxContinuations  = "STREAMER_MAX_CONTINUATIONS"
	EnvMaxCheckpoint     = "STREAMER_MAX_CHECKPOINT"
	EnvBucket            = "STREAMER_BUCKET"
	// EnvRateLimit is a rate limit on every frame, per principal, such
	// as "10/s,burst=20" (ratelimit.ParseRule), with a bucket for actions
	// and one for reserved actions; unset means none.
	EnvRateLimit = "STREAMER_RATE_LIMIT"
	// EnvMaxPending is how many queued plus running requests one
	// principal may have ("off": no quota).
	EnvMaxPending = "STREAMER_MAX_PENDING"
	// EnvKeyConcurrency is how many requests of one tenant (or of one
	// subject without a tenant) may run at once ("off": no limit).
	EnvKeyConcurrency = "STREAMER_KEY_CONCURRENCY"
	// EnvMaxConnectionsPerPrincipal caps a principal's open connections
	// (a whole number; negative: no cap; default
	// [DefaultMaxConnectionsPerPrincipal]). Read by the connect function.
	EnvMaxConnectionsPerPrincipal = "STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL"
	// EnvNewConnectionsPerPrincipal limits how fast a principal opens
	// connections (RATE/UNIT[,burst=N], or "off"; default
	// [DefaultNewConnectionsPerPrincipal]). Read by the connect function.
	EnvNewConnectionsPerPrincipal = "STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL"
	// EnvNewConnectionsPerIP limits how fast one source address opens
	// connections (RATE/UNIT[,burst=N], or "off"; default
	// [DefaultNewConnectionsPerIP]). Read by the connect function.
	EnvNewConnectionsPerIP = "STREAMER_NEW_CONNECTIONS_PER_IP"
	// EnvTracing turns OpenTelemetry tracing on: "otlp" exports spans
	// with OTLP over HTTP as the OTEL_EXPORTER_OTLP_* variables say (the
	// ADOT layer's collector by default); "off" (the default) records
	// none (docs/tracing.md).
	EnvTracing = "STREAMER_TRACING"
	// EnvTraceClient ("true" or "false", the default) makes a client's
	// W3C traceparent, sent in a frame's metadata, the parent of the
	// request's trace (streamer.Config.TrustClientTrace).
	EnvTraceClient = "STREAMER_TRACE_CLIENT"
	// EnvMetricsNamespace is the CloudWatch namespace of the metrics the
	// Lambdas write as Embedded Metric Format lines on standard output
	// (default metrics.DefaultNamespace, "Streamer").
	EnvMetricsNamespace = "STREAMER_METRICS_NAMESPACE"
)

// DefaultKeyConcurrency is the default of STREAMER_KEY_CONCURRENCY: a
// tenant runs at most 100 requests at once, a tenth of an account's
// default Lambda concurrency (1,000), so one tenant cannot take it all.
const DefaultKeyConcurrency = streamer.DefaultKeyConcurrency

// Defaults of the connection limits, the embedded runtime's
// (transport/local).
const (
	// DefaultMaxConnectionsPerPrincipal is the default of
	// STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL: 100 open connections.
	DefaultMaxConnectionsPerPrincipal = 100
	// DefaultNewConnectionsPerPrincipal is the default of
	// STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL: 20 a second, bursts of 100
	// (a principal may open its whole cap at once).
	DefaultNewConnectionsPerPrincipal = "20/s,burst=100"
	// DefaultNewConnectionsPerIP is the default of
	// STREAMER_NEW_CONNECTIONS_PER_IP: 100 a second, bursts of 200.
	DefaultNewConnectionsPerIP = "100/s,burst=200"
)

// Off is the value of STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL and
// STREAMER_NEW_CONNECTIONS_PER_IP that turns the limit off.
const Off = "off"

// maxCheckpoint is the largest STREAMER_MAX_CHECKPOINT: it leaves room in
// the 400 KB request item for the rest of the request.
const maxCheckpoint = 350 << 10

// EnvFunctionName is the variable Lambda sets to the function's name; the
// processor reads it to invoke itself. It is not declared in serverless.yml.
const EnvFunctionName = "AWS_LAMBDA_FUNCTION_NAME"

// EnvVars lists every STREAMER_* variable the Lambdas read.
var EnvVars = []string{
	EnvTable, EnvJWTSecret, EnvJWTSecretSSM, EnvJWTSecretARN, EnvJWTPublicKey, EnvJWTJWKSURL, EnvJWTAlgorithms, EnvJWTIssuer, EnvJWTAudience,
	EnvEndpoint, EnvLogLevel, EnvRetention, EnvSyncThreshold, EnvSubscriberRefresh, EnvCancelPoll,
	EnvStallTimeout, EnvMaxStalls, EnvLease, EnvBucket, EnvMaxContinuations, EnvMaxCheckpoint,
	EnvRateLimit, EnvMaxPending, EnvKeyConcurrency, EnvMaxConnectionsPerPrincipal, EnvNewConnectionsPerPrincipal, EnvNewConnectionsPerIP, EnvTracing, EnvTraceClient, EnvMetricsNamespace,
}

// Config is a Lambda's configuration, read by [ConfigFromEnv].
type Config struct {
	// Function is the Lambda this configuration is for.
	Function Function
	// Table is the DynamoDB table (STREAMER_TABLE, required).
	Table string
	// JWTSecret (STREAMER_JWT_SECRET, HS256, at least 32 bytes) and
	// JWTPublicKey (STREAMER_JWT_PUBLIC_KEY, a PEM RSA or EC public key)
	// verify tokens; connect needs at least one, the others none.
	JWTSecret    []byte
	JWTPublicKey crypto.PublicKey
	// JWTJWKSURL (STREAMER_JWT_JWKS_URL, https) is an identity provider's
	// JSON Web Key Set, whose keys verify RS256, ES256 and (when
	// STREAMER_JWT_ALGORITHMS lists it) EdDSA tokens; it is fetched at the
	// first token of each instance, kept 10 minutes, and fetched again
	// (at most every 30 seconds) when a token names an unknown kid. It
	// counts as the connect Lambda's key.
	JWTJWKSURL string
	// JWTSecretSSM (STREAMER_JWT_SECRET_SSM) and JWTSecretARN
	// (STREAMER_JWT_SECRET_ARN) name where the HS256 secret is read from
	// instead of STREAMER_JWT_SECRET: an SSM parameter, or a Secrets Manager
	// secret. At most one of the three may be set. [New] reads it for the
	// connect function ([ResolveJWTSecret]).
	JWTSecretSSM string
	JWTSecretARN string
	// JWTAlgorithms is the allow-list of token algorithms
	// (STREAMER_JWT_ALGORITHMS, comma separated); empty means HS256 with a
	// secret plus RS256 and ES256 with a public key.
	JWTAlgorithms []string
	// JWTIssuer and JWTAudience, when set, must match the token's iss and
	// aud (STREAMER_JWT_ISSUER, STREAMER_JWT_AUDIENCE).
	JWTIssuer   string
	JWTAudience string
	// Endpoint is the Management API endpoint (STREAMER_ENDPOINT). Empty
	// means the one of each event's domain name and stage, which is stored
	// with the connection and its requests, so the processor needs none.
	Endpoint string
	// LogLevel is the level of the JSON logs on standard error
	// (STREAMER_LOG_LEVEL: debug, info, warn, error or disabled; default
	// info).
	LogLevel zerolog.Level
	// Retention is how long requests and events are kept
	// (STREAMER_RETENTION, a Go duration; default 24h).
	Retention time.Duration
	// SyncThreshold decides whether an auto-mode action runs synchronously
	// (STREAMER_SYNC_THRESHOLD; default 5s).
	SyncThreshold time.Duration
	// SubscriberRefresh is how long the processor reuses a request's
	// subscriber list (STREAMER_SUBSCRIBER_REFRESH; default 0: read it for
	// every event).
	SubscriberRefresh time.Duration
	// CancelPoll is how often the processor re-reads a running request to
	// notice a cancel sent through the router (STREAMER_CANCEL_POLL;
	// default 2s).
	CancelPoll time.Duration
	// StallTimeout is how long a live request may stay due (queued, or
	// running past its lease) before the reaper takes it for stalled
	// (STREAMER_STALL_TIMEOUT; default [streamer.DefaultStallTimeout]). The
	// processor uses it too: a delivery of a request that finished less
	// than this ago sends its terminal event again.
	StallTimeout time.Duration
	// Lease is how long a processor's claim of a request lasts without
	// renewal: how long a request whose job died waits before another job
	// takes it over (STREAMER_LEASE; default [streamer.DefaultLease]).
	Lease time.Duration
	// MaxStalls is how many times a request may stall before it is ended
	// with PROCESSING_FAILED (STREAMER_MAX_STALLS, at least 1; default
	// [streamer.DefaultMaxStalls]). The reaper and the processor both
	// enforce it, so both must have the same value.
	MaxStalls int
	// MaxContinuations is how many times a request may be continued (a
	// run stopped at its invocation's deadline hands it back) before it
	// ends with TIMEOUT (STREAMER_MAX_CONTINUATIONS, at least 1; default
	// [streamer.DefaultMaxContinuations]).
	MaxContinuations int
	// MaxCheckpoint is the largest checkpoint a handler may save, in bytes
	// of JSON (STREAMER_MAX_CHECKPOINT, 1 to 358400: the request item,
	// which holds it, is at most 400 KB; default
	// [streamer.DefaultMaxCheckpoint]).
	MaxCheckpoint int
	// Bucket is the S3 bucket of the plugins' files (STREAMER_BUCKET),
	// such as the report plugin's reports; empty when unset. ConfigFromEnv
	// checks the name; the plugins that need a bucket refuse to start
	// without one (streamer.ErrNoBlobStore).
	Bucket string
	// RateLimit, when its Rate is positive, limits every frame per
	// principal (STREAMER_RATE_LIMIT, such as "10/s,burst=20"; unset: no
	// limit): it is the App's streamer.Config.RateLimit, so frames of
	// actions take from one bucket, and those of the reserved actions
	// (ping, status, resume, cancel, actions, list) from another of the
	// same rule, before the router reads the table for them. The buckets
	// are items of the table (ratelimit/dynamodb), shared by every
	// instance.
	RateLimit ratelimit.Rule
	// MaxPending is how many queued plus running requests one principal
	// may have (STREAMER_MAX_PENDING; default
	// [streamer.DefaultMaxPending]; -1 when "off"). The counts are items
	// of the table, updated in the same transactions as the requests.
	MaxPending int
	// KeyConcurrency is how many requests of one tenant (of one subject
	// when the principal has no tenant) run at once
	// (STREAMER_KEY_CONCURRENCY; default [DefaultKeyConcurrency]; -1 when
	// "off"). A request over it waits, parked, until a run of its key
	// ends (docs/fairness.md).
	KeyConcurrency int
	// MaxConnectionsPerPrincipal caps a principal's open connections
	// (STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL; default
	// [DefaultMaxConnectionsPerPrincipal]; negative: no cap). The connect
	// function answers a connection over it 429, before the upgrade; the
	// count is kept in the table (storage.ConnectionCounter).
	MaxConnectionsPerPrincipal int
	// NewConnectionsPerPrincipal limits how fast a principal opens
	// connections (STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL; default
	// [DefaultNewConnectionsPerPrincipal]); a zero Rate (the value "off")
	// means no limit. Checked after the token, 429 over it.
	NewConnectionsPerPrincipal ratelimit.Rule
	// NewConnectionsPerIP limits how fast one source address (the event's
	// requestContext.identity.sourceIp) opens connections
	// (STREAMER_NEW_CONNECTIONS_PER_IP; default
	// [DefaultNewConnectionsPerIP]); a zero Rate ("off") means no limit.
	// Checked before the token, 429 over it.
	NewConnectionsPerIP ratelimit.Rule
	// Tracing is STREAMER_TRACING: [TracingOff] (the default) or
	// [TracingOTLP].
	Tracing string
	// TraceClient is STREAMER_TRACE_CLIENT: trust the traceparent a
	// client sends in a frame's metadata (default false).
	TraceClient bool
	// MetricsNamespace is the CloudWatch namespace of the metrics,
	// written as Embedded Metric Format lines on standard output, with
	// the dimension function set to the Lambda's
	// (STREAMER_METRICS_NAMESPACE; default metrics.DefaultNamespace:
	// 1 to 255 letters, digits and . - _ / # : or space, not starting
	// with "AWS/").
	MetricsNamespace string
	// FunctionName is the processor's own function name, which it invokes
	// asynchronously to run each request in an invocation of its own
	// (AWS_LAMBDA_FUNCTION_NAME, which Lambda sets; required by the
	// processor).
	FunctionName string
	// LocalDynamoDB turns the DynamoDB client's response checksum
	// validation off, as DynamoDB Local needs. ConfigFromEnv leaves it
	// false: [New] turns validation off by itself when the client has a
	// custom endpoint (AWS_ENDPOINT_URL_DYNAMODB), so only callers that
	// point the client elsewhere some other way need it.
	LocalDynamoDB bool
}

// ConfigFromEnv reads the configuration of fn through getenv (os.Getenv in
// the main packages). Missing and malformed settings are all reported
// together, each naming its variable. STREAMER_JWT_PUBLIC_KEY may have its
// line breaks written as \n, as one-line environment values often do.
func ConfigFromEnv(fn Function, getenv func(string) string) (Config, error) {
	cfg := Config{Function: fn}
	switch fn {
	case Connect, Disconnect, Router, Processor, Reaper, Submitter:
	default:
		return cfg, fmt.Errorf("lambdaapp: unknown function %q", fn)
	}
	var errs []error
	if cfg.Table = getenv(EnvTable); cfg.Table == "" {
		errs = append(errs, fmt.Errorf("%s is required: the DynamoDB table's name", EnvTable))
	}
	keyErrs := len(errs)
	if s := getenv(EnvJWTSecret); s != "" {
		if len(s) < 32 {
			errs = append(errs, fmt.Errorf("%s is %d bytes; it must be at least 32", EnvJWTSecret, len(s)))
		}
		cfg.JWTSecret = []byte(s)
	}
	if p := getenv(EnvJWTPublicKey); p != "" {
		key, err := parsePublicKey(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", EnvJWTPublicKey, err))
		}
		cfg.JWTPublicKey = key
	}
	if fn == Processor {
		if cfg.FunctionName = getenv(EnvFunctionName); cfg.FunctionName == "" {
			errs = append(errs, fmt.Errorf("%s is required: the processor invokes itself by name (Lambda sets it)", EnvFunctionName))
		}
	}
	cfg.JWTJWKSURL = getenv(EnvJWTJWKSURL)
	cfg.JWTSecretSSM, cfg.JWTSecretARN = getenv(EnvJWTSecretSSM), getenv(EnvJWTSecretARN)
	if n := countSet(cfg.JWTSecret != nil, cfg.JWTSecretSSM != "", cfg.JWTSecretARN != ""); n > 1 {
		errs = append(errs, fmt.Errorf("%s, %s and %s name the same secret: set one", EnvJWTSecret, EnvJWTSecretSSM, EnvJWTSecretARN))
	}
	if fn == Connect && cfg.JWTSecret == nil && cfg.JWTPublicKey == nil && cfg.JWTJWKSURL == "" && cfg.secretSource() == "" {
		errs = append(errs, fmt.Errorf("%s, %s or %s is required to verify tokens (or the secret's name in %s or %s)",
			EnvJWTSecret, EnvJWTPublicKey, EnvJWTJWKSURL, EnvJWTSecretSSM, EnvJWTSecretARN))
	}
	if a := getenv(EnvJWTAlgorithms); a != "" {
		for _, alg := range strings.Split(a, ",") {
			if alg = strings.TrimSpace(alg); alg != "" {
				cfg.JWTAlgorithms = append(cfg.JWTAlgorithms, alg)
			}
		}
	}
	cfg.JWTIssuer, cfg.JWTAudience = getenv(EnvJWTIssuer), getenv(EnvJWTAudience)
	if cfg.JWTJWKSURL != "" {
		if _, err := middleware.NewJWT(middleware.JWTConfig{JWKSURL: cfg.JWTJWKSURL}); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", EnvJWTJWKSURL, cfg.JWTJWKSURL, err))
		}
	}
	if len(errs) == keyErrs && (cfg.JWTSecret != nil || cfg.JWTPublicKey != nil || cfg.JWTJWKSURL != "" || cfg.secretSource() != "") {
		// The keys are valid on their own: what NewJWT still refuses is
		// the algorithm list (an unknown alg, "none", or one without its
		// kind of key). A secret read at start is stood in for.
		jc := cfg.jwtConfig()
		if cfg.secretSource() != "" {
			jc.Secret = make([]byte, middleware.MinSecretLen)
		}
		if _, err := middleware.NewJWT(jc); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: %w", EnvJWTAlgorithms, getenv(EnvJWTAlgorithms), err))
		}
	}
	if e := getenv(EnvEndpoint); e != "" {
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("%s=%q: want the Management API's http(s) URL, such as https://abc.execute-api.us-east-1.amazonaws.com/prod", EnvEndpoint, e))
		}
		cfg.Endpoint = e
	}
	cfg.LogLevel = zerolog.InfoLevel
	if l := getenv(EnvLogLevel); l != "" {
		level, err := zerolog.ParseLevel(l)
		if err != nil || level == zerolog.NoLevel {
			errs = append(errs, fmt.Errorf("%s=%q: use debug, info, warn or error", EnvLogLevel, l))
		} else {
			cfg.LogLevel = level
		}
	}
	durations := []struct {
		name string
		into *time.Duration
		def  time.Duration
	}{
		{EnvRetention, &cfg.Retention, 24 * time.Hour},
		{EnvSyncThreshold, &cfg.SyncThreshold, 5 * time.Second},
		// 0: no periodic read of the subscribers; the processor learns of a
		// new one from the store (the request's SubsVersion), so progress
		// events cost no read.
		{EnvSubscriberRefresh, &cfg.SubscriberRefresh, 0},
		{EnvCancelPoll, &cfg.CancelPoll, 2 * time.Second},
		{EnvStallTimeout, &cfg.StallTimeout, streamer.DefaultStallTimeout},
		{EnvLease, &cfg.Lease, streamer.DefaultLease},
	}
	for _, d := range durations {
		*d.into = d.def
		v := getenv(d.name)
		if v == "" {
			continue
		}
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed < 0 || (parsed == 0 && d.def != 0) {
			errs = append(errs, fmt.Errorf("%s=%q: want a duration such as %v", d.name, v, max(d.def, time.Second)))
			continue
		}
		*d.into = parsed
	}
	for _, c := range []struct {
		name      string
		into      *int
		def, high int
	}{
		{EnvMaxStalls, &cfg.MaxStalls, streamer.DefaultMaxStalls, math.MaxInt32},
		{EnvMaxContinuations, &cfg.MaxContinuations, streamer.DefaultMaxContinuations, math.MaxInt32},
		{EnvMaxCheckpoint, &cfg.MaxCheckpoint, streamer.DefaultMaxCheckpoint, maxCheckpoint},
	} {
		*c.into = c.def
		v := getenv(c.name)
		if v == "" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > c.high {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from 1 to %d, such as %d", c.name, v, c.high, c.def))
			continue
		}
		*c.into = n
	}
	for _, c := range []struct {
		name string
		into *int
		def  int
	}{
		{EnvMaxPending, &cfg.MaxPending, streamer.DefaultMaxPending},
		{EnvKeyConcurrency, &cfg.KeyConcurrency, DefaultKeyConcurrency},
	} {
		*c.into = c.def
		switch v := getenv(c.name); v {
		case "":
		case "off":
			*c.into = -1
		default:
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > math.MaxInt32 {
				errs = append(errs, fmt.Errorf("%s=%q: want a whole number from 1 to %d, such as %d, or off", c.name, v, math.MaxInt32, c.def))
				continue
			}
			*c.into = n
		}
	}
	if v := getenv(EnvRateLimit); v != "" {
		r, err := ratelimit.ParseRule(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want RATE/UNIT[,burst=N], such as 10/s,burst=20: %w", EnvRateLimit, v, err))
		}
		cfg.RateLimit = r
	}
	cfg.MaxConnectionsPerPrincipal = DefaultMaxConnectionsPerPrincipal
	if v := getenv(EnvMaxConnectionsPerPrincipal); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n == 0 || n > math.MaxInt32 {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from 1 to %d, such as %d, or -1 for no cap",
				EnvMaxConnectionsPerPrincipal, v, math.MaxInt32, DefaultMaxConnectionsPerPrincipal))
		} else {
			cfg.MaxConnectionsPerPrincipal = max(n, -1)
		}
	}
	for _, r := range []struct {
		name, def string
		into      *ratelimit.Rule
	}{
		{EnvNewConnectionsPerPrincipal, DefaultNewConnectionsPerPrincipal, &cfg.NewConnectionsPerPrincipal},
		{EnvNewConnectionsPerIP, DefaultNewConnectionsPerIP, &cfg.NewConnectionsPerIP},
	} {
		v := getenv(r.name)
		if strings.EqualFold(strings.TrimSpace(v), Off) {
			continue
		}
		if v == "" {
			v = r.def
		}
		rule, err := ratelimit.ParseRule(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want RATE/UNIT[,burst=N], such as %s, or %s: %w", r.name, v, r.def, Off, err))
			continue
		}
		*r.into = rule
	}
	switch cfg.Tracing = getenv(EnvTracing); cfg.Tracing {
	case "":
		cfg.Tracing = TracingOff
	case TracingOff, TracingOTLP:
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want %s or %s", EnvTracing, cfg.Tracing, TracingOff, TracingOTLP))
	}
	if v := getenv(EnvTraceClient); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q: want true or false", EnvTraceClient, v))
		}
		cfg.TraceClient = b
	}
	cfg.MetricsNamespace = metrics.DefaultNamespace
	if v := getenv(EnvMetricsNamespace); v != "" {
		if !validNamespace(v) {
			errs = append(errs, fmt.Errorf("%s=%q: want a CloudWatch namespace: 1 to 255 letters, digits and . - _ / # : or space, not starting with AWS/", EnvMetricsNamespace, v))
		}
		cfg.MetricsNamespace = v
	}
	if cfg.Bucket = getenv(EnvBucket); cfg.Bucket != "" && !validBucket(cfg.Bucket) {
		errs = append(errs, fmt.Errorf("%s=%q: want an S3 bucket name: 3 to 63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit", EnvBucket, cfg.Bucket))
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("lambdaapp: bad configuration of %s: %w", fn, errors.Join(errs...))
	}
	return cfg, nil
}

// validNamespace reports whether ns is a CloudWatch namespace a custom
// metric may use.
func validNamespace(ns string) bool {
	if len(ns) > 255 || strings.HasPrefix(ns, "AWS/") || strings.TrimSpace(ns) == "" {
		return false
	}
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && strings.IndexByte(".-_/#: ", c) < 0 {
			return false
		}
	}
	return true
}

func countSet(bs ...bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// validBucket reports whether name follows S3's rules for bucket names
// (those a name can break on its own: no IP addresses, no "..").
func validBucket(name string) bool {
	if len(name) < 3 || len(name) > 63 || strings.Contains(name, "..") {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && ((c != '.' && c != '-') || i == 0 || i == len(name)-1) {
			return false
		}
	}
	return net.ParseIP(name) == nil
}

// jwtConfig is the token verifier's configuration.
func (c Config) jwtConfig() middleware.JWTConfig {
	jc := middleware.JWTConfig{Secret: c.JWTSecret, JWKSURL: c.JWTJWKSURL, Algorithms: c.JWTAlgorithms, Issuer: c.JWTIssuer, Audience: c.JWTAudience}
	if c.JWTPublicKey != nil {
		jc.Keys = map[string]crypto.PublicKey{"default": c.JWTPublicKey}
	}
	return jc
}

func parsePublicKey(p string) (crypto.PublicKey, error) {
	if !strings.Contains(p, "\n") {
		p = strings.ReplaceAll(p, `\n`, "\n")
	}
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return nil, errors.New("not a PEM block")
	}
	key, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKIX public key: %w", err)
	}
	return key, nil
}
