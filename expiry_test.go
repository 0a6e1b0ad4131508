package streamer_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/progress/progresstest"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local"
)

// expiryHandler wires the local gateway to an App as the dev server does.
type expiryHandler struct{ app *streamer.App }

func (h *expiryHandler) Connect(ctx context.Context, c *local.Conn) error {
	p, err := h.app.HandleConnect(ctx, c.ID, "", middleware.TokenFromRequest(c.Request.Header, c.Request.URL.Query()))
	if err != nil {
		return err
	}
	c.Value = &p
	c.ExpiresAt = h.app.TokenDeadline(&p)
	return nil
}

func (h *expiryHandler) Message(ctx context.Context, c *local.Conn, m local.Inbound) {
	p, _ := c.Value.(*streamer.Principal)
	_ = h.app.HandleMessage(ctx, streamer.Conn{ID: c.ID, Principal: p}, m.Data, m.Binary)
}

func (h *expiryHandler) Disconnect(ctx context.Context, c *local.Conn) {
	_ = h.app.HandleDisconnect(ctx, c.ID)
}

// wsMsg is the part of a server message the test reads.
type wsMsg struct {
	Type      string `json:"type"`
	RequestID string `json:"request_id"`
	Status    string `json:"status"`
	Error     *struct {
		Code string `json:"code"`
	} `json:"error"`
}

func readMsg(ctx context.Context, t *testing.T, ws *websocket.Conn) (wsMsg, error) {
	t.Helper()
	_, data, err := ws.Read(ctx)
	if err != nil {
		return wsMsg{}, err
	}
	var m wsMsg
	require.NoError(t, json.Unmarshal(data, &m), "%s", data)
	return m, nil
}

// Finding 4 of issue 11: once a connection's token has expired (past the
// leeway), every frame is answered UNAUTHORIZED, reserved actions included,
// over a real WebSocket to the embedded runtime, and the connection is
// closed. Nothing stored is altered: a cancel after expiry cancels nothing.
func TestExpiredTokenRefusesEveryAction(t *testing.T) {
	start := time.Now()
	clk := progresstest.New(start)
	secret := []byte(strings.Repeat("k", 32))
	auth, err := middleware.NewJWT(middleware.JWTConfig{Secret: secret, Now: clk.Now})
	require.NoError(t, err)
	h := &expiryHandler{}
	gw, err := local.New(local.Config{Handler: h})
	require.NoError(t, err)
	store := memory.New()
	echo := streamer.Plugin{Name: "t", Actions: []streamer.Action{
		{Name: "echo", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return "ok", nil })},
		{Name: "slow", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return "ok", nil })},
	}}
	app, err := streamer.New(streamer.Config{
		Store: store, Sender: gw, Authenticator: auth, Clock: clk, Plugins: []streamer.Plugin{echo},
		Middleware: []streamer.Middleware{middleware.Auth(middleware.AuthOptions{Now: clk.Now})},
	})
	require.NoError(t, err)
	h.app = app
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Close(ctx)
		srv.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A token valid for an hour of the App's clock; the gateway's own timer
	// (real time) is an hour away too, so only the router can refuse.
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "alice", "exp": start.Add(time.Hour).Unix(),
	}).SignedString(secret)
	require.NoError(t, err)
	dial := func() *websocket.Conn {
		ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"?token="+tok, nil)
		require.NoError(t, err)
		if resp.Body != nil {
			_ = resp.Body.Close()
		}
		t.Cleanup(func() { _ = ws.CloseNow() })
		return ws
	}

	frames := []struct{ name, frame string }{
		{"ping", `{"action":"ping","id":"f-ping"}`},
		{"status", `{"action":"status","id":"f-status","payload":{"request_id":"r1"}}`},
		{"resume", `{"action":"resume","id":"f-resume","payload":{"request_id":"r1"}}`},
		{"cancel", `{"action":"cancel","id":"f-cancel","payload":{"request_id":"r1"}}`},
		{"actions", `{"action":"actions","id":"f-actions"}`},
		{"list", `{"action":"list","id":"f-list"}`},
		{"echo", `{"action":"echo","id":"f-echo"}`},
		{"async", `{"action":"slow","id":"f-slow"}`},
	}
	// One connection per frame: the first refusal closes its connection.
	conns := make([]*websocket.Conn, len(frames))
	for i := range frames {
		conns[i] = dial()
	}
	// Before expiry: a request is stored and ping works.
	require.NoError(t, conns[0].Write(ctx, websocket.MessageText, []byte(`{"action":"slow","id":"r1"}`)))
	m, err := readMsg(ctx, t, conns[0])
	require.NoError(t, err)
	require.Equal(t, "acknowledgment", m.Type)
	require.NoError(t, conns[0].Write(ctx, websocket.MessageText, []byte(`{"action":"ping","id":"p0"}`)))
	m, err = readMsg(ctx, t, conns[0])
	require.NoError(t, err)
	require.Equal(t, "pong", m.Type)

	clk.Advance(time.Hour + streamer.DefaultTokenLeeway + time.Second)

	for i, f := range frames {
		t.Run(f.name, func(t *testing.T) {
			ws := conns[i]
			require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(f.frame)))
			m, err := readMsg(ctx, t, ws)
			require.NoError(t, err)
			require.Equal(t, "error", m.Type)
			require.NotNil(t, m.Error)
			require.Equal(t, streamer.CodeUnauthorized, m.Error.Code)
			var sent struct{ ID string }
			require.NoError(t, json.Unmarshal([]byte(f.frame), &sent))
			require.Equal(t, sent.ID, m.RequestID)
			// The server closes the connection after the refusal.
			_, err = readMsg(ctx, t, ws)
			require.Error(t, err)
			require.False(t, errors.Is(err, context.DeadlineExceeded), "the connection was not closed")
		})
	}
	r, err := store.GetRequest(ctx, storage.Key{Subject: "alice", ID: "r1"})
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, r.Status, "a cancel after expiry must not cancel")
	_, err = store.GetRequest(ctx, storage.Key{Subject: "alice", ID: "f-slow"})
	require.ErrorIs(t, err, storage.ErrNotFound, "nothing is stored after expiry")
}
