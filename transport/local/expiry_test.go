package local_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/local"
)

// expiring is a recorder whose connections expire ttl after they connect,
// except those of user "forever".
type expiring struct {
	*recorder
	ttl time.Duration
}

func (e *expiring) Connect(ctx context.Context, c *local.Conn) error {
	if err := e.recorder.Connect(ctx, c); err != nil {
		return err
	}
	if c.Request.URL.Query().Get("user") != "forever" {
		c.ExpiresAt = time.Now().Add(e.ttl)
	}
	return nil
}

// A connection whose credentials expire is closed with 1008 "token
// expired" at Conn.ExpiresAt, so nothing (progress included) reaches it
// afterwards; a connection without expiry stays open.
func TestGatewayClosesAtExpiry(t *testing.T) {
	rec := &expiring{recorder: newRecorder(), ttl: 200 * time.Millisecond}
	gw, err := local.New(local.Config{Handler: rec})
	require.NoError(t, err)
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		require.NoError(t, gw.Close(ctx))
		srv.Close()
	})
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	dial := func(user string) (*websocket.Conn, string) {
		before := len(rec.connectedIDs())
		ws, resp, err := websocket.Dial(ctx, url+"?user="+user, nil)
		require.NoError(t, err)
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
		t.Cleanup(func() { _ = ws.CloseNow() })
		ids := rec.connectedIDs()
		require.Len(t, ids, before+1)
		return ws, ids[len(ids)-1]
	}
	forever, foreverID := dial("forever")
	ws, id := dial("alice")

	// The server closes it: the read ends with the close frame's status.
	_, _, err = ws.Read(ctx)
	require.Error(t, err)
	var ce websocket.CloseError
	require.True(t, errors.As(err, &ce), "want a close frame, got %v", err)
	require.Equal(t, websocket.StatusPolicyViolation, ce.Code)
	require.Equal(t, local.ReasonTokenExpired, ce.Reason)
	require.ErrorIs(t, gw.Send(ctx, "", id, []byte(`{"type":"progress"}`)), transport.ErrGone)
	rec.requireDisconnectedOnce(t, id)

	// The other connection is still served.
	require.NoError(t, gw.Send(ctx, "", foreverID, []byte(`{"type":"pong"}`)))
	_, data, err := forever.Read(ctx)
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"pong"}`, string(data))
}
