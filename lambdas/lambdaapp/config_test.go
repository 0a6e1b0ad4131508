package lambdaapp_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/ratelimit"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestConfigFromEnvDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Router, env(map[string]string{"STREAMER_TABLE": "t"}))
	require.NoError(t, err)
	require.Equal(t, "t", cfg.Table)
	require.Equal(t, 24*time.Hour, cfg.Retention)
	require.Equal(t, 5*time.Second, cfg.SyncThreshold)
	require.Zero(t, cfg.SubscriberRefresh, "subscribers are read for every event by default")
	require.Equal(t, 2*time.Second, cfg.CancelPoll)
	require.Equal(t, streamer.DefaultStallTimeout, cfg.StallTimeout)
	require.Equal(t, streamer.DefaultMaxStalls, cfg.MaxStalls)
	require.Equal(t, zerolog.InfoLevel, cfg.LogLevel)
	require.Empty(t, cfg.Endpoint)
	require.Nil(t, cfg.JWTSecret)
	require.False(t, cfg.LocalDynamoDB)
	require.Zero(t, cfg.RateLimit, "rate limits are opt-in")
	require.Equal(t, streamer.DefaultMaxPending, cfg.MaxPending, "the tenant limits are on by default")
	require.Equal(t, lambdaapp.DefaultKeyConcurrency, cfg.KeyConcurrency)
	require.Equal(t, 100, cfg.MaxConnectionsPerPrincipal)
	require.Equal(t, ratelimit.Rule{Rate: 20, Per: time.Second, Burst: 100}, cfg.NewConnectionsPerPrincipal)
	require.Equal(t, ratelimit.Rule{Rate: 100, Per: time.Second, Burst: 200}, cfg.NewConnectionsPerIP)
	require.Equal(t, lambdaapp.TracingOff, cfg.Tracing, "tracing is opt-in")
	require.False(t, cfg.TraceClient, "clients cannot pick trace ids by default")
	require.Equal(t, metrics.DefaultNamespace, cfg.MetricsNamespace)
}

func TestConfigFromEnvRefusesBadMetricsNamespace(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"AWS/Lambda", "a\"b", strings.Repeat("n", 256), "   ", "é"} {
		_, err := lambdaapp.ConfigFromEnv(lambdaapp.Router, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_METRICS_NAMESPACE": bad}))
		require.ErrorContains(t, err, "STREAMER_METRICS_NAMESPACE=", bad)
	}
}

func TestConfigFromEnvRefusesBadLimits(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"STREAMER_MAX_PENDING", "STREAMER_KEY_CONCURRENCY"} {
		for _, bad := range []string{"0", "-1", "ten", "1.5", "99999999999"} {
			_, err := lambdaapp.ConfigFromEnv(lambdaapp.Router, env(map[string]string{"STREAMER_TABLE": "t", name: bad}))
			require.ErrorContains(t, err, name+"=", "%s=%s", name, bad)
			require.ErrorContains(t, err, "or off")
		}
	}
}

// The connection limits can each be set, and turned off.
func TestConfigFromEnvConnectionLimits(t *testing.T) {
	t.Parallel()
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Router, env(map[string]string{
		"STREAMER_TABLE":                         "t",
		"STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL": "-1",
		"STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL": "off",
		"STREAMER_NEW_CONNECTIONS_PER_IP":        "OFF",
	}))
	require.NoError(t, err)
	require.Negative(t, cfg.MaxConnectionsPerPrincipal)
	require.Zero(t, cfg.NewConnectionsPerPrincipal)
	require.Zero(t, cfg.NewConnectionsPerIP)

	cfg, err = lambdaapp.ConfigFromEnv(lambdaapp.Router, env(map[string]string{
		"STREAMER_TABLE":                         "t",
		"STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL": "3",
		"STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL": "5/m",
		"STREAMER_NEW_CONNECTIONS_PER_IP":        "10/s,burst=30",
	}))
	require.NoError(t, err)
	require.Equal(t, 3, cfg.MaxConnectionsPerPrincipal)
	require.Equal(t, ratelimit.Rule{Rate: 5, Per: time.Minute, Burst: 5}, cfg.NewConnectionsPerPrincipal)
	require.Equal(t, ratelimit.Rule{Rate: 10, Per: time.Second, Burst: 30}, cfg.NewConnectionsPerIP)
}

