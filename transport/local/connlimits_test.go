package local_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/transport/local"
)

func principalOf(c *local.Conn) string { s, _ := c.Value.(string); return s }

// dialStatus dials as user and returns the HTTP status of the upgrade
// response (101 when upgraded) and the connection, if any.
func dialStatus(t *testing.T, b *testBundle, user string) (int, *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), budgetWait)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, b.url+"?user="+user, nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		require.NotNil(t, resp, "dial: %v", err)
		return resp.StatusCode, nil
	}
	t.Cleanup(func() { _ = ws.CloseNow() })
	return http.StatusSwitchingProtocols, ws
}

// TestOpenConnectionsPerPrincipal is finding 3 of issue 11: the
// connection over a principal's cap is refused with 429 before the
// upgrade; another principal is not; a closed connection frees its place.
func TestOpenConnectionsPerPrincipal(t *testing.T) {
	rec := newRecorder()
	b := setup(t, rec, local.Config{PrincipalOf: principalOf, MaxConnectionsPerPrincipal: 3})
	var conns []*websocket.Conn
	for range 3 {
		code, ws := dialStatus(t, b, "a")
		require.Equal(t, http.StatusSwitchingProtocols, code)
		conns = append(conns, ws)
	}
	code, _ := dialStatus(t, b, "a")
	require.Equal(t, http.StatusTooManyRequests, code)
	code, _ = dialStatus(t, b, "b")
	require.Equal(t, http.StatusSwitchingProtocols, code)
	require.Equal(t, 3, b.gw.OpenConnections("principal-a"))

	require.NoError(t, conns[0].Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return b.gw.OpenConnections("principal-a") == 2 }, budgetWait, time.Millisecond)
	code, _ = dialStatus(t, b, "a")
	require.Equal(t, http.StatusSwitchingProtocols, code)
}

// TestNewConnectionsPerIP: over the source address's token bucket the
// upgrade is refused with 429, and Connect does not run.
func TestNewConnectionsPerIP(t *testing.T) {
	rec := newRecorder()
	b := setup(t, rec, local.Config{NewConnectionsPerIP: local.Rate{PerSecond: 0.001, Burst: 2}})
	for range 2 {
		code, _ := dialStatus(t, b, "a")
		require.Equal(t, http.StatusSwitchingProtocols, code)
	}
	code, _ := dialStatus(t, b, "b")
	require.Equal(t, http.StatusTooManyRequests, code)
	require.Len(t, rec.connectedIDs(), 2, "Connect is not called over the limit")
}

// TestNewConnectionsPerPrincipal: over the principal's token bucket the
// connection is refused with 429; another principal still connects.
func TestNewConnectionsPerPrincipal(t *testing.T) {
	rec := newRecorder()
	b := setup(t, rec, local.Config{PrincipalOf: principalOf, NewConnectionsPerPrincipal: local.Rate{PerSecond: 0.001, Burst: 2}})
	for range 2 {
		code, _ := dialStatus(t, b, "a")
		require.Equal(t, http.StatusSwitchingProtocols, code)
	}
	code, _ := dialStatus(t, b, "a")
	require.Equal(t, http.StatusTooManyRequests, code)
	code, _ = dialStatus(t, b, "b")
	require.Equal(t, http.StatusSwitchingProtocols, code)
}
