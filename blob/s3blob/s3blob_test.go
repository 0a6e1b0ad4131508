package s3blob_test

import (
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/blob"
	"github.com/streamer-go/streamer/blob/blobtest"
	"github.com/streamer-go/streamer/blob/s3blob"
	"github.com/streamer-go/streamer/blob/s3blob/s3local"
)

const bucket = "streamer-test"

// awsConfig is a client configuration for the server at url.
func awsConfig(url, key, secret string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(key, secret, ""),
		BaseEndpoint: aws.String(url),
	}
}

// newServer starts an s3local server with the bucket on 127.0.0.1.
func newServer(t *testing.T, cfg s3local.Config) (*s3local.Server, *httptest.Server) {
	t.Helper()
	cfg.Buckets = append(cfg.Buckets, bucket)
	s, err := s3local.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func TestConformance(t *testing.T) {
	t.Parallel()
	_, srv := newServer(t, s3local.Config{})
	blobtest.Run(t, func(t *testing.T) blob.Store {
		st, err := s3blob.New(s3blob.Config{
			AWS:    awsConfig(srv.URL, s3local.DefaultAccessKeyID, s3local.DefaultSecretAccessKey),
			Bucket: bucket, PathStyle: true, MaxSize: blobtest.MaxSize,
		})
		require.NoError(t, err)
		return st
	})
}