func TestConfigFromEnvReadsEveryVariable(t *testing.T) {
	t.Parallel()
	secret := "0123456789abcdef0123456789abcdef"
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{
		"STREAMER_TABLE":                         "tbl",
		"STREAMER_JWT_SECRET":                    secret,
		"STREAMER_JWT_ALGORITHMS":                "HS256,HS512",
		"STREAMER_JWT_ISSUER":                    "iss",
		"STREAMER_JWT_AUDIENCE":                  "aud",
		"STREAMER_ENDPOINT":                      "https://abc.execute-api.eu-west-1.amazonaws.com/prod",
		"STREAMER_LOG_LEVEL":                     "debug",
		"STREAMER_RETENTION":                     "2h",
		"STREAMER_SYNC_THRESHOLD":                "1s",
		"STREAMER_SUBSCRIBER_REFRESH":            "500ms",
		"STREAMER_CANCEL_POLL":                   "3s",
		"STREAMER_STALL_TIMEOUT":                 "90s",
		"STREAMER_MAX_STALLS":                    "5",
		"STREAMER_MAX_CONTINUATIONS":             "7",
		"STREAMER_MAX_CHECKPOINT":                "1000",
		"STREAMER_LEASE":                         "30s",
		"STREAMER_BUCKET":                        "my-files.example-1",
		"STREAMER_RATE_LIMIT":                    "10/s,burst=20",
		"STREAMER_MAX_PENDING":                   "50",
		"STREAMER_KEY_CONCURRENCY":               "off",
		"STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL": "7",
		"STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL": "1/s,burst=2",
		"STREAMER_NEW_CONNECTIONS_PER_IP":        "3/m,burst=4",
		"STREAMER_TRACING":                       "otlp",
		"STREAMER_TRACE_CLIENT":                  "true",
		"STREAMER_METRICS_NAMESPACE":             "Acme/Streamer",
	}))
	require.NoError(t, err)
	require.Equal(t, lambdaapp.Config{
		Function: lambdaapp.Connect, Table: "tbl", JWTSecret: []byte(secret),
		JWTAlgorithms: []string{"HS256", "HS512"}, JWTIssuer: "iss", JWTAudience: "aud",
		Endpoint: "https://abc.execute-api.eu-west-1.amazonaws.com/prod", LogLevel: zerolog.DebugLevel,
		Retention: 2 * time.Hour, SyncThreshold: time.Second, SubscriberRefresh: 500 * time.Millisecond, CancelPoll: 3 * time.Second,
		StallTimeout: 90 * time.Second, MaxStalls: 5, Lease: 30 * time.Second, Bucket: "my-files.example-1",
		MaxContinuations: 7, MaxCheckpoint: 1000,
		RateLimit:  ratelimit.Rule{Rate: 10, Per: time.Second, Burst: 20},
		MaxPending: 50, KeyConcurrency: -1, MetricsNamespace: "Acme/Streamer",
		MaxConnectionsPerPrincipal: 7,
		NewConnectionsPerPrincipal: ratelimit.Rule{Rate: 1, Per: time.Second, Burst: 2},
		NewConnectionsPerIP:        ratelimit.Rule{Rate: 3, Per: time.Minute, Burst: 4},
		Tracing:                    lambdaapp.TracingOTLP, TraceClient: true,
	}, cfg)
}

// The JWT settings are required by connect only.
func TestConfigFromEnvKeysOnlyForConnect(t *testing.T) {
	t.Parallel()
	for _, fn := range []lambdaapp.Function{lambdaapp.Disconnect, lambdaapp.Router, lambdaapp.Processor, lambdaapp.Reaper} {
		_, err := lambdaapp.ConfigFromEnv(fn, env(map[string]string{"STREAMER_TABLE": "t", "AWS_LAMBDA_FUNCTION_NAME": "f"}))
		require.NoError(t, err, fn)
	}
	_, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t"}))
	require.ErrorContains(t, err, "STREAMER_JWT_SECRET, STREAMER_JWT_PUBLIC_KEY or STREAMER_JWT_JWKS_URL is required")
}

