package lambdaapp_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

// Env lends the plugins the bucket as their blob store, or none.
func TestEnv(t *testing.T) {
	awsCfg := aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")}
	env, err := lambdaapp.Env(lambdaapp.Config{Retention: 48 * time.Hour}, awsCfg)
	require.NoError(t, err)
	assert.Nil(t, env.Blobs)
	assert.Equal(t, 48*time.Hour, env.Retention)

	env, err = lambdaapp.Env(lambdaapp.Config{Bucket: "files-bucket", Retention: time.Hour}, awsCfg)
	require.NoError(t, err)
	require.NotNil(t, env.Blobs)
	u, err := env.Blobs.URL(context.Background(), "reports/a.csv", time.Now().Add(time.Minute))
	require.NoError(t, err)
	assert.Contains(t, u, "files-bucket")
	assert.Contains(t, u, "X-Amz-Signature=")
}

// Build gives every function its handler, and names STREAMER_BUCKET when
// the plugins need a blob store and there is none.
func TestBuild(t *testing.T) {
	t.Setenv("AWS_REGION", "eu-west-1")
	t.Setenv("AWS_ACCESS_KEY_ID", "AKID")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
	vars := map[string]string{
		"STREAMER_TABLE":          "app-table",
		"STREAMER_JWT_SECRET":     "0123456789abcdef0123456789abcdef",
		lambdaapp.EnvFunctionName: "app-processor",
		lambdaapp.EnvBucket:       "files-bucket",
	}
	getenv := func(k string) string { return vars[k] }
	var built []string
	plugins := func(_ context.Context, env streamer.Env) ([]streamer.Plugin, error) {
		if env.Blobs == nil {
			return nil, errors.New("wrap: " + streamer.ErrNoBlobStore.Error())
		}
		built = append(built, "x")
		return nil, nil
	}
	for _, fn := range lambdaapp.Functions {
		h, err := lambdaapp.Build(context.Background(), fn, getenv, plugins)
		require.NoError(t, err, fn)
		handler, err := h.Handler()
		require.NoError(t, err, fn)
		assert.NotNil(t, handler, fn)
	}
	assert.Len(t, built, len(lambdaapp.Functions))

	delete(vars, lambdaapp.EnvBucket)
	_, err := lambdaapp.Build(context.Background(), lambdaapp.Router, getenv,
		func(context.Context, streamer.Env) ([]streamer.Plugin, error) {
			return nil, streamer.ErrNoBlobStore
		})
	require.ErrorIs(t, err, streamer.ErrNoBlobStore)
	assert.Contains(t, err.Error(), "bad configuration of router: STREAMER_BUCKET is required")
}
