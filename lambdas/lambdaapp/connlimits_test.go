package lambdaapp_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// connectAs runs $connect for connection id with subject's token (or the
// given token) from source address ip.
func connectAs(t *testing.T, h *lambdaapp.Handlers, id, token, ip string) events.APIGatewayProxyResponse {
	t.Helper()
	ev := wsEvent(id, "CONNECT", "$connect")
	ev.Headers = map[string]string{"Authorization": "Bearer " + token}
	ev.RequestContext.Identity.SourceIP = ip
	resp, err := h.Connect(context.Background(), ev)
	require.NoError(t, err)
	return resp
}

func requireRefused(t *testing.T, resp events.APIGatewayProxyResponse, body string) {
	t.Helper()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Contains(t, resp.Body, body)
	secs, err := strconv.Atoi(resp.Headers["Retry-After"])
	require.NoError(t, err, "Retry-After: %q", resp.Headers["Retry-After"])
	require.Positive(t, secs)
}

// TestConnectionCap: STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL refuses a
// principal's connection over the cap with 429, across connect instances;
// another principal still connects, and $disconnect frees a place.
func TestConnectionCap(t *testing.T) {
	t.Parallel()
	s := newStackEnv(t, lambdaapp.Options{}, map[string]string{"STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL": "3"})
	other := s.build(lambdaapp.Connect, lambdaapp.Options{})
	alice, bob := lambdatest.Token(t, "alice"), lambdatest.Token(t, "bob")
	for i := range 3 {
		h := s.connect
		if i%2 == 1 {
			h = other
		}
		require.Equal(t, http.StatusOK, connectAs(t, h, fmt.Sprintf("alice-%d", i), alice, "192.0.2.1").StatusCode)
	}
	requireRefused(t, connectAs(t, other, "alice-3", alice, "192.0.2.1"), "the limit is 3")
	require.Equal(t, http.StatusOK, connectAs(t, s.connect, "bob-0", bob, "192.0.2.1").StatusCode, "another principal has its own cap")

	// The refused connection was not stored.
	store, err := dynamodb.New(dynamodb.Config{Client: s.aws.DB, Table: s.table})
	require.NoError(t, err)
	_, err = store.GetConnection(context.Background(), "alice-3")
	require.ErrorIs(t, err, storage.ErrNotFound)
	n, err := store.OpenConnections(context.Background(), "", "alice")
	require.NoError(t, err)
	require.Equal(t, 3, n)

	resp, err := s.disconnect.Disconnect(context.Background(), wsEvent("alice-1", "DISCONNECT", "$disconnect"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, http.StatusOK, connectAs(t, other, "alice-4", alice, "192.0.2.1").StatusCode, "a disconnect frees a place")
	requireRefused(t, connectAs(t, s.connect, "alice-5", alice, "192.0.2.1"), "too many open connections")
}

// TestConnectionRates: STREAMER_NEW_CONNECTIONS_PER_IP refuses an address
// over its rate before the token is read; STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL
// a principal over its rate, after it. Both answer 429 with Retry-After.
func TestConnectionRates(t *testing.T) {
	t.Parallel()
	s := newStackEnv(t, lambdaapp.Options{}, map[string]string{
		"STREAMER_NEW_CONNECTIONS_PER_IP":        "1/h,burst=3",
		"STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL": "1/h,burst=2",
	})
	alice, bob, carol := lambdatest.Token(t, "alice"), lambdatest.Token(t, "bob"), lambdatest.Token(t, "carol")

	require.Equal(t, http.StatusOK, connectAs(t, s.connect, "a1", alice, "192.0.2.1").StatusCode)
	require.Equal(t, http.StatusOK, connectAs(t, s.connect, "a2", alice, "192.0.2.2").StatusCode)
	requireRefused(t, connectAs(t, s.connect, "a3", alice, "192.0.2.3"), "too many new connections for this principal")
	require.Equal(t, http.StatusOK, connectAs(t, s.connect, "b1", bob, "192.0.2.3").StatusCode, "another principal has its own rate")

	// 192.0.2.1 has taken 1 of its 3; 192.0.2.3 has taken 2 (the refused
	// a3 took one, before its principal was refused).
	require.Equal(t, http.StatusOK, connectAs(t, s.connect, "c1", carol, "192.0.2.3").StatusCode)
	requireRefused(t, connectAs(t, s.connect, "c2", carol, "192.0.2.3"), "too many new connections from this address")
	// Before the token: a bad token from that address is refused 429,
	// not 401.
	requireRefused(t, connectAs(t, s.connect, "x1", "not.a.jwt", "192.0.2.3"), "from this address")
	require.Equal(t, http.StatusUnauthorized, connectAs(t, s.connect, "x2", "not.a.jwt", "192.0.2.1").StatusCode)
}

// TestConnectionLimitsOff: with every limit off, nothing is counted or
// refused, and the connection is stored as before.
func TestConnectionLimitsOff(t *testing.T) {
	t.Parallel()
	s := newStackEnv(t, lambdaapp.Options{}, map[string]string{
		"STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL": "-1",
		"STREAMER_NEW_CONNECTIONS_PER_IP":        "off",
		"STREAMER_NEW_CONNECTIONS_PER_PRINCIPAL": "off",
	})
	alice := lambdatest.Token(t, "alice")
	for i := range 5 {
		require.Equal(t, http.StatusOK, connectAs(t, s.connect, fmt.Sprintf("a%d", i), alice, "192.0.2.1").StatusCode)
	}
}
