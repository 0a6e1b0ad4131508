package local_test

import (
	"bytes"
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

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/transport"
	"github.com/streamer-go/streamer/transport/local"
)

const waitFor = 5 * time.Second

// recorder is a Handler that records every call.
type recorder struct {
	connectErr error
	// onMessage, when set, runs inside Message.
	onMessage func(ctx context.Context, c *local.Conn, m local.Inbound)

	mu          sync.Mutex
	connected   []string
	messages    []local.Inbound
	disconnects map[string]int
	inFlight    int
	maxInFlight int
}

func newRecorder() *recorder { return &recorder{disconnects: make(map[string]int)} }

func (r *recorder) Connect(_ context.Context, c *local.Conn) error {
	if r.connectErr != nil {
		return r.connectErr
	}
	c.Value = "principal-" + c.Request.URL.Query().Get("user")
	r.mu.Lock()
	r.connected = append(r.connected, c.ID)
	r.mu.Unlock()
	return nil
}

func (r *recorder) Message(ctx context.Context, c *local.Conn, m local.Inbound) {
	r.mu.Lock()
	r.messages = append(r.messages, m)
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	r.mu.Unlock()
	if r.onMessage != nil {
		r.onMessage(ctx, c, m)
	}
	r.mu.Lock()
	r.inFlight--
	r.mu.Unlock()
}

func (r *recorder) Disconnect(_ context.Context, c *local.Conn) {
	r.mu.Lock()
	r.disconnects[c.ID]++
	r.mu.Unlock()
}

func (r *recorder) connectedIDs() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.connected...)
}

func (r *recorder) messageCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.messages)
}

func (r *recorder) disconnectCount(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.disconnects[id]
}

// requireDisconnectedOnce waits until id has had its Disconnect call and
// checks it had exactly one.
func (r *recorder) requireDisconnectedOnce(t testing.TB, id string) {
	t.Helper()
	require.Eventually(t, func() bool { return r.disconnectCount(id) > 0 }, waitFor, 5*time.Millisecond,
		"Disconnect not called for %s", id)
	require.Equal(t, 1, r.disconnectCount(id), "Disconnect calls for %s", id)
}

type testBundle struct {
	gw  *local.Gateway
	rec *recorder
	srv *httptest.Server
	url string // ws:// URL of the gateway
}

func setup(t *testing.T, rec *recorder, cfg local.Config) *testBundle {
	t.Helper()
	if rec == nil {
		rec = newRecorder()
	}
	cfg.Handler = rec
	gw, err := local.New(cfg)
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", gw)
	mux.Handle("/", gw.Management())
	srv := httptest.NewServer(mux) // binds 127.0.0.1
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		assert.NoError(t, gw.Close(ctx))
		srv.Close()
		// Every connection that connected was disconnected exactly once.
		for _, id := range rec.connectedIDs() {
			assert.Equal(t, 1, rec.disconnectCount(id), "Disconnect calls for %s", id)
		}
	})
	return &testBundle{gw: gw, rec: rec, srv: srv, url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"}
}

// client is a dialed connection whose frames are read by one goroutine.
type client struct {
	ws       *websocket.Conn
	id       string
	msgs     chan []byte
	closeErr chan error // the error that ended reading
}

func (b *testBundle) dial(t *testing.T, opts *websocket.DialOptions) *client {
	t.Helper()
	before := b.rec.connectedIDs()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, b.url, opts)
	require.NoError(t, err)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	ws.SetReadLimit(1 << 20)
	ids := b.rec.connectedIDs()
	require.Len(t, ids, len(before)+1)
	c := &client{ws: ws, id: ids[len(ids)-1], msgs: make(chan []byte, 1024), closeErr: make(chan error, 1)}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			_, data, err := ws.Read(context.Background())
			if err != nil {
				c.closeErr <- err
				return
			}
			c.msgs <- data
		}
	})
	t.Cleanup(func() {
		_ = ws.CloseNow()
		wg.Wait()
	})
	// Wait until the gateway has registered the connection.
	require.Eventually(t, func() bool {
		return b.gw.Send(context.Background(), "", c.id, nil) == nil
	}, waitFor, time.Millisecond)
	require.Equal(t, []byte{}, c.next(t))
	return c
}

func (c *client) write(t *testing.T, typ websocket.MessageType, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	require.NoError(t, c.ws.Write(ctx, typ, data))
}