// STREAMER_JWT_JWKS_URL is a key of its own: an https URL (http only on
// loopback), whose algorithms default to RS256 and ES256.
func TestConfigFromEnvJWKSURL(t *testing.T) {
	t.Parallel()
	const u = "https://idp.example.com/.well-known/jwks.json"
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_JWKS_URL": u}))
	require.NoError(t, err)
	require.Equal(t, u, cfg.JWTJWKSURL)
	_, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{
		"STREAMER_TABLE": "t", "STREAMER_JWT_JWKS_URL": u, "STREAMER_JWT_ALGORITHMS": "EdDSA",
	}))
	require.NoError(t, err)
	for _, bad := range []string{"http://idp.example.com/jwks.json", "idp.example.com", "ftp://idp/jwks"} {
		_, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_JWKS_URL": bad}))
		require.ErrorContains(t, err, "STREAMER_JWT_JWKS_URL", bad)
	}
	// HS256 needs a secret: a key set alone cannot verify it.
	_, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{
		"STREAMER_TABLE": "t", "STREAMER_JWT_JWKS_URL": u, "STREAMER_JWT_ALGORITHMS": "HS256",
	}))
	require.ErrorContains(t, err, "STREAMER_JWT_ALGORITHMS")
}

// Every problem is reported at once.
func TestConfigFromEnvReportsAllProblems(t *testing.T) {
	t.Parallel()
	_, err := lambdaapp.ConfigFromEnv(lambdaapp.Processor, env(map[string]string{
		"STREAMER_RETENTION": "1 day", "STREAMER_SYNC_THRESHOLD": "0s", "STREAMER_SUBSCRIBER_REFRESH": "x",
	}))
	for _, name := range []string{"STREAMER_TABLE", "STREAMER_RETENTION", "STREAMER_SYNC_THRESHOLD", "STREAMER_SUBSCRIBER_REFRESH"} {
		require.ErrorContains(t, err, name)
	}
	require.NotContains(t, err.Error(), "STREAMER_CANCEL_POLL")

	_, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{
		"STREAMER_JWT_SECRET": "0123456789abcdef0123456789abcdef", "STREAMER_JWT_ALGORITHMS": "XS999",
	}))
	require.ErrorContains(t, err, "STREAMER_TABLE")
	require.ErrorContains(t, err, "STREAMER_JWT_ALGORITHMS")
}

