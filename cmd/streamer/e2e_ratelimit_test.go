package main_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/client"
)

// TestDevRateLimit: `streamer dev --rate-limit` limits every action per
// principal; the Go client and the CLI surface RATE_LIMITED with its
// retry_after.
func TestDevRateLimit(t *testing.T) {
	t.Parallel()
	s := startDev(t, "--rate-limit", "1/h,burst=2")
	// The banner is printed line by line: wait for the line.
	deadline := time.Now().Add(readTimeout)
	for !strings.Contains(s.stdout.From(0), "rate limit:") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	require.Contains(t, s.stdout.From(0), "rate limit: 1/h,burst=2 per principal")
	c := dialClient(t, s, token(t, uid("rl"), ""))
	ctx := testCtx(t, readTimeout)
	for i := range 2 {
		_, err := c.Request(ctx, "echo", i)
		require.NoError(t, err)
	}
	_, err := c.Request(ctx, "echo", 3)
	require.True(t, client.IsRateLimited(err), "got %v", err)
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	require.True(t, ce.Retryable)
	d, ok := ce.RetryAfter()
	require.True(t, ok)
	require.Greater(t, d, 59*time.Minute, "one token an hour")

	// Async requests are limited at admission, nothing stored.
	_, err = c.Request(ctx, "delay", map[string]int{"ms": 10})
	require.True(t, client.IsRateLimited(err), "got %v", err)

	// Another principal has its own bucket.
	other := dialClient(t, s, token(t, uid("rl-other"), ""))
	_, err = other.Request(ctx, "echo", 1)
	require.NoError(t, err)

	// The CLI exits 1 and names the code.
	env := []string{"STREAMER_URL=" + s.wsURL, "STREAMER_TOKEN=" + token(t, uid("rl-cli"), "")}
	for range 2 {
		res := runCLI(t, env, "call", "echo", "1")
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
	}
	res := runCLI(t, env, "call", "echo", "1")
	require.Equal(t, 1, res.code)
	require.Contains(t, res.stderr, "RATE_LIMITED")
}

func TestDevRateLimitBadRule(t *testing.T) {
	t.Parallel()
	res := runCLI(t, []string{"STREAMER_JWT_SECRET=" + testSecret}, "dev", "--addr", "127.0.0.1:0", "--data-dir", t.TempDir(), "--rate-limit", "lots")
	require.Equal(t, 2, res.code)
	require.Contains(t, res.stderr, "--rate-limit")
}

// TestDevRateLimitFlood measures a flood over WebSocket (SECURITY.md): 8
// connections of one principal send sync echoes as fast as they can
// under 50/s with a burst of 100, while another principal's requests go
// through. Admitted stays within burst + rate × elapsed.
func TestDevRateLimitFlood(t *testing.T) {
	t.Parallel()
	const conns, each = 8, 150
	s := startDev(t, "--rate-limit", "50/s,burst=100")
	tok := token(t, uid("flood"), "")
	clients := make([]*client.Client, conns)
	for i := range clients {
		clients[i] = dialClient(t, s, tok)
	}
	victim := dialClient(t, s, token(t, uid("victim"), ""))
	ctx := testCtx(t, 2*time.Minute)
	var admitted, limited, unavailable atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range clients {
		wg.Go(func() {
			for i := range each {
				_, err := c.Request(ctx, "echo", i)
				switch {
				case err == nil:
					admitted.Add(1)
				case client.IsRateLimited(err):
					limited.Add(1)
				case faultThrottle() != "" && unavailableErr(err):
					// The aws-local run throttles DynamoDB on purpose: a
					// take whose retries ran out is answered UNAVAILABLE.
					unavailable.Add(1)
				default:
					assert.NoError(t, err)
					return
				}
			}
		})
	}
	var victimOK int
	for range 10 {
		if _, err := victim.Request(ctx, "echo", "hi"); err == nil {
			victimOK++
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	bound := 100 + 50*elapsed.Seconds()
	msg := fmt.Sprintf("flood: %d conns × %d sync echoes of one principal in %s under 50/s burst 100: %d admitted, %d RATE_LIMITED (bound %.0f); other principal %d/10 ok",
		conns, each, elapsed.Round(time.Millisecond), admitted.Load(), limited.Load(), bound, victimOK)
	t.Log(msg)
	require.EqualValues(t, conns*each, admitted.Load()+limited.Load()+unavailable.Load())
	require.LessOrEqual(t, float64(admitted.Load()), bound+1e-6)
	require.GreaterOrEqual(t, admitted.Load(), int64(100))
	require.Equal(t, 10, victimOK, "another principal is not limited")
}

// unavailableErr reports whether err is the server's UNAVAILABLE.
func unavailableErr(err error) bool {
	var ce *client.Error
	return errors.As(err, &ce) && ce.Code == "UNAVAILABLE"
}
