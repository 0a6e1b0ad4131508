package devserver_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// TestConnectionCapPerPrincipal is finding 3 of issue 11 on `streamer
// dev`: the connection over a principal's cap is refused with HTTP 429
// before the upgrade, while another principal connects.
func TestConnectionCapPerPrincipal(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	info := start(t, devserver.Config{
		DataDir: t.TempDir(), Store: memory.New(), Secret: secret, MaxConnectionsPerPrincipal: 2,
	})
	dial := func(subject string) int {
		token, err := middleware.SignHS256(secret, middleware.Claims{Subject: subject, TTL: time.Hour})
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		ws, resp, err := websocket.Dial(ctx, info.WebSocketURL+"?token="+url.QueryEscape(token), nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			require.NotNil(t, resp, "dial: %v", err)
			return resp.StatusCode
		}
		t.Cleanup(func() { _ = ws.CloseNow() })
		return http.StatusSwitchingProtocols
	}
	require.Equal(t, http.StatusSwitchingProtocols, dial("alice"))
	require.Equal(t, http.StatusSwitchingProtocols, dial("alice"))
	require.Equal(t, http.StatusTooManyRequests, dial("alice"))
	require.Equal(t, http.StatusSwitchingProtocols, dial("bob"))
}
