package apigateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/apigateway"
	"github.com/streamer-go/streamer/transport/local"
)

// acceptAll is a local.Handler that accepts every connection and reports
// it on conns.
type acceptAll struct {
	conns chan *local.Conn
}

func (h *acceptAll) Connect(_ context.Context, c *local.Conn) error {
	h.conns <- c
	return nil
}

func (h *acceptAll) Message(context.Context, *local.Conn, local.Inbound) {}
func (h *acceptAll) Disconnect(context.Context, *local.Conn)             {}

type testBundle struct {
	gw      *local.Gateway
	srv     *httptest.Server
	handler *acceptAll
	sender  *apigateway.Sender
}

// setup serves a local gateway (WebSockets on /ws, its Management API on /)
// on 127.0.0.1 and returns a sender whose default endpoint is that server.
func setup(t testing.TB) *testBundle {
	t.Helper()
	h := &acceptAll{conns: make(chan *local.Conn, 16)}
	gw, err := local.New(local.Config{Handler: h})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", gw)
	mux.Handle("/", gw.Management())
	srv := httptest.NewServer(mux) // 127.0.0.1
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, gw.Close(ctx))
		srv.Close()
	})
	sender, err := apigateway.New(apigateway.Config{
		Endpoint: srv.URL,
		AWS:      testAWS(),
	})
	require.NoError(t, err)
	return &testBundle{gw: gw, srv: srv, handler: h, sender: sender}
}

func testAWS() aws.Config {
	return aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
	}
}

// dial connects a WebSocket client and returns it with its connection id.
func (b *testBundle) dial(t testing.TB) (*websocket.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.srv.URL, "http")+"/ws", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = ws.CloseNow() })
	var id string
	select {
	case c := <-b.handler.conns:
		id = c.ID
	case <-ctx.Done():
		t.Fatal("the gateway never reported the connection")
	}
	// The gateway registers the connection just after the upgrade response
	// the client has seen: wait until the Management API knows it.
	require.Eventually(t, func() bool {
		resp, err := http.Get(b.srv.URL + "/@connections/" + id)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 5*time.Millisecond, "connection %s never became live", id)
	return ws, id
}

// read returns the next message the client receives.
func read(t testing.TB, ws *websocket.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	typ, data, err := ws.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, websocket.MessageText, typ)
	return string(data)
}

func TestSend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ws, id := b.dial(t)
	ctx := t.Context()

	require.NoError(t, b.sender.Send(ctx, "", id, []byte(`{"type":"progress","seq":1}`)))
	require.Equal(t, `{"type":"progress","seq":1}`, read(t, ws), "via Config.Endpoint")

	require.NoError(t, b.sender.Send(ctx, b.srv.URL+"/prod", id, []byte(`{"seq":2}`)))
	require.Equal(t, `{"seq":2}`, read(t, ws), "via the connection's endpoint, with a stage")

	// Without a default endpoint, the connection's endpoint is enough.
	s, err := apigateway.New(apigateway.Config{AWS: aws.Config{Region: "eu-west-1", Credentials: aws.AnonymousCredentials{}}})
	require.NoError(t, err)
	require.NoError(t, s.Send(ctx, b.srv.URL+"/dev", id, []byte(`{"seq":3}`)))
	require.Equal(t, `{"seq":3}`, read(t, ws))
}

func TestSendConcurrent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ws, id := b.dial(t)
	const n = 40
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			// Several endpoints, so clients are created concurrently too.
			endpoint := fmt.Sprintf("%s/stage%d", b.srv.URL, i%4)
			errs[i] = b.sender.Send(t.Context(), endpoint, id, fmt.Appendf(nil, "%d", i))
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	got := map[string]bool{}
	for range n {
		got[read(t, ws)] = true
	}
	require.Len(t, got, n)
}

func TestSendGone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	err := b.sender.Send(t.Context(), "", "unknown-id", []byte(`{}`))
	require.ErrorIs(t, err, transport.ErrGone)
	var gone *types.GoneException
	require.ErrorAs(t, err, &gone, "the SDK error stays reachable")
	require.NotErrorIs(t, err, apigateway.ErrTooLarge)

	err = b.sender.Disconnect(t.Context(), "", "unknown-id")
	require.ErrorIs(t, err, transport.ErrGone)
}

func TestSendTooLarge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ws, id := b.dial(t)
	err := b.sender.Send(t.Context(), "", id, make([]byte, local.DefaultMaxMessageSize+1))
	require.ErrorIs(t, err, apigateway.ErrTooLarge)
	require.NotErrorIs(t, err, transport.ErrGone)

	// The connection is still there.
	require.NoError(t, b.sender.Send(t.Context(), "", id, []byte("small")))
	require.Equal(t, "small", read(t, ws))
}

func TestDisconnect(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ws, id := b.dial(t)
	require.NoError(t, b.sender.Disconnect(t.Context(), "", id))

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, _, err := ws.Read(ctx)
	require.Equal(t, websocket.StatusNormalClosure, websocket.CloseStatus(err), "the socket is closed: %v", err)

	require.ErrorIs(t, b.sender.Send(t.Context(), "", id, []byte(`{}`)), transport.ErrGone)
	require.ErrorIs(t, b.sender.Disconnect(t.Context(), "", id), transport.ErrGone)
}

