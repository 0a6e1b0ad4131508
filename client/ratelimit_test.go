package client_test

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// serveLimited runs the embedded runtime on a loopback port with the App's
// rate limit set, and returns its WebSocket URL and a token signer.
func serveLimited(t *testing.T, limit streamer.RateLimit) (string, func(sub string) string) {
	t.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	echo := streamer.Action{Name: "echo", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
		Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
			return req.Payload, nil
		})}
	ready := make(chan devserver.Info, 1)
	done := make(chan error, 1)
	go func() {
		done <- devserver.Run(ctx, devserver.Config{
			Listener: ln, DataDir: t.TempDir(), Secret: secret, Logger: zerolog.Nop(),
			Plugins:   []streamer.Plugin{{Name: "p", Actions: []streamer.Action{echo}}},
			RateLimit: limit,
			Ready:     func(info devserver.Info) { ready <- info },
		})
	}()
	var info devserver.Info
	select {
	case info = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server: %v", err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("the server did not start")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("server: %v", err)
			}
		case <-time.After(time.Minute):
			t.Error("the server did not stop")
		}
	})
	sign := func(sub string) string {
		tok, err := middleware.SignHS256(secret, middleware.Claims{Subject: sub, TTL: time.Hour})
		require.NoError(t, err)
		return tok
	}
	return info.WebSocketURL, sign
}

// A flood of status calls is limited by the server's rate limit (its
// reserved actions' bucket): past the burst, every call returns a typed
// RATE_LIMITED error with its retry-after, matched to the call by its
// request id; the action budget and other principals are untouched.
func TestStatusFloodIsRateLimited(t *testing.T) {
	t.Parallel()
	const burst, calls = 5, 40
	url, sign := serveLimited(t, streamer.RateLimit{Rule: ratelimit.Rule{Rate: 1, Per: time.Hour, Burst: burst}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.Dial(ctx, url, client.Options{Token: sign("flooder")})
	require.NoError(t, err)
	defer c.Close() //nolint:errcheck // test cleanup

	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			_, err := c.Status(ctx, "nope")
			var ce *client.Error
			switch {
			case client.IsRateLimited(err):
				refused.Add(1)
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, "nope", ce.RequestID)
				assert.True(t, ce.Retryable)
				d, ok := ce.RetryAfter()
				assert.True(t, ok)
				assert.Greater(t, d, 59*time.Minute, "one token an hour")
			case errors.As(err, &ce) && ce.Code == streamer.CodeNotFound:
				admitted.Add(1)
			default:
				assert.Fail(t, "unexpected answer", "%v", err)
			}
		})
	}
	wg.Wait()
	require.Equal(t, int64(burst), admitted.Load(), "the bucket admits its burst and refills one token an hour")
	require.Equal(t, int64(calls-burst), refused.Load())

	// Ping takes from the same (empty) bucket; actions from their own.
	require.True(t, client.IsRateLimited(c.Ping(ctx)))
	res, err := c.Request(ctx, "echo", 7)
	require.NoError(t, err)
	require.JSONEq(t, `7`, string(res))

	other, err := client.Dial(ctx, url, client.Options{Token: sign("bystander")})
	require.NoError(t, err)
	defer other.Close() //nolint:errcheck // test cleanup
	require.NoError(t, other.Ping(ctx), "another principal has buckets of its own")
}