func (c *client) next(t *testing.T) []byte {
	t.Helper()
	select {
	case m := <-c.msgs:
		if m == nil {
			m = []byte{}
		}
		return m
	case err := <-c.closeErr:
		require.FailNow(t, "connection closed", "%v", err)
	case <-time.After(waitFor):
		require.FailNow(t, "no message")
	}
	return nil
}

// requireClosed waits for the server to close the connection and returns
// the close status.
func (c *client) requireClosed(t *testing.T) websocket.StatusCode {
	t.Helper()
	select {
	case err := <-c.closeErr:
		return websocket.CloseStatus(err)
	case <-time.After(waitFor):
		require.FailNow(t, "connection not closed")
	}
	return 0
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	h := newRecorder()
	for _, tc := range []struct {
		cfg   local.Config
		field string
	}{
		{local.Config{}, "Handler"},
		{local.Config{Handler: h, IdleTimeout: -1}, "IdleTimeout"},
		{local.Config{Handler: h, MaxLifetime: -1}, "MaxLifetime"},
		{local.Config{Handler: h, MaxMessageSize: -1}, "MaxMessageSize"},
		{local.Config{Handler: h, MaxInFlight: -1}, "MaxInFlight"},
		{local.Config{Handler: h, WriteTimeout: -1}, "WriteTimeout"},
		{local.Config{Handler: h, OriginPatterns: []string{"["}}, "OriginPatterns"},
	} {
		_, err := local.New(tc.cfg)
		require.Error(t, err, tc.field)
		assert.Contains(t, err.Error(), tc.field)
	}
	gw, err := local.New(local.Config{Handler: h})
	require.NoError(t, err)
	require.NoError(t, gw.Close(context.Background()))
}

func TestConnectUnauthorizedRefusesUpgrade(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.connectErr = fmt.Errorf("bad token: %w", streamer.ErrUnauthorized)
	b := setup(t, rec, local.Config{})

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, b.url, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Upgrade"))
	assert.Equal(t, 0, b.gw.Connections())
}

func TestConnectErrorIs500(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.connectErr = errors.New("store down")
	b := setup(t, rec, local.Config{})

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, b.url, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
}

func TestUnauthorizedBodyAndPlainGet(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.connectErr = streamer.ErrUnauthorized
	b := setup(t, rec, local.Config{})

	// A WebSocket handshake refused by Connect: 401 "unauthorized".
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/ws", nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	body := readBody(t, resp)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, "unauthorized", body)

	// A plain GET is no handshake: Connect is not called.
	rec.connectErr = nil
	resp, err = http.Get(b.srv.URL + "/ws")
	require.NoError(t, err)
	_ = readBody(t, resp)
	assert.Equal(t, http.StatusUpgradeRequired, resp.StatusCode)
	assert.Empty(t, rec.connectedIDs())
}

func TestFailedUpgradeAfterConnectDisconnects(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	req, err := http.NewRequest(http.MethodGet, b.srv.URL+"/ws", nil)
	require.NoError(t, err)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13") // no Sec-WebSocket-Key
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = readBody(t, resp)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	ids := b.rec.connectedIDs()
	require.Len(t, ids, 1)
	b.rec.requireDisconnectedOnce(t, ids[0])
}

func TestOriginPatterns(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{OriginPatterns: []string{"app.example.com"}})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, b.url, &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"https://evil.example.com"}},
	})
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Empty(t, b.rec.connectedIDs(), "Connect must not run for a refused origin")

	c := b.dial(t, &websocket.DialOptions{HTTPHeader: http.Header{"Origin": {"https://app.example.com"}}})
	assert.NotEmpty(t, c.id)
}

func TestMessagesReachHandler(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	var values sync.Map
	rec.onMessage = func(_ context.Context, c *local.Conn, m local.Inbound) {
		values.Store(string(m.Data), c.Value)
	}
	b := setup(t, rec, local.Config{})
	u := b.url + "?user=alice"
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, u, nil)
	require.NoError(t, err)
	defer func() { _ = ws.CloseNow() }()

	require.NoError(t, ws.Write(ctx, websocket.MessageText, []byte(`{"action":"ping"}`)))
	require.NoError(t, ws.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2}))
	require.Eventually(t, func() bool { return rec.messageCount() == 2 }, waitFor, time.Millisecond)

	rec.mu.Lock()
	msgs := append([]local.Inbound(nil), rec.messages...)
	rec.mu.Unlock()
	assert.ElementsMatch(t, []local.Inbound{
		{Data: []byte(`{"action":"ping"}`), Binary: false},
		{Data: []byte{0, 1, 2}, Binary: true},
	}, msgs)
	v, ok := values.Load(`{"action":"ping"}`)
	require.True(t, ok)
	assert.Equal(t, "principal-alice", v, "Value set in Connect is seen by Message")
}

