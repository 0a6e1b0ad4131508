package lambdaapp_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/plugins/demo"
)

// stack is one deployment's handlers on DynamoDB Local, replying through a
// local gateway's Management API.
type stack struct {
	aws        *lambdatest.AWS
	table      string
	gw         *lambdatest.Gateway
	connect    *lambdaapp.Handlers
	disconnect *lambdaapp.Handlers
	router     *lambdaapp.Handlers
	processor  *lambdaapp.Handlers
	reaper     *lambdaapp.Handlers
	// build makes another function's handlers of this deployment.
	build func(fn lambdaapp.Function, opts lambdaapp.Options) *lambdaapp.Handlers
}

func newStack(t *testing.T, plugins ...streamer.Plugin) *stack {
	t.Helper()
	return newStackWith(t, lambdaapp.Options{}, plugins...)
}

// newStackWith is newStack with options for every function's handlers.
func newStackWith(t *testing.T, opts lambdaapp.Options, plugins ...streamer.Plugin) *stack {
	t.Helper()
	return newStackEnv(t, opts, nil, plugins...)
}

// newStackEnv is newStackWith with extra STREAMER_* settings for every
// function.
func newStackEnv(t *testing.T, opts lambdaapp.Options, extra map[string]string, plugins ...streamer.Plugin) *stack {
	t.Helper()
	if plugins == nil {
		plugins = []streamer.Plugin{demo.New()}
	}
	s := &stack{aws: lambdatest.DynamoDBLocal(t)}
	s.table = s.aws.Table(t)
	s.gw = lambdatest.StartGateway(t)
	vars := map[string]string{
		"STREAMER_TABLE":      s.table,
		"STREAMER_JWT_SECRET": lambdatest.Secret,
		"STREAMER_ENDPOINT":   s.gw.URL,
		// Short, so that a cancel or a refresh shows within the tests.
		"STREAMER_CANCEL_POLL": "200ms",
		// Lambda sets it; the processor invokes itself by it.
		"AWS_LAMBDA_FUNCTION_NAME": "processor",
	}
	for k, v := range extra {
		vars[k] = v
	}
	s.build = func(fn lambdaapp.Function, o lambdaapp.Options) *lambdaapp.Handlers {
		cfg, err := lambdaapp.ConfigFromEnv(fn, env(vars))
		require.NoError(t, err)
		log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
		o.Logger = &log
		h, err := lambdaapp.New(context.Background(), cfg, plugins, o)
		require.NoError(t, err)
		return h
	}
	build := func(fn lambdaapp.Function) *lambdaapp.Handlers { return s.build(fn, opts) }
	s.connect, s.disconnect, s.router, s.processor = build(lambdaapp.Connect), build(lambdaapp.Disconnect), build(lambdaapp.Router), build(lambdaapp.Processor)
	s.reaper = build(lambdaapp.Reaper)
	return s
}

// wsEvent is an API Gateway WebSocket event of connection id.
func wsEvent(id, eventType, route string) events.APIGatewayWebsocketProxyRequest {
	return events.APIGatewayWebsocketProxyRequest{RequestContext: events.APIGatewayWebsocketProxyRequestContext{
		ConnectionID: id, EventType: eventType, RouteKey: route,
		DomainName: "abc123.execute-api.us-east-1.amazonaws.com", Stage: "prod", APIID: "abc123",
	}}
}

// open dials the gateway and connects the connection through the connect
// handler with a valid token.
func (s *stack) open(t *testing.T, subject string) (*websocket.Conn, string) {
	t.Helper()
	c, id := s.gw.Dial(t)
	ev := wsEvent(id, "CONNECT", "$connect")
	ev.Headers = map[string]string{"Authorization": "Bearer " + lambdatest.Token(t, subject)}
	resp, err := s.connect.Connect(context.Background(), ev)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return c, id
}

func (s *stack) send(t *testing.T, id, body string) {
	t.Helper()
	ev := wsEvent(id, "MESSAGE", "$default")
	ev.Body = body
	resp, err := s.router.Route(context.Background(), ev)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Empty(t, resp.Body)
}