func TestConfigFromEnvNamesTheVariable(t *testing.T) {
	t.Parallel()
	const secret = "0123456789abcdef0123456789abcdef"
	cases := []struct {
		fn   lambdaapp.Function
		env  map[string]string
		want string
	}{
		{lambdaapp.Router, map[string]string{}, "STREAMER_TABLE"},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t"}, "STREAMER_JWT_SECRET"},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET": "short"}, "STREAMER_JWT_SECRET"},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_PUBLIC_KEY": "not pem"}, "STREAMER_JWT_PUBLIC_KEY"},
		{lambdaapp.Processor, map[string]string{"STREAMER_TABLE": "t", "STREAMER_RETENTION": "forever"}, "STREAMER_RETENTION"},
		{lambdaapp.Processor, map[string]string{"STREAMER_TABLE": "t", "STREAMER_CANCEL_POLL": "-1s"}, "STREAMER_CANCEL_POLL"},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_LOG_LEVEL": "loud"}, "STREAMER_LOG_LEVEL"},
		{lambdaapp.Reaper, map[string]string{"STREAMER_TABLE": "t", "STREAMER_STALL_TIMEOUT": "0s"}, "STREAMER_STALL_TIMEOUT"},
		{lambdaapp.Reaper, map[string]string{"STREAMER_TABLE": "t", "STREAMER_STALL_TIMEOUT": "2"}, "STREAMER_STALL_TIMEOUT"},
		{lambdaapp.Reaper, map[string]string{"STREAMER_TABLE": "t", "STREAMER_MAX_STALLS": "0"}, "STREAMER_MAX_STALLS"},
		{lambdaapp.Processor, map[string]string{"STREAMER_TABLE": "t", "STREAMER_MAX_STALLS": "three"}, "STREAMER_MAX_STALLS"},
		{lambdaapp.Processor, map[string]string{"STREAMER_TABLE": "t", "STREAMER_MAX_CONTINUATIONS": "0"}, "STREAMER_MAX_CONTINUATIONS"},
		{lambdaapp.Processor, map[string]string{"STREAMER_TABLE": "t", "STREAMER_MAX_CHECKPOINT": "500000"}, "STREAMER_MAX_CHECKPOINT"},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_SYNC_THRESHOLD": "5"}, "STREAMER_SYNC_THRESHOLD"},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_SUBSCRIBER_REFRESH": "-1s"}, "STREAMER_SUBSCRIBER_REFRESH"},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_RETENTION": "0s"}, "STREAMER_RETENTION"},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_RATE_LIMIT": "fast"}, "STREAMER_RATE_LIMIT"},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_RATE_LIMIT": "10/s,burst=0"}, "STREAMER_RATE_LIMIT"},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET": secret, "STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL": "0"}, "STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL="},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET": secret, "STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL": "many"}, "STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL="},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET": secret, "STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL": "fast"}, "STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL="},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET": secret, "STREAMER_NEW_CONNECTIONS_PER_IP": "0/s"}, "STREAMER_NEW_CONNECTIONS_PER_IP="},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_ENDPOINT": "abc.execute-api.amazonaws.com"}, "STREAMER_ENDPOINT"},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_ENDPOINT": "ftp://host/prod"}, "STREAMER_ENDPOINT"},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET": secret, "STREAMER_JWT_ALGORITHMS": "none"}, "STREAMER_JWT_ALGORITHMS"},
		{lambdaapp.Connect, map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET": secret, "STREAMER_JWT_ALGORITHMS": "RS256"}, "STREAMER_JWT_ALGORITHMS"},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_TRACING": "xray"}, "STREAMER_TRACING="},
		{lambdaapp.Router, map[string]string{"STREAMER_TABLE": "t", "STREAMER_TRACE_CLIENT": "maybe"}, "STREAMER_TRACE_CLIENT="},
	}
	for _, bucket := range []string{"ab", strings.Repeat("a", 64), "My-Bucket", "a_b", "-ab", "ab-", ".ab", "a..b", "192.168.1.1", "a b", "s3://b"} {
		cases = append(cases, struct {
			fn   lambdaapp.Function
			env  map[string]string
			want string
		}{lambdaapp.Processor, map[string]string{"STREAMER_TABLE": "t", "STREAMER_BUCKET": bucket}, "STREAMER_BUCKET="})
	}
	for _, tc := range cases {
		_, err := lambdaapp.ConfigFromEnv(tc.fn, env(tc.env))
		require.ErrorContains(t, err, tc.want, "%s %v", tc.fn, tc.env)
	}
	_, err := lambdaapp.ConfigFromEnv("nope", env(map[string]string{"STREAMER_TABLE": "t"}))
	require.ErrorContains(t, err, `unknown function "nope"`)
}

func TestConfigFromEnvPublicKey(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	require.NoError(t, err)
	block := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_PUBLIC_KEY": block, "STREAMER_JWT_ALGORITHMS": "ES256, "}))
	require.NoError(t, err)
	require.Equal(t, &key.PublicKey, cfg.JWTPublicKey)
	require.Equal(t, []string{"ES256"}, cfg.JWTAlgorithms)

	// The same key on one line, its line breaks written as \n.
	oneLine := strings.ReplaceAll(block, "\n", `\n`)
	require.NotContains(t, oneLine, "\n")
	cfg, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_PUBLIC_KEY": oneLine}))
	require.NoError(t, err)
	require.Equal(t, &key.PublicKey, cfg.JWTPublicKey)

	// An RSA key works too; a private key does not.
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	der, err = x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	require.NoError(t, err)
	cfg, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_PUBLIC_KEY": string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))}))
	require.NoError(t, err)
	require.Equal(t, &rsaKey.PublicKey, cfg.JWTPublicKey)
	priv := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})
	_, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_PUBLIC_KEY": string(priv)}))
	require.ErrorContains(t, err, "STREAMER_JWT_PUBLIC_KEY")
}