func TestSendReachesClient(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, nil)
	require.NoError(t, b.gw.Send(context.Background(), "", c.id, []byte(`{"type":"pong"}`)))
	assert.Equal(t, `{"type":"pong"}`, string(c.next(t)))
	assert.Equal(t, 1, b.gw.Connections())
}

func TestSendLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, nil)

	exact := bytes.Repeat([]byte("a"), local.DefaultMaxMessageSize)
	require.NoError(t, b.gw.Send(context.Background(), "", c.id, exact))
	assert.Len(t, c.next(t), local.DefaultMaxMessageSize)

	err := b.gw.Send(context.Background(), "", c.id, append(exact, 'a'))
	require.ErrorIs(t, err, local.ErrTooLarge)
	require.NotErrorIs(t, err, transport.ErrGone)
	// Still connected.
	require.NoError(t, b.gw.Send(context.Background(), "", c.id, []byte("ok")))
	assert.Equal(t, "ok", string(c.next(t)))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, b.gw.Send(ctx, "", c.id, []byte("x")), context.Canceled)
	require.NoError(t, b.gw.Send(context.Background(), "", c.id, []byte("still open")))
	assert.Equal(t, "still open", string(c.next(t)))
}

func TestSendUnknownIsGone(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	require.ErrorIs(t, b.gw.Send(context.Background(), "", "nope", []byte("x")), transport.ErrGone)
	require.ErrorIs(t, b.gw.Disconnect(context.Background(), "", "nope"), transport.ErrGone)
}

func TestSendAfterClientCloseIsGone(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, nil)
	require.NoError(t, c.ws.Close(websocket.StatusNormalClosure, "bye"))
	b.rec.requireDisconnectedOnce(t, c.id)
	require.ErrorIs(t, b.gw.Send(context.Background(), "", c.id, []byte("x")), transport.ErrGone)
	assert.Equal(t, 0, b.gw.Connections())
}

func TestInboundSizeLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, nil)

	c.write(t, websocket.MessageText, bytes.Repeat([]byte("a"), 131072))
	require.Eventually(t, func() bool { return b.rec.messageCount() == 1 }, waitFor, time.Millisecond)

	// One byte more closes with 1009. The write may or may not fail,
	// depending on when the close arrives.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_ = c.ws.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("a"), 131073))
	assert.Equal(t, websocket.StatusMessageTooBig, c.requireClosed(t))
	b.rec.requireDisconnectedOnce(t, c.id)
	assert.Equal(t, 1, b.rec.messageCount())
}

func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 200 * time.Millisecond
	b := setup(t, nil, local.Config{IdleTimeout: idle})
	c := b.dial(t, nil)
	start := time.Now()

	// Messages keep it alive well past the idle timeout.
	tick := time.NewTicker(idle / 4)
	defer tick.Stop()
	for time.Since(start) < 3*idle {
		<-tick.C
		c.write(t, websocket.MessageText, []byte(`{"action":"ping"}`))
	}
	tick.Stop()
	require.Equal(t, 1, b.gw.Connections(), "closed although messages kept arriving")
	lastWrite := time.Now()

	assert.Equal(t, websocket.StatusGoingAway, c.requireClosed(t))
	assert.GreaterOrEqual(t, time.Since(lastWrite), idle-idle/4)
	b.rec.requireDisconnectedOnce(t, c.id)
	require.ErrorIs(t, b.gw.Send(context.Background(), "", c.id, []byte("x")), transport.ErrGone)
}

func TestMaxLifetime(t *testing.T) {
	t.Parallel()
	const life = 300 * time.Millisecond
	b := setup(t, nil, local.Config{MaxLifetime: life})
	start := time.Now()
	c := b.dial(t, nil)
	c.write(t, websocket.MessageText, []byte("x"))
	assert.Equal(t, websocket.StatusGoingAway, c.requireClosed(t))
	assert.GreaterOrEqual(t, time.Since(start), life)
	b.rec.requireDisconnectedOnce(t, c.id)
}

