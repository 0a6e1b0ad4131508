package lambdaapp_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

// TestRateLimitAcrossInstances: STREAMER_RATE_LIMIT limits a principal
// across router instances (separate Lambdas), with buckets in the table.
func TestRateLimitAcrossInstances(t *testing.T) {
	t.Parallel()
	s := newStackEnv(t, lambdaapp.Options{}, map[string]string{"STREAMER_RATE_LIMIT": "1/h,burst=3"})
	other := s.build(lambdaapp.Router, lambdaapp.Options{})
	c, id := s.open(t, "alice")
	var ok, limited int
	for i := range 6 {
		router := s.router
		if i%2 == 1 {
			router = other
		}
		ev := wsEvent(id, "MESSAGE", "$default")
		ev.Body = fmt.Sprintf(`{"action":"echo","id":"e%d","payload":%d}`, i, i)
		resp, err := router.Route(context.Background(), ev)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		m := lambdatest.Read(t, c)
		switch {
		case m.Type == streamer.TypeResponse && m.Success:
			ok++
		case m.Type == streamer.TypeError && m.Error.Code == streamer.CodeRateLimited:
			require.True(t, m.Error.Retryable)
			require.Contains(t, string(m.Error.Details), "retry_after_ms")
			limited++
		default:
			t.Fatalf("unexpected reply %+v", m)
		}
	}
	require.Equal(t, 3, ok, "a burst of 3 across both instances")
	require.Equal(t, 3, limited)

	c2, id2 := s.open(t, "bob")
	s.send(t, id2, `{"action":"echo","id":"b1","payload":1}`)
	require.Equal(t, streamer.TypeResponse, lambdatest.Read(t, c2).Type, "another principal has its own bucket")
}

// TestRateLimitReservedAcrossInstances: STREAMER_RATE_LIMIT limits the
// reserved actions too, in a bucket of their own: a flood of status frames
// across router instances is refused past the burst with RATE_LIMITED
// carrying the request asked about, and leaves the actions' bucket whole.
func TestRateLimitReservedAcrossInstances(t *testing.T) {
	t.Parallel()
	s := newStackEnv(t, lambdaapp.Options{}, map[string]string{"STREAMER_RATE_LIMIT": "1/h,burst=3"})
	other := s.build(lambdaapp.Router, lambdaapp.Options{})
	c, id := s.open(t, "carol")
	var found, limited int
	for i := range 8 {
		router := s.router
		if i%2 == 1 {
			router = other
		}
		ev := wsEvent(id, "MESSAGE", "$default")
		ev.Body = `{"action":"status","payload":{"request_id":"nope"}}`
		resp, err := router.Route(context.Background(), ev)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		m := lambdatest.Read(t, c)
		require.Equal(t, streamer.TypeError, m.Type)
		require.Equal(t, "nope", m.RequestID)
		switch m.Error.Code {
		case streamer.CodeNotFound:
			found++
		case streamer.CodeRateLimited:
			require.Contains(t, string(m.Error.Details), "retry_after_ms")
			limited++
		default:
			t.Fatalf("unexpected reply %+v", m)
		}
	}
	require.Equal(t, 3, found, "a burst of 3 across both instances")
	require.Equal(t, 5, limited)

	s.send(t, id, `{"action":"echo","id":"e1","payload":1}`)
	m := lambdatest.Read(t, c)
	require.Equal(t, streamer.TypeResponse, m.Type, "the actions' bucket is another: %+v", m)
}