// throttler answers 429 to the first `throttled` requests, then 200.
type throttler struct {
	throttled int32
	errorType string // the X-Amzn-Errortype header, if any
	requests  atomic.Int32
}

func (th *throttler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.URL.Path, "/@connections/") {
		http.NotFound(w, r)
		return
	}
	if th.requests.Add(1) <= th.throttled {
		if th.errorType != "" {
			w.Header().Set("X-Amzn-Errortype", th.errorType)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"message":"Rate exceeded"}`))
		return
	}
	w.WriteHeader(http.StatusOK)
}

func throttledSender(t testing.TB, th *throttler, maxRetries int) *apigateway.Sender {
	t.Helper()
	srv := httptest.NewServer(th)
	t.Cleanup(srv.Close)
	s, err := apigateway.New(apigateway.Config{
		Endpoint:   srv.URL + "/prod",
		AWS:        testAWS(),
		MaxRetries: maxRetries,
		MaxBackoff: time.Millisecond,
	})
	require.NoError(t, err)
	return s
}

func TestThrottling(t *testing.T) {
	t.Parallel()

	t.Run("RetriedUntilAccepted", func(t *testing.T) {
		t.Parallel()
		th := &throttler{throttled: 2, errorType: "LimitExceededException"}
		s := throttledSender(t, th, 0) // the default, 5 retries
		require.NoError(t, s.Send(t.Context(), "", "abc", []byte(`{}`)))
		require.Equal(t, int32(3), th.requests.Load())
	})

	t.Run("Unmodeled429", func(t *testing.T) {
		t.Parallel()
		th := &throttler{throttled: 2}
		s := throttledSender(t, th, 3)
		require.NoError(t, s.Disconnect(t.Context(), "", "abc"))
		require.Equal(t, int32(3), th.requests.Load())
	})

	t.Run("GivesUp", func(t *testing.T) {
		t.Parallel()
		th := &throttler{throttled: 1 << 30, errorType: "LimitExceededException"}
		s := throttledSender(t, th, 4)
		start := time.Now()
		err := s.Send(t.Context(), "", "abc", []byte(`{}`))
		require.Error(t, err)
		var limit *types.LimitExceededException
		require.ErrorAs(t, err, &limit)
		require.NotErrorIs(t, err, transport.ErrGone)
		require.Equal(t, int32(5), th.requests.Load(), "1 attempt + MaxRetries")
		require.Less(t, time.Since(start), 5*time.Second)
	})

	t.Run("NoRetries", func(t *testing.T) {
		t.Parallel()
		th := &throttler{throttled: 1 << 30, errorType: "LimitExceededException"}
		s := throttledSender(t, th, -1)
		require.Error(t, s.Send(t.Context(), "", "abc", []byte(`{}`)))
		require.Equal(t, int32(1), th.requests.Load())
	})

	t.Run("Canceled", func(t *testing.T) {
		t.Parallel()
		th := &throttler{throttled: 1 << 30, errorType: "LimitExceededException"}
		s := throttledSender(t, th, 0)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := s.Send(ctx, "", "abc", []byte(`{}`))
		require.ErrorIs(t, err, context.Canceled)
	})
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  apigateway.Config
		want string
	}{
		{"no region", apigateway.Config{}, "Config.AWS.Region"},
		{"relative endpoint", apigateway.Config{AWS: testAWS(), Endpoint: "/prod"}, "Config.Endpoint"},
		{"bad scheme", apigateway.Config{AWS: testAWS(), Endpoint: "ftp://x/prod"}, "Config.Endpoint"},
		{"negative backoff", apigateway.Config{AWS: testAWS(), MaxBackoff: -time.Second}, "Config.MaxBackoff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := apigateway.New(tc.cfg)
			require.Error(t, err)
			require.Nil(t, s)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	s, err := apigateway.New(apigateway.Config{AWS: testAWS()})
	require.NoError(t, err)
	ctx := t.Context()
	for name, err := range map[string]error{
		"no endpoint":      s.Send(ctx, "", "abc", []byte(`{}`)),
		"bad endpoint":     s.Send(ctx, "not a url", "abc", []byte(`{}`)),
		"no connection":    s.Send(ctx, "https://example.com/prod", "", []byte(`{}`)),
		"disconnect no id": s.Disconnect(ctx, "https://example.com/prod", ""),
		"disconnect no ep": s.Disconnect(ctx, "", "abc"),
	} {
		require.Error(t, err, name)
		require.False(t, errors.Is(err, transport.ErrGone), name)
	}
}

func TestEndpointFromRequest(t *testing.T) {
	t.Parallel()
	require.Equal(t, "https://abc.execute-api.us-east-1.amazonaws.com/prod",
		apigateway.EndpointFromRequest("abc.execute-api.us-east-1.amazonaws.com", "prod"))
	require.Equal(t, "https://ws.example.com", apigateway.EndpointFromRequest("ws.example.com", ""))
	require.Equal(t, "https://abc.execute-api.eu-west-1.amazonaws.com/dev",
		apigateway.EndpointFromAPI("abc", "eu-west-1", "dev"))
}
