package s3local_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/blob/s3blob/s3local"
)

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func client(url, key, secret string) *s3.Client {
	return s3.New(s3.Options{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider(key, secret, ""),
		BaseEndpoint: aws.String(url),
		UsePathStyle: true,
	})
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func put(ctx context.Context, c *s3.Client, key, body string) error {
	_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String(key), Body: strings.NewReader(body)})
	return err
}

func TestSignatures(t *testing.T) {
	t.Parallel()
	srv, err := s3local.New(s3local.Config{AccessKeyID: "AKID", SecretAccessKey: "s3cret", Buckets: []string{"bkt"}})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	ctx := t.Context()

	good := client(hs.URL, "AKID", "s3cret")
	require.NoError(t, put(ctx, good, "k.txt", "hello"))
	out, err := good.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k.txt")})
	require.NoError(t, err)
	body, _ := io.ReadAll(out.Body)
	_ = out.Body.Close()
	assert.Equal(t, "hello", string(body))

	for name, c := range map[string]*s3.Client{
		"wrong secret":       client(hs.URL, "AKID", "other"),
		"unknown access key": client(hs.URL, "OTHER", "s3cret"),
	} {
		err := put(ctx, c, "k.txt", "overwritten")
		assert.ErrorContains(t, err, "403", name)
		_, err = c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k.txt")})
		assert.ErrorContains(t, err, "403", name)
	}

	status, body2 := get(t, hs.URL+"/bkt/k.txt")
	assert.Equal(t, http.StatusForbidden, status, "anonymous")
	assert.Contains(t, body2, "AccessDenied")
	status, _ = get(t, hs.URL+"/bkt?list-type=2")
	assert.Equal(t, http.StatusForbidden, status, "anonymous listing")

	pre, err := s3.NewPresignClient(good).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k.txt")},
		s3.WithPresignExpires(time.Minute))
	require.NoError(t, err)
	status, body2 = get(t, pre.URL)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "hello", body2)
	status, _ = get(t, strings.Replace(pre.URL, "X-Amz-Expires=60", "X-Amz-Expires=600", 1))
	assert.Equal(t, http.StatusForbidden, status, "a longer expiry")

	forged, err := s3.NewPresignClient(client(hs.URL, "AKID", "guess")).PresignGetObject(ctx,
		&s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k.txt")}, s3.WithPresignExpires(time.Minute))
	require.NoError(t, err)
	status, _ = get(t, forged.URL)
	assert.Equal(t, http.StatusForbidden, status, "signed with another secret")
}

func TestExpiryAndSkew(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	srv, err := s3local.New(s3local.Config{Buckets: []string{"bkt"}, Now: clk.Now})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	ctx := t.Context()
	c := client(hs.URL, s3local.DefaultAccessKeyID, s3local.DefaultSecretAccessKey)
	require.NoError(t, put(ctx, c, "k", "v"))
	pre, err := s3.NewPresignClient(c).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k")},
		s3.WithPresignExpires(time.Hour))
	require.NoError(t, err)
	status, _ := get(t, pre.URL)
	require.Equal(t, http.StatusOK, status)
	clk.Add(59 * time.Minute)
	status, _ = get(t, pre.URL)
	require.Equal(t, http.StatusOK, status)
	clk.Add(2 * time.Minute)
	status, body := get(t, pre.URL)
	assert.Equal(t, http.StatusForbidden, status, "expired")
	assert.Contains(t, body, "expired")
	// A header-signed request far from the server's time is refused.
	assert.ErrorContains(t, put(ctx, c, "k", "late"), "RequestTimeTooSkewed")
}

func TestSweep(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Now()}
	srv, err := s3local.New(s3local.Config{Buckets: []string{"bkt"}, Now: clk.Now, Expiration: time.Hour})
	require.NoError(t, err)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	ctx := t.Context()
	c := client(hs.URL, s3local.DefaultAccessKeyID, s3local.DefaultSecretAccessKey)
	require.NoError(t, put(ctx, c, "old", "1"))
	clk.Add(10 * time.Minute) // within the skew limit of the client's clock
	require.NoError(t, put(ctx, c, "new", "2"))
	clk.Add(55 * time.Minute)
	n, err := srv.Sweep(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	clk.Add(-65 * time.Minute) // back to the client's time, to sign
	_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("old")})
	assert.ErrorContains(t, err, "404")
	_, err = c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("bkt"), Key: aws.String("new")})
	assert.NoError(t, err)
}

func TestNewErrors(t *testing.T) {
	t.Parallel()
	_, err := s3local.New(s3local.Config{Buckets: []string{"Bad_Bucket"}})
	assert.Error(t, err)
	_, err = s3local.New(s3local.Config{Expiration: -time.Second})
	assert.Error(t, err)
}
