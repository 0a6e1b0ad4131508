package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer/blob/s3blob/s3local"
	"github.com/streamer-go/streamer/transport/local"
)

// sweepInterval is how often the S3 server of --aws-local deletes expired
// objects.
const sweepInterval = 10 * time.Minute

// localBucket is the bucket of `streamer dev --aws-local`.
const localBucket = "streamer-local"

// localS3 returns the AWS configuration and bucket the Lambdas' plugins of
// `streamer dev --aws-local` use: an S3 server of this process on a
// loopback port (s3local, in memory, its lifecycle rule emulated), or the
// one AWS_ENDPOINT_URL_S3 names, where the bucket is created when missing.
// stop stops the server.
func localS3(ctx context.Context, log zerolog.Logger) (awsCfg aws.Config, bucket string, stop func(), err error) {
	creds := aws.CredentialsProvider(credentials.NewStaticCredentialsProvider(s3local.DefaultAccessKeyID, s3local.DefaultSecretAccessKey, ""))
	if os.Getenv("AWS_ENDPOINT_URL_S3") != "" && os.Getenv("AWS_ACCESS_KEY_ID") != "" {
		creds = nil // the environment's, for the server it names
	}
	opts := []func(*config.LoadOptions) error{}
	if creds != nil {
		opts = append(opts, config.WithCredentialsProvider(creds))
	}
	if awsCfg, err = config.LoadDefaultConfig(ctx, opts...); err != nil {
		return aws.Config{}, "", nil, fmt.Errorf("AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	if os.Getenv("AWS_ENDPOINT_URL_S3") != "" {
		_, err := s3.NewFromConfig(awsCfg, func(o *s3.Options) { o.UsePathStyle = true }).
			CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(localBucket)})
		var owned *types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			return aws.Config{}, "", nil, fmt.Errorf("AWS_ENDPOINT_URL_S3: create bucket %s: %w", localBucket, err)
		}
		return awsCfg, localBucket, func() {}, nil
	}
	fake, err := s3local.New(s3local.Config{Buckets: []string{localBucket}})
	if err != nil {
		return aws.Config{}, "", nil, err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return aws.Config{}, "", nil, fmt.Errorf("S3 server: %w", err)
	}
	srv := local.NewHTTPServer(fake, 0)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ln) }()
	stopSweeper := background(ctx, func(ctx context.Context) {
		fake.RunSweeper(ctx, sweepInterval, func(err error) { log.Warn().Err(err).Msg("sweeping expired objects") })
	})
	awsCfg.BaseEndpoint = aws.String("http://" + ln.Addr().String())
	log.Info().Str("endpoint", *awsCfg.BaseEndpoint).Str("bucket", localBucket).Msg("S3 server is up")
	return awsCfg, localBucket, func() {
		stopSweeper()
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
		<-served
	}, nil
}

// background runs fn in a goroutine until ctx is done or stop is called;
// stop waits for fn to return.
func background(ctx context.Context, fn func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); fn(ctx) }()
	return func() { cancel(); <-done }
}
