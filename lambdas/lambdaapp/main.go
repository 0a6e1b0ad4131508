package lambdaapp

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/blob/s3blob"
)

// Main is the whole body of a Lambda's main package:
//
//	func main() { lambdaapp.Main(lambdaapp.Router, plugins.All) }
//
// It reads fn's configuration from the environment ([ConfigFromEnv]),
// loads the AWS configuration (config.LoadDefaultConfig), builds the
// plugins' [streamer.Env] with [Env] and the plugins with plugins, then the
// handlers, and starts the Lambda with fn's handler ([Handlers.Handler]).
// Bad configuration is printed to standard error, naming the variable, and
// the process exits with status 1. Main does not return.
func Main(fn Function, plugins streamer.PluginsFunc) {
	ctx := context.Background()
	h, err := Build(ctx, fn, os.Getenv, plugins)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	handler, err := h.Handler()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lambda.Start(handler)
}

// Build does what [Main] does before it starts the Lambda: it returns fn's
// handlers, configured from getenv, with the plugins built by plugins.
func Build(ctx context.Context, fn Function, getenv func(string) string, plugins streamer.PluginsFunc) (*Handlers, error) {
	cfg, err := ConfigFromEnv(fn, getenv)
	if err != nil {
		return nil, err
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: load the AWS configuration: %w", err)
	}
	env, err := Env(cfg, awsCfg)
	if err != nil {
		return nil, err
	}
	ps, err := plugins(ctx, env)
	if errors.Is(err, streamer.ErrNoBlobStore) {
		return nil, fmt.Errorf("lambdaapp: bad configuration of %s: %s is required: the S3 bucket of the plugins' files (%w)", fn, EnvBucket, err)
	}
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: bad configuration of %s: %w", fn, err)
	}
	return New(ctx, cfg, ps, Options{AWS: &awsCfg})
}

// Env returns what the Lambdas lend their plugins: the S3 bucket
// cfg.Bucket (STREAMER_BUCKET) as the blob store, its client built from
// awsCfg (so AWS_ENDPOINT_URL_S3 points it at a local server, in path
// style), and cfg.Retention. Without a bucket, Blobs is nil. Env makes no
// network call. `streamer dev --aws-local` builds its plugins' Env with it
// too, on its local S3 server.
func Env(cfg Config, awsCfg aws.Config) (streamer.Env, error) {
	env := streamer.Env{Retention: cfg.Retention}
	if cfg.Bucket == "" {
		return env, nil
	}
	store, err := s3blob.New(s3blob.Config{AWS: awsCfg, Bucket: cfg.Bucket})
	if err != nil {
		return env, fmt.Errorf("lambdaapp: %s=%s: %w (AWS_REGION and credentials come from the environment)", EnvBucket, cfg.Bucket, err)
	}
	env.Blobs = store
	return env, nil
}

// Handler returns the Lambda handler of the function the handlers were
// built for (Config.Function): [Handlers.Connect], [Handlers.Disconnect],
// [Handlers.Route], [Handlers.Handle] (the processor) or [Handlers.Reap].
func (h *Handlers) Handler() (any, error) {
	switch h.cfg.Function {
	case Connect:
		return flushed(h, h.Connect), nil
	case Disconnect:
		return flushed(h, h.Disconnect), nil
	case Router:
		return flushed(h, h.Route), nil
	case Processor:
		return flushed(h, h.Handle), nil
	case Reaper:
		return flushed(h, h.Reap), nil
	}
	return nil, fmt.Errorf("lambdaapp: unknown function %q (want one of %v)", h.cfg.Function, Functions)
}
