package devserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// ticker reports progress until its request is canceled.
func ticker() streamer.Plugin {
	return streamer.Plugin{Name: "ticker", Actions: []streamer.Action{{
		Name:    "tick",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
			for i := 0; ; i++ {
				if err := rep.Report(ctx, streamer.Update{Percentage: float64(i % 100), Message: "tick"}); err != nil {
					return nil, err
				}
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
		}),
	}}}
}

// Finding 4 of issue 11, on `streamer dev`: a connection following a
// request's progress is closed with 1008 "token expired" when its token
// expires, so progress stops flowing to it; the request goes on, and a new
// connection with a fresh token can follow it again.
func TestDevServerClosesExpiredConnection(t *testing.T) {
	t.Parallel()
	secret := []byte("0123456789abcdef0123456789abcdef")
	info := start(t, devserver.Config{
		DataDir: t.TempDir(), Store: memory.New(), Secret: secret, TokenLeeway: -1,
		Plugins: []streamer.Plugin{ticker()},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(ttl time.Duration) *websocket.Conn {
		tok, err := middleware.SignHS256(secret, middleware.Claims{Subject: "alice", TTL: ttl})
		require.NoError(t, err)
		ws, resp, err := websocket.Dial(ctx, info.WebSocketURL+"?token="+tok, nil)
		require.NoError(t, err)
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
		t.Cleanup(func() { _ = ws.CloseNow() })
		return ws
	}
	type msg struct {
		Type   string `json:"type"`
		Seq    int64  `json:"seq"`
		Status string `json:"status"`
	}

	ws := dial(2 * time.Second) // exp is whole seconds: 1 to 2 s from now
	require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(`{"action":"tick","id":"t1"}`)))
	var events int
	var err error
	for {
		var data []byte
		if _, data, err = ws.Read(ctx); err != nil {
			break
		}
		var m msg
		require.NoError(t, json.Unmarshal(data, &m))
		if m.Seq > 0 {
			events++
		}
	}
	var ce websocket.CloseError
	require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
	require.Equal(t, websocket.StatusPolicyViolation, ce.Code)
	require.Equal(t, local.ReasonTokenExpired, ce.Reason)
	require.Positive(t, events, "progress flowed before the expiry")

	// The request runs on; a fresh token follows it again.
	ws = dial(time.Hour)
	require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(`{"action":"status","payload":{"request_id":"t1"}}`)))
	_, data, err := ws.Read(ctx)
	require.NoError(t, err)
	var m msg
	require.NoError(t, json.Unmarshal(data, &m))
	require.Equal(t, "status", m.Type)
	require.Equal(t, "running", m.Status)
	require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(`{"action":"cancel","payload":{"request_id":"t1"}}`)))
}