func TestGatewayDisconnect(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, nil)
	require.NoError(t, b.gw.Disconnect(context.Background(), "", c.id))
	// Gone at once, before the close handshake completes.
	require.ErrorIs(t, b.gw.Send(context.Background(), "", c.id, []byte("x")), transport.ErrGone)
	require.ErrorIs(t, b.gw.Disconnect(context.Background(), "", c.id), transport.ErrGone)
	assert.Equal(t, websocket.StatusNormalClosure, c.requireClosed(t))
	b.rec.requireDisconnectedOnce(t, c.id)
}

func TestClientCloseDisconnectsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, nil)
	require.NoError(t, c.ws.Close(websocket.StatusNormalClosure, ""))
	b.rec.requireDisconnectedOnce(t, c.id)
	// An abrupt drop (no close frame) too.
	c2 := b.dial(t, nil)
	require.NoError(t, c2.ws.CloseNow())
	b.rec.requireDisconnectedOnce(t, c2.id)
}

func TestCloseWaitsForEverything(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	release := make(chan struct{})
	var started, finished atomic.Int32
	rec.onMessage = func(_ context.Context, _ *local.Conn, _ local.Inbound) {
		started.Add(1)
		<-release
		finished.Add(1)
	}
	b := setup(t, rec, local.Config{})
	c1 := b.dial(t, nil)
	c2 := b.dial(t, nil)
	c1.write(t, websocket.MessageText, []byte("a"))
	c2.write(t, websocket.MessageText, []byte("b"))
	require.Eventually(t, func() bool { return started.Load() == 2 }, waitFor, time.Millisecond)

	closed := make(chan error, 1)
	go func() { closed <- b.gw.Close(context.Background()) }()
	assert.Equal(t, websocket.StatusGoingAway, c1.requireClosed(t))
	assert.Equal(t, websocket.StatusGoingAway, c2.requireClosed(t))
	rec.requireDisconnectedOnce(t, c1.id)
	rec.requireDisconnectedOnce(t, c2.id)
	select {
	case err := <-closed:
		require.FailNow(t, "Close returned while Message calls were running", "%v", err)
	default:
	}

	close(release)
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(waitFor):
		require.FailNow(t, "Close did not return")
	}
	assert.Equal(t, int32(2), finished.Load(), "Close returned before the handlers")
	assert.Equal(t, 0, b.gw.Connections())

	// A closed gateway refuses new connections without calling Connect.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, b.url, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Len(t, rec.connectedIDs(), 2)
}

func TestCloseGivesUpWithContext(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	handlerCtxDone := make(chan struct{})
	rec.onMessage = func(ctx context.Context, _ *local.Conn, _ local.Inbound) {
		<-ctx.Done()
		close(handlerCtxDone)
	}
	b := setup(t, rec, local.Config{})
	c := b.dial(t, nil)
	c.write(t, websocket.MessageText, []byte("a"))
	require.Eventually(t, func() bool { return rec.messageCount() == 1 }, waitFor, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, b.gw.Close(ctx), context.DeadlineExceeded)
	select {
	case <-handlerCtxDone:
	case <-time.After(waitFor):
		require.FailNow(t, "the handler's context was not canceled")
	}
	// The cleanup's Close now completes.
}

func TestBackpressure(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	release := make(chan struct{})
	rec.onMessage = func(context.Context, *local.Conn, local.Inbound) { <-release }
	b := setup(t, rec, local.Config{MaxInFlight: 2})
	c := b.dial(t, nil)
	for i := range 5 {
		c.write(t, websocket.MessageText, fmt.Appendf(nil, "%d", i))
	}
	require.Eventually(t, func() bool { return rec.messageCount() == 2 }, waitFor, time.Millisecond)
	close(release)
	require.Eventually(t, func() bool { return rec.messageCount() == 5 }, waitFor, time.Millisecond)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, 2, rec.maxInFlight)
}

