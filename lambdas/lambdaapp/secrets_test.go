package lambdaapp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

// secretStore stands in for the SSM and Secrets Manager JSON APIs: the
// real SDK clients make real HTTP round trips to it.
type secretStore struct {
	mu     sync.Mutex
	params map[string]string // SSM parameters, by name
	secret map[string]string // Secrets Manager secrets, by id
	calls  []string          // X-Amz-Target of each call, with its name
}

func (s *secretStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name           string
		WithDecryption bool
		SecretId       string //nolint:revive // the API's member name
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	target := r.Header.Get("X-Amz-Target")
	s.mu.Lock()
	s.calls = append(s.calls, target+" "+in.Name+in.SecretId)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	switch target {
	case "AmazonSSM.GetParameter":
		v, ok := s.params[in.Name]
		if !ok || !in.WithDecryption {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"__type": "ParameterNotFound", "message": "no parameter " + in.Name})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Parameter": map[string]any{"Name": in.Name, "Type": "SecureString", "Value": v, "Version": 1}})
	case "secretsmanager.GetSecretValue":
		v, ok := s.secret[in.SecretId]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"__type": "ResourceNotFoundException", "message": "no secret " + in.SecretId})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:" + in.SecretId, "Name": in.SecretId, "SecretString": v})
	default:
		http.Error(w, "unknown target "+target, http.StatusBadRequest)
	}
}

func (s *secretStore) callList() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

// The HS256 secret is read from SSM Parameter Store or Secrets Manager by
// name, through AWS_ENDPOINT_URL_SSM and AWS_ENDPOINT_URL_SECRETS_MANAGER,
// once when the connect function is built, and not by the others.
func TestJWTSecretFromSSMAndSecretsManager(t *testing.T) {
	const secret = "a-secret-from-the-parameter-store!"
	store := &secretStore{
		params: map[string]string{"/app/jwt": secret, "/app/short": "too short"},
		secret: map[string]string{"app/jwt": secret + "-sm"},
	}
	srv := httptest.NewServer(store)
	t.Cleanup(srv.Close)
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	t.Setenv("AWS_ENDPOINT_URL_SSM", srv.URL)
	t.Setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", srv.URL)
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	ctx := context.Background()
	awsCfg, err := config.LoadDefaultConfig(ctx)
	require.NoError(t, err)

	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET_SSM": "/app/jwt"}))
	require.NoError(t, err)
	require.Nil(t, cfg.JWTSecret)
	require.NoError(t, lambdaapp.ResolveJWTSecret(ctx, &cfg, awsCfg))
	require.Equal(t, secret, string(cfg.JWTSecret))

	cfg, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET_ARN": "app/jwt"}))
	require.NoError(t, err)
	require.NoError(t, lambdaapp.ResolveJWTSecret(ctx, &cfg, awsCfg))
	require.Equal(t, secret+"-sm", string(cfg.JWTSecret))
	require.Equal(t, []string{"AmazonSSM.GetParameter /app/jwt", "secretsmanager.GetSecretValue app/jwt"}, store.callList())

	// Missing and short secrets are errors naming the variable.
	for name, vars := range map[string]map[string]string{
		"missing parameter": {"STREAMER_JWT_SECRET_SSM": "/app/none"},
		"short parameter":   {"STREAMER_JWT_SECRET_SSM": "/app/short"},
		"missing secret":    {"STREAMER_JWT_SECRET_ARN": "app/none"},
	} {
		vars["STREAMER_TABLE"] = "t"
		cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(vars))
		require.NoError(t, err, name)
		err = lambdaapp.ResolveJWTSecret(ctx, &cfg, awsCfg)
		require.Error(t, err, name)
		require.ErrorContains(t, err, "STREAMER_JWT_SECRET_", name)
	}

	// New reads it once for connect, and not for the router.
	before := len(store.callList())
	log := zerolog.Nop()
	for _, fn := range []lambdaapp.Function{lambdaapp.Connect, lambdaapp.Router} {
		cfg, err := lambdaapp.ConfigFromEnv(fn, env(map[string]string{"STREAMER_TABLE": "table", "STREAMER_JWT_SECRET_SSM": "/app/jwt"}))
		require.NoError(t, err)
		_, err = lambdaapp.New(ctx, cfg, nil, lambdaapp.Options{AWS: &awsCfg, Logger: &log})
		require.NoError(t, err, fn)
	}
	require.Len(t, store.callList(), before+1)
}

// At most one place may hold the secret.
func TestConfigFromEnvOneSecretSource(t *testing.T) {
	t.Parallel()
	_, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{
		"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET_SSM": "/a", "STREAMER_JWT_SECRET_ARN": "b",
	}))
	require.ErrorContains(t, err, "set one")
	// HS256 is allowed with a secret read at start.
	_, err = lambdaapp.ConfigFromEnv(lambdaapp.Connect, env(map[string]string{
		"STREAMER_TABLE": "t", "STREAMER_JWT_SECRET_ARN": "b", "STREAMER_JWT_ALGORITHMS": "HS256",
	}))
	require.NoError(t, err)
}
