// Package s3blob is a [blob.Store] in an Amazon S3 bucket, with presigned
// GET URLs. The bucket stays private: a URL is signed (SigV4) with the
// credentials of the AWS configuration, so whoever presigns needs
// s3:GetObject on the keys it hands out, and a URL stops working when it
// expires or when those credentials do (a Lambda's role credentials last
// hours, not days).
//
// Objects get an Expires header of their PutOptions.ExpiresAt; deleting
// them is the bucket's lifecycle rule's job (serverless.yml has one). On
// AWS, the URL of a key that holds nothing answers 403 rather than 404
// unless the signer may also list the bucket (s3:ListBucket), which the
// deployment does not grant.
package s3blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/streamer-go/streamer/blob"
)

// Config configures [New].
type Config struct {
	// AWS is the AWS configuration of the client, usually from
	// config.LoadDefaultConfig (so AWS_ENDPOINT_URL_S3 points it at a
	// local server). Its Region and Credentials are required.
	AWS aws.Config
	// Bucket is the bucket's name; required.
	Bucket string
	// PathStyle addresses the bucket in the path (http://host/bucket/key)
	// rather than in the host name, as local S3 servers need. False means
	// virtual-hosted style, S3's default, except on a custom endpoint
	// (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL or AWS.BaseEndpoint), which
	// New takes for a local server and addresses in path style.
	PathStyle bool
	// MaxSize is the largest object Put accepts, in bytes. Zero means
	// [blob.DefaultMaxSize]. A body that is not an [io.ReadSeeker] is
	// read into memory first (to know its length), so keep MaxSize within
	// memory or pass a *bytes.Reader or *os.File.
	MaxSize int64
	// Now is the clock URL expiries are computed from. Nil means
	// time.Now.
	Now func() time.Time
}

// Store is a [blob.Store] in an S3 bucket. It is safe for concurrent use.
type Store struct {
	client  *s3.Client
	presign *s3.PresignClient
	bucket  string
	maxSize int64
	now     func() time.Time
}

var _ blob.Store = (*Store)(nil)

// New returns the Store of cfg. It makes no network call.
func New(cfg Config) (*Store, error) {
	switch {
	case cfg.Bucket == "":
		return nil, errors.New("s3blob: Config.Bucket is required")
	case cfg.AWS.Region == "":
		return nil, errors.New("s3blob: Config.AWS has no region")
	case cfg.AWS.Credentials == nil:
		return nil, errors.New("s3blob: Config.AWS has no credentials")
	case cfg.MaxSize < 0:
		return nil, fmt.Errorf("s3blob: Config.MaxSize %d is negative", cfg.MaxSize)
	}
	s := &Store{bucket: cfg.Bucket, maxSize: cfg.MaxSize, now: cfg.Now}
	if s.maxSize == 0 {
		s.maxSize = blob.DefaultMaxSize
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.client = s3.NewFromConfig(cfg.AWS, func(o *s3.Options) {
		// BaseEndpoint is resolved (from AWS_ENDPOINT_URL_S3,
		// AWS_ENDPOINT_URL or the shared config) before option functions
		// run; it is nil for AWS itself.
		o.UsePathStyle = cfg.PathStyle || o.BaseEndpoint != nil
	})
	s.presign = s3.NewPresignClient(s.client)
	return s, nil
}

// Put stores body under key with PutObject; see [blob.Store].
func (s *Store) Put(ctx context.Context, key string, body io.Reader, opts blob.PutOptions) error {
	if err := blob.CheckKey(key); err != nil {
		return err
	}
	opts, err := opts.Normalize(s.now())
	if err != nil {
		return err
	}
	var (
		rs   io.ReadSeeker
		size int64
	)
	if seeker, ok := body.(io.ReadSeeker); ok {
		start, err := seeker.Seek(0, io.SeekCurrent)
		if err != nil {
			return fmt.Errorf("s3blob: put %s: %w", key, err)
		}
		end, err := seeker.Seek(0, io.SeekEnd)
		if err != nil {
			return fmt.Errorf("s3blob: put %s: %w", key, err)
		}
		if _, err := seeker.Seek(start, io.SeekStart); err != nil {
			return fmt.Errorf("s3blob: put %s: %w", key, err)
		}
		rs, size = seeker, end-start
	} else {
		data, err := io.ReadAll(io.LimitReader(body, s.maxSize+1))
		if err != nil {
			return fmt.Errorf("s3blob: put %s: %w", key, err)
		}
		rs, size = bytes.NewReader(data), int64(len(data))
	}
	if size > s.maxSize {
		return fmt.Errorf("%w: %s is more than %d bytes", blob.ErrTooLarge, key, s.maxSize)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		Body:          rs,
		ContentLength: aws.Int64(size),
		ContentType:   aws.String(opts.ContentType),
		Expires:       aws.Time(opts.ExpiresAt),
	})
	if err != nil {
		return fmt.Errorf("s3blob: put %s: %w", key, err)
	}
	return nil
}

// URL presigns a GetObject of key that expires at expiresAt, rounded down
// to the second (so never after it); see [blob.Store].
func (s *Store) URL(ctx context.Context, key string, expiresAt time.Time) (string, error) {
	if err := blob.CheckKey(key); err != nil {
		return "", err
	}
	now := s.now()
	if err := blob.CheckURLExpiry(now, expiresAt); err != nil {
		return "", err
	}
	ttl := expiresAt.Sub(now).Truncate(time.Second)
	if ttl < time.Second {
		ttl = time.Second
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("s3blob: presign %s: %w", key, err)
	}
	return req.URL, nil
}