func TestConcurrentSends(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, local.Config{})
	c := b.dial(t, nil)
	const senders, each = 8, 50
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				assert.NoError(t, b.gw.Send(context.Background(), "", c.id, fmt.Appendf(nil, "%d:%d", s, i)))
			}
		})
	}
	// Messages from one sender arrive in order.
	last := make(map[int]int)
	for range senders * each {
		var s, i int
		_, err := fmt.Sscanf(string(c.next(t)), "%d:%d", &s, &i)
		require.NoError(t, err)
		if prev, ok := last[s]; ok {
			require.Equal(t, prev+1, i, "sender %d out of order", s)
		} else {
			require.Equal(t, 0, i)
		}
		last[s] = i
	}
	wg.Wait()
	assert.Len(t, last, senders)
}

func TestHandlerSendsFromMessage(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	var gw atomic.Pointer[local.Gateway]
	rec.onMessage = func(ctx context.Context, c *local.Conn, m local.Inbound) {
		reply := []byte(`{"type":"echo"}`)
		if m.Binary {
			reply = []byte(`{"type":"error","error":{"code":"INVALID_MESSAGE"}}`)
		}
		_ = gw.Load().Send(ctx, "", c.ID, reply)
	}
	b := setup(t, rec, local.Config{})
	gw.Store(b.gw)
	c := b.dial(t, nil)
	c.write(t, websocket.MessageBinary, []byte{1})
	assert.JSONEq(t, `{"type":"error","error":{"code":"INVALID_MESSAGE"}}`, string(c.next(t)))
	c.write(t, websocket.MessageText, []byte(`{}`))
	assert.JSONEq(t, `{"type":"echo"}`, string(c.next(t)))
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer func() { _ = resp.Body.Close() }()
	var buf bytes.Buffer
	_, err := buf.ReadFrom(resp.Body)
	require.NoError(t, err)
	return buf.String()
}

func TestNewIDCollisionsAndPanics(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.onMessage = func(_ context.Context, _ *local.Conn, m local.Inbound) {
		if string(m.Data) == "panic" {
			panic("handler bug")
		}
	}
	b := setup(t, rec, local.Config{NewID: func() string { return "same" }})
	c := b.dial(t, nil)
	require.Equal(t, "same", c.id)

	// The only id is taken: the next handshake fails with 500 before Connect.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, b.url, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	assert.Len(t, rec.connectedIDs(), 1)

	// A panicking Message call is recovered; the connection stays up.
	c.write(t, websocket.MessageText, []byte("panic"))
	c.write(t, websocket.MessageText, []byte("fine"))
	require.Eventually(t, func() bool { return rec.messageCount() == 2 }, waitFor, time.Millisecond)
	require.NoError(t, b.gw.Send(context.Background(), "", c.id, []byte("alive")))
	assert.Equal(t, "alive", string(c.next(t)))
}

// A *RefusedError from Connect refuses the handshake with its 4xx status,
// body and Retry-After; one with another status is a 500.
func TestConnectRefusedError(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	rec.connectErr = fmt.Errorf("wrapped: %w", &local.RefusedError{Status: http.StatusTooManyRequests, Message: "too many", RetryAfter: 1500 * time.Millisecond})
	b := setup(t, rec, local.Config{})

	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, b.url, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "2", resp.Header.Get("Retry-After"))
	assert.Equal(t, "too many", readBody(t, resp))
	assert.Equal(t, 0, b.gw.Connections())

	rec.connectErr = &local.RefusedError{Status: http.StatusFound, Message: "elsewhere"}
	_, resp, err = websocket.Dial(ctx, b.url, nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusInternalServerError, resp.StatusCode)
}

// An idle connection holds one goroutine of the gateway's, its reader: the
// idle timeout, the lifetime and the token expiry are timers.
func TestIdleConnectionHoldsOneGoroutine(t *testing.T) {
	b := setup(t, nil, local.Config{})
	const n = 20
	for range n {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		ws, resp, err := websocket.Dial(ctx, b.url, nil)
		cancel()
		require.NoError(t, err)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		t.Cleanup(func() { _ = ws.CloseNow() })
	}
	require.Eventually(t, func() bool { return b.gw.Connections() == n }, waitFor, time.Millisecond)
	// Settled: a handshake may still be returning.
	deadline := time.Now().Add(waitFor)
	for got := gatewayGoroutines(); got != n; got = gatewayGoroutines() {
		require.True(t, time.Now().Before(deadline), "gateway goroutines for %d idle connections: %d", n, got)
		time.Sleep(10 * time.Millisecond)
	}
}
