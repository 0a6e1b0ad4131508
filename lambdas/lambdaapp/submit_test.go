package lambdaapp_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

// The submitter reads the router's settings plus STREAMER_ENDPOINT, needs
// no JWT key, and is not one of the Lambdas.
func TestSubmitterConfig(t *testing.T) {
	t.Parallel()
	vars := map[string]string{
		lambdaapp.EnvTable:     "streamer-prod",
		lambdaapp.EnvEndpoint:  "https://abc123.execute-api.eu-west-1.amazonaws.com/prod",
		lambdaapp.EnvRetention: "48h",
	}
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Submitter, func(k string) string { return vars[k] })
	require.NoError(t, err)
	require.Equal(t, lambdaapp.Submitter, cfg.Function)
	require.Equal(t, vars[lambdaapp.EnvEndpoint], cfg.Endpoint)
	require.Equal(t, "48h0m0s", cfg.Retention.String())
	require.NotContains(t, lambdaapp.Functions, lambdaapp.Submitter)

	vars[lambdaapp.EnvEndpoint] = "ftp://nope"
	_, err = lambdaapp.ConfigFromEnv(lambdaapp.Submitter, func(k string) string { return vars[k] })
	require.ErrorContains(t, err, lambdaapp.EnvEndpoint)

	// Without an endpoint: the processor posts to each subscriber at its
	// connection's own.
	delete(vars, lambdaapp.EnvEndpoint)
	cfg, err = lambdaapp.ConfigFromEnv(lambdaapp.Submitter, func(k string) string { return vars[k] })
	require.NoError(t, err)
	require.Empty(t, cfg.Endpoint)
}