func TestConnectRouteDisconnect(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	c, id := s.open(t, "alice")

	// A sync echo is answered through the Management API.
	s.send(t, id, `{"action":"echo","id":"e1","payload":1}`)
	m := lambdatest.Read(t, c)
	require.Equal(t, streamer.TypeResponse, m.Type)
	require.Equal(t, "e1", m.RequestID)
	require.True(t, m.Success)
	require.JSONEq(t, `1`, string(m.Data))

	// A binary frame (base64 in the event) is refused with INVALID_MESSAGE.
	ev := wsEvent(id, "MESSAGE", "$default")
	ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString([]byte(`{"action":"echo"}`)), true
	resp, err := s.router.Route(ctx, ev)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	m = lambdatest.Read(t, c)
	require.Equal(t, streamer.TypeError, m.Type)
	require.Equal(t, streamer.CodeInvalidMessage, m.Error.Code)

	// A body that is not base64 is a bad request, and nothing is sent.
	ev.Body = "%%%"
	resp, err = s.router.Route(ctx, ev)
	require.NoError(t, err)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// After $disconnect the connection is unknown: its messages are
	// answered UNAUTHORIZED (the gateway still holds the socket).
	resp, err = s.disconnect.Disconnect(ctx, wsEvent(id, "DISCONNECT", "$disconnect"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	s.send(t, id, `{"action":"echo","id":"e2","payload":2}`)
	m = lambdatest.Read(t, c)
	require.Equal(t, streamer.TypeError, m.Type)
	require.Equal(t, "e2", m.RequestID)
	require.Equal(t, streamer.CodeUnauthorized, m.Error.Code)

	// Disconnecting an unknown connection is not an error.
	resp, err = s.disconnect.Disconnect(ctx, wsEvent("never-connected", "DISCONNECT", "$disconnect"))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestConnectTokens(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	ctx := context.Background()
	good := lambdatest.Token(t, "bob")
	cases := []struct {
		name string
		set  func(*events.APIGatewayWebsocketProxyRequest)
		want int
	}{
		{"no token", func(*events.APIGatewayWebsocketProxyRequest) {}, http.StatusUnauthorized},
		{"bad token", func(ev *events.APIGatewayWebsocketProxyRequest) {
			ev.Headers = map[string]string{"Authorization": "Bearer not.a.jwt"}
		}, http.StatusUnauthorized},
		{"wrong key", func(ev *events.APIGatewayWebsocketProxyRequest) {
			ev.QueryStringParameters = map[string]string{"token": signOther(t)}
		}, http.StatusUnauthorized},
		{"header, any case", func(ev *events.APIGatewayWebsocketProxyRequest) {
			ev.Headers = map[string]string{"authorization": "Bearer " + good}
		}, http.StatusOK},
		{"token query parameter", func(ev *events.APIGatewayWebsocketProxyRequest) {
			ev.QueryStringParameters = map[string]string{"token": good}
		}, http.StatusOK},
		{"Authorization query parameter", func(ev *events.APIGatewayWebsocketProxyRequest) {
			ev.QueryStringParameters = map[string]string{"Authorization": "Bearer " + good}
		}, http.StatusOK},
		{"multi-value header", func(ev *events.APIGatewayWebsocketProxyRequest) {
			ev.MultiValueHeaders = map[string][]string{"Authorization": {"Bearer " + good}}
		}, http.StatusOK},
		{"multi-value query", func(ev *events.APIGatewayWebsocketProxyRequest) {
			ev.MultiValueQueryStringParameters = map[string][]string{"token": {good}}
		}, http.StatusOK},
	}
	for _, tc := range cases {
		ev := wsEvent("conn-"+tc.name, "CONNECT", "$connect")
		tc.set(&ev)
		resp, err := s.connect.Connect(ctx, ev)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, resp.StatusCode, tc.name)
	}

	// Handlers configured without keys (as the router may be) cannot
	// accept anyone: that is a configuration error, not a 401.
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Router, env(map[string]string{"STREAMER_TABLE": s.table}))
	require.NoError(t, err)
	log := zerolog.Nop()
	keyless, err := lambdaapp.New(ctx, cfg, nil, lambdaapp.Options{Logger: &log})
	require.NoError(t, err)
	ev := wsEvent("x", "CONNECT", "$connect")
	ev.Headers = map[string]string{"Authorization": "Bearer " + good}
	resp, err := keyless.Connect(ctx, ev)
	require.Error(t, err)
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
}

func signOther(t *testing.T) string {
	t.Helper()
	// Valid, but signed with another secret.
	tok, err := middleware.SignHS256([]byte("another-secret-0123456789abcdefghijklmnop"), middleware.Claims{Subject: "mallory"})
	require.NoError(t, err)
	return tok
}
