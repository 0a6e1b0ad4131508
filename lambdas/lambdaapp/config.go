// Package lambdaapp builds Streamer's AWS Lambda handlers from STREAMER_*
// environment variables: $connect, $disconnect and $default for API
// Gateway's WebSocket API, and the processor for the table's DynamoDB
// stream. The main packages in lambdas/ are a few lines around it.
package lambdaapp

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// Function names one of the four Lambdas; each needs its own settings.
type Function string

// The four Lambdas.
const (
	Connect    Function = "connect"
	Disconnect Function = "disconnect"
	Router     Function = "router"
	Processor  Function = "processor"
)

// Environment variables read by [ConfigFromEnv]. serverless.yml declares
// them all.
const (
	EnvTable             = "STREAMER_TABLE"
	EnvJWTSecret         = "STREAMER_JWT_SECRET"
	EnvJWTPublicKey      = "STREAMER_JWT_PUBLIC_KEY"
	EnvJWTAlgorithms     = "STREAMER_JWT_ALGORITHMS"
	EnvJWTIssuer         = "STREAMER_JWT_ISSUER"
	EnvJWTAudience       = "STREAMER_JWT_AUDIENCE"
	EnvEndpoint          = "STREAMER_ENDPOINT"
	EnvLogLevel          = "STREAMER_LOG_LEVEL"
	EnvRetention         = "STREAMER_RETENTION"
	EnvSyncThreshold     = "STREAMER_SYNC_THRESHOLD"
	EnvSubscriberRefresh = "STREAMER_SUBSCRIBER_REFRESH"
	EnvCancelPoll        = "STREAMER_CANCEL_POLL"
)

// EnvVars lists every STREAMER_* variable the Lambdas read.
var EnvVars = []string{
	EnvTable, EnvJWTSecret, EnvJWTPublicKey, EnvJWTAlgorithms, EnvJWTIssuer, EnvJWTAudience,
	EnvEndpoint, EnvLogLevel, EnvRetention, EnvSyncThreshold, EnvSubscriberRefresh, EnvCancelPoll,
}

// Config is a Lambda's configuration.
type Config struct {
	Function Function
	// Table is the DynamoDB table (STREAMER_TABLE, required).
	Table string
	// JWTSecret (STREAMER_JWT_SECRET, HS256) and JWTPublicKey
	// (STREAMER_JWT_PUBLIC_KEY, a PEM RSA or EC public key) verify tokens;
	// connect needs at least one.
	JWTSecret     []byte
	JWTPublicKey  crypto.PublicKey
	JWTAlgorithms []string
	JWTIssuer     string
	JWTAudience   string
	// Endpoint is the Management API endpoint; empty means the one of the
	// event's domain and stage, stored with each request.
	Endpoint          string
	LogLevel          zerolog.Level
	Retention         time.Duration
	SyncThreshold     time.Duration
	SubscriberRefresh time.Duration
	CancelPoll        time.Duration
	// LocalDynamoDB is set when AWS_ENDPOINT_URL_DYNAMODB points the
	// DynamoDB client somewhere else than AWS (DynamoDB Local), which needs
	// response checksum validation off.
	LocalDynamoDB bool
}

// ConfigFromEnv reads the configuration of fn through getenv (os.Getenv in
// the main packages). Every error names the variable.
func ConfigFromEnv(fn Function, getenv func(string) string) (Config, error) {
	cfg := Config{Function: fn, Endpoint: getenv(EnvEndpoint), LocalDynamoDB: getenv("AWS_ENDPOINT_URL_DYNAMODB") != ""}
	switch fn {
	case Connect, Disconnect, Router, Processor:
	default:
		return cfg, fmt.Errorf("lambdaapp: unknown function %q", fn)
	}
	var errs []error
	if cfg.Table = getenv(EnvTable); cfg.Table == "" {
		errs = append(errs, fmt.Errorf("%s is required: the DynamoDB table's name", EnvTable))
	}
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
	if fn == Connect && cfg.JWTSecret == nil && cfg.JWTPublicKey == nil {
		errs = append(errs, fmt.Errorf("%s or %s is required to verify tokens", EnvJWTSecret, EnvJWTPublicKey))
	}
	if a := getenv(EnvJWTAlgorithms); a != "" {
		for _, alg := range strings.Split(a, ",") {
			if alg = strings.TrimSpace(alg); alg != "" {
				cfg.JWTAlgorithms = append(cfg.JWTAlgorithms, alg)
			}
		}
	}
	cfg.JWTIssuer, cfg.JWTAudience = getenv(EnvJWTIssuer), getenv(EnvJWTAudience)
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
		{EnvSubscriberRefresh, &cfg.SubscriberRefresh, 2 * time.Second},
		{EnvCancelPoll, &cfg.CancelPoll, 2 * time.Second},
	}
	for _, d := range durations {
		*d.into = d.def
		v := getenv(d.name)
		if v == "" {
			continue
		}
		parsed, err := time.ParseDuration(v)
		if err != nil || parsed <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q: want a positive duration such as %v", d.name, v, d.def))
			continue
		}
		*d.into = parsed
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("lambdaapp: bad configuration of %s: %w", fn, errors.Join(errs...))
	}
	return cfg, nil
}

func parsePublicKey(p string) (crypto.PublicKey, error) {
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
