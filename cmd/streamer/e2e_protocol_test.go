package main_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

// signClaims signs claims with alg and secret, as a token minted outside the
// framework would be.
func signClaims(t *testing.T, method jwt.SigningMethod, secret string, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString([]byte(secret))
	require.NoError(t, err)
	return tok
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

// Section 1: the handshake refuses bad tokens with 401 and takes good ones
// from the header or the query, the header first.
func TestE2EHandshake(t *testing.T) {
	t.Parallel()
	s := shared(t)
	sub := uid("hs")
	good := token(t, sub, "")
	now := time.Now()
	hour := now.Add(time.Hour).Unix()
	enc := base64.RawURLEncoding
	algNone := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		enc.EncodeToString(fmt.Appendf(nil, `{"sub":%q,"exp":%d}`, sub, hour)) + "."
	otherSecret := "another-secret-0123456789abcdef-0123456789"

	refused := []struct {
		name   string
		header http.Header
		query  url.Values
	}{
		{name: "no token"},
		{name: "malformed", header: bearer("not-a-jwt")},
		{name: "empty bearer", header: http.Header{"Authorization": {"Bearer "}}},
		{name: "bad signature", header: bearer(signClaims(t, jwt.SigningMethodHS256, otherSecret, jwt.MapClaims{"sub": sub, "exp": hour}))},
		{name: "alg none", header: bearer(algNone)},
		{name: "alg none in query", query: url.Values{"token": {algNone}}},
		{name: "alg outside allow-list", header: bearer(signClaims(t, jwt.SigningMethodHS384, testSecret, jwt.MapClaims{"sub": sub, "exp": hour}))},
		{name: "expired", header: bearer(signClaims(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": sub, "exp": now.Add(-time.Hour).Unix()}))},
		{name: "no exp", header: bearer(signClaims(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": sub}))},
		{name: "not yet valid", header: bearer(signClaims(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": sub, "exp": hour, "nbf": now.Add(30 * time.Minute).Unix()}))},
		{name: "no sub", header: bearer(signClaims(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"exp": hour}))},
		{name: "empty sub", header: bearer(signClaims(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{"sub": "", "exp": hour}))},
		{name: "bad query token", query: url.Values{"token": {"garbage"}}},
		{name: "bad header wins over good query", header: bearer("garbage"), query: url.Values{"token": {good}, "Authorization": {good}}},
		{name: "bad Authorization query wins over good token query", query: url.Values{"Authorization": {"garbage"}, "token": {good}}},
	}
	for _, tc := range refused {
		t.Run("refused/"+tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
			defer cancel()
			c, resp, err := dialWS(ctx, s.wsURL, tc.header, tc.query)
			if c != nil {
				_ = c.CloseNow()
			}
			require.Error(t, err, "the handshake must be refused")
			require.NotNil(t, resp, "the refusal must be an HTTP response: %v", err)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
		})
	}

	accepted := []struct {
		name   string
		header http.Header
		query  url.Values
	}{
		{name: "header", header: bearer(good)},
		{name: "Authorization query", query: url.Values{"Authorization": {good}}},
		{name: "token query", query: url.Values{"token": {good}}},
		{name: "good header wins over bad query", header: bearer(good), query: url.Values{"token": {"garbage"}, "Authorization": {"garbage"}}},
		{name: "good Authorization query wins over bad token query", query: url.Values{"Authorization": {good}, "token": {"garbage"}}},
	}
	for _, tc := range accepted {
		t.Run("accepted/"+tc.name, func(t *testing.T) {
			r := dialRawWith(t, s, tc.header, tc.query)
			require.Empty(t, r.ping(), "nothing but the pong is expected")
		})
	}

	t.Run("Go client gets ErrUnauthorized", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		c, err := client.Dial(ctx, s.wsURL, client.Options{Token: algNone})
		if c != nil {
			_ = c.Close()
		}
		require.ErrorIs(t, err, client.ErrUnauthorized)
	})
}

// Section 2 and 4: frame rules; malformed frames are answered with
// INVALID_MESSAGE and the connection stays open.
func TestE2EFrames(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("frames"), "")

	t.Run("echo answers its payload", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("echo")
		payload := `{"a":1,"b":[true,null,"x"],"c":{"d":1.5,"e":"ü"}}`
		r.sendText(`{"action":"echo","id":"` + id + `","payload":` + payload + `,"metadata":{"k":"v"},"unknown_field":[1]}`)
		m := r.readFor(id)
		require.Equal(t, streamer.TypeResponse, m.Type)
		require.True(t, m.Success)
		require.Nil(t, m.Error)
		require.JSONEq(t, payload, string(m.Data))
		require.Empty(t, r.ping())
	})

	t.Run("echo without payload answers null", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("echo")
		r.request("echo", id, nil)
		m := r.readFor(id)
		require.Equal(t, streamer.TypeResponse, m.Type)
		require.True(t, m.Success)
		require.JSONEq(t, `null`, string(m.Data))
	})

	t.Run("echo without id gets a server-made id", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		r.sendText(`{"action":"echo","payload":7}`)
		m := r.read()
		require.Equal(t, streamer.TypeResponse, m.Type)
		require.NotEmpty(t, m.RequestID)
		require.True(t, streamer.ValidName(m.RequestID), "server-made id %q", m.RequestID)
		require.JSONEq(t, `7`, string(m.Data))
	})

	t.Run("echo with a 128-character id", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := strings.Repeat("a", 100) + "_.:-" + strings.Repeat("Z9", 12)
		require.Len(t, id, 128)
		r.request("echo", id, "x")
		m := r.readFor(id)
		require.Equal(t, streamer.TypeResponse, m.Type)
		require.True(t, m.Success)
	})

	t.Run("unknown action", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("unknown")
		r.request("no_such_action", id, map[string]int{"a": 1})
		r.expectError(streamer.CodeInvalidAction, id)
		require.Equal(t, streamer.CodeNotFound, r.status(id).Error.Code, "nothing is stored for an unknown action")
	})

	invalid := []struct {
		name      string
		frame     string
		requestID string
	}{
		{name: "malformed JSON", frame: `{"action":"echo","id":"x1"`},
		{name: "not JSON", frame: `hello`},
		{name: "empty frame", frame: ``},
		{name: "array", frame: `[{"action":"echo"}]`},
		{name: "string", frame: `"echo"`},
		{name: "number", frame: `42`},
		{name: "null", frame: `null`},
		{name: "missing action", frame: `{"id":"m-1","payload":{}}`, requestID: "m-1"},
		{name: "null action", frame: `{"action":null,"id":"m-2"}`, requestID: "m-2"},
		{name: "non-string action", frame: `{"action":5,"id":"m-3"}`, requestID: "m-3"},
		{name: "empty action", frame: `{"action":"","id":"m-4"}`, requestID: "m-4"},
		{name: "action with bad characters", frame: `{"action":"ec ho","id":"m-5"}`, requestID: "m-5"},
		{name: "action too long", frame: `{"action":"` + strings.Repeat("a", 129) + `","id":"m-6"}`, requestID: "m-6"},
		{name: "id with bad characters", frame: `{"action":"echo","id":"bad id!"}`},
		{name: "id with a slash", frame: `{"action":"echo","id":"a/b"}`},
		{name: "id too long", frame: `{"action":"echo","id":"` + strings.Repeat("i", 129) + `"}`},
		{name: "empty id", frame: `{"action":"echo","id":""}`},
		{name: "non-string id", frame: `{"action":"echo","id":12}`},
		{name: "metadata with a number", frame: `{"action":"echo","id":"m-7","metadata":{"k":1}}`, requestID: "m-7"},
		{name: "metadata with an object", frame: `{"action":"echo","id":"m-8","metadata":{"k":{"a":"b"}}}`, requestID: "m-8"},
		{name: "metadata not an object", frame: `{"action":"echo","id":"m-9","metadata":"k=v"}`, requestID: "m-9"},
		{name: "metadata array", frame: `{"action":"echo","id":"m-10","metadata":["k"]}`, requestID: "m-10"},
	}
	for _, tc := range invalid {
		t.Run("INVALID_MESSAGE/"+tc.name, func(t *testing.T) {
			r := dialRaw(t, s, tok)
			r.sendText(tc.frame)
			r.expectError(streamer.CodeInvalidMessage, tc.requestID)
			// The connection stays open and keeps working.
			id := uid("after")
			r.request("echo", id, "still here")
			m := r.readFor(id)
			require.Equal(t, streamer.TypeResponse, m.Type)
			require.JSONEq(t, `"still here"`, string(m.Data))
		})
	}

	t.Run("INVALID_MESSAGE/binary frame", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		require.NoError(t, r.c.Write(ctx, websocket.MessageBinary, []byte(`{"action":"echo","id":"bin-1"}`)))
		m := r.read()
		require.Equal(t, streamer.TypeError, m.Type)
		require.Equal(t, streamer.CodeInvalidMessage, m.Error.Code)
		id := uid("after")
		r.request("echo", id, 1)
		require.Equal(t, streamer.TypeResponse, r.readFor(id).Type)
	})
}

// Section 3: an async request's stream.
func TestE2EDelayEvents(t *testing.T) {
	t.Parallel()
	s := shared(t)
	r := dialRaw(t, s, token(t, uid("delay"), ""))
	id := uid("delay")
	// 200 ms between steps: below the coalescing rate, so none is merged.
	ack := r.ack("delay", id, map[string]int{"ms": 1000, "steps": 5})
	require.Equal(t, "queued", ack.Status)
	require.Zero(t, ack.Seq)

	events := r.untilTerminal(id)
	progress := checkStream(t, events, 1)
	requireSteps(t, progress, 5)
	done := events[len(events)-1]
	require.Equal(t, streamer.TypeComplete, done.Type)
	require.Equal(t, int64(len(events)), done.Seq)
	require.JSONEq(t, `{"steps":5,"ms":1000}`, string(done.Result))
	require.NotZero(t, done.Timestamp)
	require.Empty(t, r.ping(), "nothing may follow the terminal event")

	st := r.status(id)
	require.Equal(t, streamer.TypeStatus, st.Type)
	require.Equal(t, "succeeded", st.Status)
	require.Equal(t, "delay", st.Action)
	require.Equal(t, done.Seq, st.Seq)
	require.JSONEq(t, `{"steps":5,"ms":1000}`, string(st.Result))
	require.NotZero(t, st.CreatedAt)
	require.GreaterOrEqual(t, st.UpdatedAt, st.CreatedAt)
}

// TestE2EAckRawShape checks what decoding into streamer.Message cannot: a
// new acknowledgment carries "seq":0 explicitly.
func TestE2EAckRawShape(t *testing.T) {
	t.Parallel()
	s := shared(t)
	r := dialRaw(t, s, token(t, uid("ackshape"), ""))
	id := uid("ackshape")
	r.request("delay", id, map[string]int{"ms": 0, "steps": 1})
	_, data, err := r.readRaw()
	require.NoError(t, err)
	var raw map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &raw))
	require.JSONEq(t, `"acknowledgment"`, string(raw["type"]), "%s", data)
	require.JSONEq(t, `"queued"`, string(raw["status"]), "%s", data)
	require.Contains(t, raw, "seq", "a new acknowledgment must carry seq 0: %s", data)
	require.JSONEq(t, `0`, string(raw["seq"]))
	r.collect(id, 0)
}

// collect reads messages about id until it has seen a terminal event and
// every seq from after+1 to it, and returns the events in seq order.
// Delivery is at least once: a repeated seq is dropped after checking that
// it equals the first copy. Any message that is not an event about id, or
// an event with seq ≤ after, fails the test.
func (r *rawConn) collect(id string, after int64, early ...streamer.Message) []streamer.Message {
	r.t.Helper()
	bySeq := map[int64]streamer.Message{}
	terminal := int64(0)
	for terminal == 0 || int64(len(bySeq)) != terminal-after {
		var m streamer.Message
		if len(early) > 0 {
			// Events read before an acknowledgment: those at or before
			// its seq are replays the client drops.
			m, early = early[0], early[1:]
			if m.Seq <= after {
				continue
			}
		} else {
			m = r.readFor(id)
		}
		require.Positive(r.t, m.Seq, "a message without seq in an event stream: %+v", m)
		require.Greater(r.t, m.Seq, after, "an event at or before after_seq %d: %+v", after, m)
		if prev, ok := bySeq[m.Seq]; ok {
			require.Equal(r.t, prev, m, "seq %d delivered twice with different contents", m.Seq)
			continue
		}
		bySeq[m.Seq] = m
		if m.Terminal() {
			require.Zero(r.t, terminal, "two terminal events: seq %d and %d", terminal, m.Seq)
			terminal = m.Seq
		}
		if terminal > 0 {
			require.LessOrEqual(r.t, m.Seq, terminal, "an event after the terminal one")
		}
	}
	out := make([]streamer.Message, 0, len(bySeq))
	for seq := after + 1; seq <= terminal; seq++ {
		out = append(out, bySeq[seq])
	}
	return out
}

// resume sends resume for id after seq.
func (r *rawConn) resume(id string, after int64) {
	r.t.Helper()
	r.request(streamer.ActionResume, "", map[string]any{"request_id": id, "after_seq": after})
}

// Section 3, delivery: a client that drops its connection and resumes on a
// new one loses nothing.
func TestE2EResumeAfterDisconnect(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("resume"), "")
	id := uid("resume")
	r1 := dialRaw(t, s, tok)
	r1.ack("delay", id, map[string]int{"ms": 2000, "steps": 10})
	var seen []streamer.Message
	for n := 0; n < 3; {
		m := r1.readFor(id)
		require.True(t, m.Type == streamer.TypeProgress || m.Lifecycle(), "%+v", m)
		if m.Type == streamer.TypeProgress {
			n++
		}
		seen = append(seen, m)
	}
	require.NoError(t, r1.c.CloseNow())
	last := seen[len(seen)-1].Seq

	r2 := dialRaw(t, s, tok)
	r2.resume(id, last)
	rest := r2.collect(id, last)
	all := append(slices.Clone(seen), rest...)
	progress := checkStream(t, all, 1)
	requireSteps(t, progress, 10)
	require.Equal(t, streamer.TypeComplete, all[len(all)-1].Type)
	require.Equal(t, int64(len(all)), all[len(all)-1].Seq)

	// The whole history is still there, each seq exactly once.
	r3 := dialRaw(t, s, tok)
	r3.resume(id, 0)
	replay := r3.untilTerminal(id)
	checkStream(t, replay, 1)
	require.Len(t, replay, len(all))
	for i := range replay {
		require.Equal(t, all[i].Type, replay[i].Type)
		require.Equal(t, all[i].Message, replay[i].Message)
		require.InDelta(t, all[i].Percentage, replay[i].Percentage, 1e-9)
	}
	require.Empty(t, r3.ping())

	// Resuming after the terminal seq sends nothing.
	r3.resume(id, int64(len(all)))
	require.Empty(t, r3.ping())
	// A resume without after_seq replays from the start.
	r3.request(streamer.ActionResume, "", map[string]any{"request_id": id})
	require.Len(t, r3.untilTerminal(id), len(all))
}

// dropDialer records the TCP connections the Go client makes, so that the
// test can cut them as a network failure would.
type dropDialer struct {
	mu    sync.Mutex
	conns []net.Conn
	dials int
}

func (d *dropDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conns = append(d.conns, c)
	d.dials++
	d.mu.Unlock()
	return c, nil
}

func (d *dropDialer) cut() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		_ = c.Close()
	}
	d.conns = nil
}

func (d *dropDialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

// The Go client's Request survives its connection being cut mid-job: it
// reconnects, resumes, and reports each progress seq once, in order.
func TestE2EClientSurvivesDrop(t *testing.T) {
	t.Parallel()
	s := shared(t)
	d := &dropDialer{}
	tr := &http.Transport{DialContext: d.dial}
	t.Cleanup(tr.CloseIdleConnections)
	c := dialClient(t, s, token(t, uid("drop"), ""), func(o *client.Options) {
		o.HTTPClient = &http.Client{Transport: tr}
	})
	progress := make(chan client.Progress, 100)
	type result struct {
		res json.RawMessage
		err error
	}
	done := make(chan result, 1)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the cancel of ctx, which ends the request
	ctx := testCtx(t, 30*time.Second)
	wg.Go(func() {
		res, err := c.Request(ctx, "delay", map[string]int{"ms": 2000, "steps": 10},
			client.WithProgress(func(p client.Progress) { progress <- p }))
		done <- result{res, err}
	})
	var got []client.Progress
	for len(got) < 3 {
		select {
		case p := <-progress:
			got = append(got, p)
		case r := <-done:
			t.Fatalf("request ended before the drop: %s, %v", r.res, r.err)
		case <-ctx.Done():
			t.Fatal("no progress before the deadline")
		}
	}
	d.cut()
	var res result
	select {
	case res = <-done:
	case <-ctx.Done():
		t.Fatal("the request did not finish after the drop")
	}
	require.NoError(t, res.err)
	require.JSONEq(t, `{"steps":10,"ms":2000}`, string(res.res))
	close(progress)
	for p := range progress {
		got = append(got, p)
	}
	steps := make([]streamer.Message, len(got))
	for i, p := range got {
		require.Equal(t, int64(i+2), p.Seq, "each progress seq once (seq 1 is started)")
		steps[i] = streamer.Message{Seq: p.Seq, Message: p.Message, Percentage: p.Percentage}
	}
	requireSteps(t, steps, 10)
	require.GreaterOrEqual(t, d.count(), 2, "the client must have reconnected")
}

// waitStatus polls the status of id until it is want, within a deadline.
// Events of id that arrive before a status reply (the request started
// running meanwhile) are kept for the next reads.
func (r *rawConn) waitStatus(id, want string) streamer.Message {
	r.t.Helper()
	deadline := time.Now().Add(readTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		r.request(streamer.ActionStatus, "", map[string]any{"request_id": id})
		var held []streamer.Message
		m := r.readFor(id)
		for m.Type != streamer.TypeStatus && m.Seq > 0 {
			held = append(held, m)
			m = r.readFor(id)
		}
		r.pending = append(r.pending, held...)
		require.Equal(r.t, streamer.TypeStatus, m.Type, "status of %s: %+v", id, m.Error)
		if m.Status == want {
			return m
		}
		require.True(r.t, time.Now().Before(deadline), "status of %s is %s, not %s, after %s", id, m.Status, want, readTimeout)
		<-tick.C
	}
}

// Section 2, cancel.
func TestE2ECancel(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("cancel"), "")

	t.Run("running request", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("cancel")
		r.ack("delay", id, map[string]int{"ms": 60000, "steps": 600})
		r.waitStatus(id, "running")
		r.request(streamer.ActionCancel, "", map[string]any{"request_id": id})
		// Progress may arrive before the cancel's reply.
		var events []streamer.Message
		var reply streamer.Message
		for {
			m := r.readFor(id)
			if m.Type == streamer.TypeStatus {
				reply = m
				break
			}
			require.True(t, m.Type == streamer.TypeProgress || m.Lifecycle(), "%+v", m)
			events = append(events, m)
		}
		require.Equal(t, "canceling", reply.Status)
		require.Equal(t, "delay", reply.Action)
		after := int64(len(events))
		events = append(events, r.collect(id, after)...)
		checkStream(t, events, 1)
		end := events[len(events)-1]
		require.Equal(t, streamer.TypeError, end.Type)
		require.Equal(t, streamer.CodeCanceled, end.Error.Code)
		require.Positive(t, end.Seq)

		st := r.status(id)
		require.Equal(t, "canceled", st.Status)
		require.Equal(t, end.Seq, st.Seq)
		require.NotNil(t, st.Error)
		require.Equal(t, streamer.CodeCanceled, st.Error.Code)

		// Canceling again answers the final status.
		r.request(streamer.ActionCancel, "", map[string]any{"request_id": id})
		again := r.readFor(id)
		require.Equal(t, streamer.TypeStatus, again.Type)
		require.Equal(t, "canceled", again.Status)
		require.Empty(t, r.ping(), "no second terminal event")
	})

	t.Run("from another connection", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("cancel-other")
		r.ack("delay", id, map[string]int{"ms": 60000, "steps": 600})
		other := dialRaw(t, s, tok)
		other.waitStatus(id, "running")
		other.request(streamer.ActionCancel, "", map[string]any{"request_id": id})
		reply := other.readFor(id)
		require.Equal(t, streamer.TypeStatus, reply.Type)
		require.Equal(t, "canceling", reply.Status)
		// The sender's connection gets the terminal event.
		events := r.collect(id, 0)
		end := events[len(events)-1]
		require.Equal(t, streamer.TypeError, end.Type)
		require.Equal(t, streamer.CodeCanceled, end.Error.Code)
		require.Equal(t, "canceled", other.waitStatus(id, "canceled").Status)
	})

	t.Run("finished request answers its final status", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("cancel-done")
		r.ack("delay", id, map[string]int{"ms": 0, "steps": 1})
		r.collect(id, 0)
		r.request(streamer.ActionCancel, "", map[string]any{"request_id": id})
		m := r.readFor(id)
		require.Equal(t, streamer.TypeStatus, m.Type)
		require.Equal(t, "succeeded", m.Status)
		require.JSONEq(t, `{"steps":1,"ms":0}`, string(m.Result))
		require.Equal(t, int64(3), m.Seq, "started, progress, complete")
		require.Empty(t, r.ping(), "a finished request gets no new event")
	})

	t.Run("unknown request", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("cancel-none")
		r.request(streamer.ActionCancel, "", map[string]any{"request_id": id})
		r.expectError(streamer.CodeNotFound, id)
	})

	t.Run("Go client", func(t *testing.T) {
		c := dialClient(t, s, tok)
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait) // after the cancel of ctx, which ends the request
		ctx := testCtx(t, 30*time.Second)
		id := uid("cancel-go")
		started := make(chan struct{}, 1)
		done := make(chan error, 1)
		wg.Go(func() {
			_, err := c.Request(ctx, "delay", map[string]int{"ms": 60000, "steps": 600}, client.WithID(id),
				client.WithProgress(func(client.Progress) {
					select {
					case started <- struct{}{}:
					default:
					}
				}))
			done <- err
		})
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("request ended early: %v", err)
		case <-ctx.Done():
			t.Fatal("no progress before the deadline")
		}
		st, err := c.Cancel(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "canceling", st.Status)
		select {
		case err := <-done:
			require.Equal(t, streamer.CodeCanceled, client.CodeOf(err), "%v", err)
		case <-ctx.Done():
			t.Fatal("the canceled request did not end")
		}
		st, err = c.Status(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "canceled", st.Status)
	})
}

// Section 2, status.
func TestE2EStatus(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("status"), "")

	t.Run("running", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("status-run")
		r.ack("delay", id, map[string]int{"ms": 30000, "steps": 100})
		require.Equal(t, streamer.TypeStarted, r.readFor(id).Type)
		first := r.readFor(id)
		require.Equal(t, streamer.TypeProgress, first.Type)
		r.request(streamer.ActionStatus, "", map[string]any{"request_id": id})
		var st streamer.Message
		for {
			m := r.readFor(id)
			if m.Type == streamer.TypeStatus {
				st = m
				break
			}
			require.Equal(t, streamer.TypeProgress, m.Type)
		}
		require.Equal(t, "running", st.Status)
		require.Equal(t, "delay", st.Action)
		require.GreaterOrEqual(t, st.Seq, int64(1))
		require.GreaterOrEqual(t, st.Percentage, 1.0)
		require.True(t, strings.HasPrefix(st.Message, "step "), "message %q", st.Message)
		require.Nil(t, st.Error)
		require.Empty(t, st.Result)
		require.NotZero(t, st.CreatedAt)
		require.GreaterOrEqual(t, st.UpdatedAt, st.CreatedAt)
		// End it rather than leave it running.
		r.request(streamer.ActionCancel, "", map[string]any{"request_id": id})
		for r.readFor(id).Type != streamer.TypeStatus {
		}
	})

	t.Run("finished", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("status-done")
		r.ack("delay", id, map[string]int{"ms": 0, "steps": 2})
		events := r.collect(id, 0)
		st := r.status(id)
		require.Equal(t, streamer.TypeStatus, st.Type)
		require.Equal(t, "succeeded", st.Status)
		require.Equal(t, events[len(events)-1].Seq, st.Seq)
		require.InDelta(t, 100, st.Percentage, 1e-9)
		require.JSONEq(t, `{"steps":2,"ms":0}`, string(st.Result))
		require.Nil(t, st.Error)
	})

	t.Run("unknown", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("status-none")
		r.request(streamer.ActionStatus, "", map[string]any{"request_id": id})
		r.expectError(streamer.CodeNotFound, id)
	})

	t.Run("Go client", func(t *testing.T) {
		c := dialClient(t, s, tok)
		ctx := testCtx(t, 30*time.Second)
		id := uid("status-go")
		res, err := c.Request(ctx, "delay", map[string]int{"ms": 0, "steps": 1}, client.WithID(id))
		require.NoError(t, err)
		st, err := c.Status(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "succeeded", st.Status)
		require.JSONEq(t, string(res), string(st.Result))
		_, err = c.Status(ctx, uid("status-go-none"))
		require.Equal(t, streamer.CodeNotFound, client.CodeOf(err), "%v", err)
	})
}

// Section 2, idempotency: a re-sent request attaches instead of running
// again; the same id with another action or payload is a CONFLICT.
func TestE2EIdempotentResend(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("idem"), "")
	id := uid("idem")
	// 3 s: the re-sends below must find it still running, with room for a
	// loaded machine and throttled storage (the aws-local run).
	frame := `{"action":"delay","id":"` + id + `","payload":{"ms":3000,"steps":5}}`

	a := dialRaw(t, s, tok)
	a.sendText(frame)
	ack := a.readFor(id)
	require.Equal(t, streamer.TypeAcknowledgment, ack.Type)
	require.Equal(t, "queued", ack.Status)
	first := a.readFor(id)
	require.Equal(t, streamer.TypeStarted, first.Type, "a run opens with started")
	require.Equal(t, int64(1), first.Seq)
	require.Equal(t, 1, first.Attempt)
	var aEvents = []streamer.Message{first}
	for aEvents[len(aEvents)-1].Type != streamer.TypeProgress {
		aEvents = append(aEvents, a.readFor(id))
	}

	// The same connection re-sends: attached, not run again.
	a.sendText(frame)
	var reAck streamer.Message
	for {
		m := a.readFor(id)
		if m.Type == streamer.TypeAcknowledgment {
			reAck = m
			break
		}
		aEvents = append(aEvents, m)
	}
	require.Equal(t, "running", reAck.Status)
	require.GreaterOrEqual(t, reAck.Seq, int64(1))
	require.Positive(t, reAck.Percentage, "an attached acknowledgment carries the percentage")
	require.True(t, strings.HasPrefix(reAck.Message, "step "), "an attached acknowledgment carries the message: %q", reAck.Message)

	// Another connection re-sends, with other whitespace: attached too, it
	// gets every event after the acknowledged seq.
	// The processor sends to b from the moment b is subscribed, so an
	// event may overtake the acknowledgment (protocol §5); b orders by seq.
	b := dialRaw(t, s, tok)
	b.sendText(`{ "id" : "` + id + `", "action" : "delay", "payload" : { "ms" : 3000, "steps" : 5 } }`)
	var bEarly []streamer.Message
	bAck := b.readFor(id)
	for bAck.Type != streamer.TypeAcknowledgment {
		require.Positive(t, bAck.Seq, "before its acknowledgment b gets events only: %+v", bAck)
		bEarly = append(bEarly, bAck)
		bAck = b.readFor(id)
	}
	require.Contains(t, []string{"running", "succeeded"}, bAck.Status)
	if bAck.Status == "running" {
		bEvents := b.collect(id, bAck.Seq, bEarly...)
		require.Equal(t, streamer.TypeComplete, bEvents[len(bEvents)-1].Type)
	} // else it finished before: the acknowledgment carries its last seq, and nothing follows

	// The sender saw each event exactly once.
	for {
		m := a.readFor(id)
		aEvents = append(aEvents, m)
		if m.Terminal() {
			break
		}
	}
	requireSteps(t, checkStream(t, aEvents, 1), 5)
	require.Empty(t, a.ping())

	// The job ran once: exactly steps progress events are stored.
	c := dialRaw(t, s, tok)
	c.resume(id, 0)
	stored := c.untilTerminal(id)
	requireSteps(t, checkStream(t, stored, 1), 5) // the job ran once
	require.Len(t, stored, len(aEvents))
	require.JSONEq(t, `{"steps":5,"ms":3000}`, string(stored[len(stored)-1].Result))
	require.Empty(t, c.ping())

	// Re-sending after the end still attaches, with the final state.
	c.sendText(frame)
	endAck := c.readFor(id)
	require.Equal(t, streamer.TypeAcknowledgment, endAck.Type)
	require.Equal(t, "succeeded", endAck.Status)
	require.Equal(t, int64(len(stored)), endAck.Seq)
	require.Empty(t, c.ping())

	// The Go client re-sending the id gets the result, with the history.
	gc := dialClient(t, s, tok)
	var seqs []int64
	res, err := gc.Request(testCtx(t, 30*time.Second), "delay", map[string]int{"ms": 3000, "steps": 5},
		client.WithID(id), client.WithProgress(func(p client.Progress) { seqs = append(seqs, p.Seq) }))
	require.NoError(t, err)
	require.JSONEq(t, `{"steps":5,"ms":3000}`, string(res))
	wantSeqs := make([]int64, len(stored)-2) // the progress events: all but started and complete
	for i := range wantSeqs {
		wantSeqs[i] = int64(i + 2)
	}
	require.Equal(t, wantSeqs, seqs)

	t.Run("CONFLICT", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		r.request("delay", id, map[string]int{"ms": 1000, "steps": 6})
		r.expectError(streamer.CodeConflict, id)
		r.request("generate_report", id, map[string]string{"startDate": "2024-01-01", "endDate": "2024-01-02"})
		r.expectError(streamer.CodeConflict, id)
		r.request("delay", id, nil)
		m := r.read()
		require.Equal(t, streamer.TypeError, m.Type)
		require.Equal(t, id, m.RequestID)
		require.Contains(t, []string{streamer.CodeConflict, streamer.CodeValidation}, m.Error.Code)
		// The stored request is unchanged.
		st := r.status(id)
		require.Equal(t, "succeeded", st.Status)
		require.JSONEq(t, `{"steps":5,"ms":3000}`, string(st.Result))
	})
}

// signWithTenant mints a token whose tenant_id claim is present even when
// empty.
func signWithTenant(t *testing.T, sub, tenant string) string {
	t.Helper()
	return signClaims(t, jwt.SigningMethodHS256, testSecret, jwt.MapClaims{
		"sub": sub, "tenant_id": tenant, "exp": time.Now().Add(time.Hour).Unix(),
	})
}

// Section 2: ids are scoped to the principal; another principal gets
// NOT_FOUND and may use the same id for itself.
func TestE2EPrincipalIsolation(t *testing.T) {
	t.Parallel()
	s := shared(t)
	alice := uid("alice")
	bob := uid("bob")
	id := uid("shared-id")

	ra := dialRaw(t, s, token(t, alice, ""))
	ra.ack("delay", id, map[string]int{"ms": 200, "steps": 2})
	ra.collect(id, 0)

	others := map[string]string{
		"another sub":              token(t, bob, ""),
		"same sub, another tenant": token(t, alice, "t1"),
		"tenant equal to sub":      token(t, alice, alice),
		"sub x, tenant alice":      signWithTenant(t, "x", alice),
	}
	for name, tok := range others {
		t.Run(name, func(t *testing.T) {
			r := dialRaw(t, s, tok)
			r.request(streamer.ActionStatus, "", map[string]any{"request_id": id})
			r.expectError(streamer.CodeNotFound, id)
			r.resume(id, 0)
			r.expectError(streamer.CodeNotFound, id)
			r.request(streamer.ActionCancel, "", map[string]any{"request_id": id})
			r.expectError(streamer.CodeNotFound, id)
			// The same frame as alice's is a new request of its own.
			ack := r.ack("delay", id, map[string]int{"ms": 200, "steps": 2})
			require.Equal(t, "queued", ack.Status)
			require.Zero(t, ack.Seq)
			events := r.collect(id, 0)
			require.Len(t, events, 4, "started, two steps, complete")
		})
	}

	t.Run("another sub, other payload", func(t *testing.T) {
		r := dialRaw(t, s, token(t, uid("carol"), ""))
		ack := r.ack("delay", id, map[string]int{"ms": 0, "steps": 3})
		require.Equal(t, "queued", ack.Status)
		events := r.collect(id, 0)
		require.JSONEq(t, `{"steps":3,"ms":0}`, string(events[len(events)-1].Result))
	})

	t.Run("an empty tenant_id is no tenant", func(t *testing.T) {
		r := dialRaw(t, s, signWithTenant(t, alice, ""))
		st := r.status(id)
		require.Equal(t, streamer.TypeStatus, st.Type, "%+v", st.Error)
		require.Equal(t, "succeeded", st.Status)
	})

	// Alice's request is untouched by the others.
	st := ra.status(id)
	require.Equal(t, "succeeded", st.Status)
	require.Equal(t, int64(4), st.Seq)
	require.JSONEq(t, `{"steps":2,"ms":200}`, string(st.Result))

	t.Run("tenant and sub cannot be confused", func(t *testing.T) {
		for _, sep := range []string{"/", ":", "#", "|", ".", "-", "_"} {
			rid := uid("collide")
			p1 := dialRaw(t, s, token(t, "c", "a"+sep+"b"))
			p1.ack("delay", rid, map[string]int{"ms": 0, "steps": 1})
			p1.collect(rid, 0)
			p2 := dialRaw(t, s, token(t, "b"+sep+"c", "a"))
			p2.request(streamer.ActionStatus, "", map[string]any{"request_id": rid})
			p2.expectError(streamer.CodeNotFound, rid)
		}
	})
}

// detailsFields decodes a VALIDATION_ERROR's details.
func detailsFields(t *testing.T, e *streamer.ErrorBody) []map[string]string {
	t.Helper()
	require.NotNil(t, e)
	var fields []map[string]string
	require.NoError(t, json.Unmarshal(e.Details, &fields), "details must be a list of {field, rule, message}: %s", e.Details)
	for _, f := range fields {
		require.NotEmpty(t, f["field"], "%v", f)
		require.NotEmpty(t, f["rule"], "%v", f)
		require.NotEmpty(t, f["message"], "%v", f)
	}
	return fields
}

func hasField(fields []map[string]string, name string) bool {
	return slices.ContainsFunc(fields, func(f map[string]string) bool { return f["field"] == name })
}

// Section 2 and 4: failed validation is answered before anything is stored.
func TestE2EValidation(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("valid"), "")
	cases := []struct {
		name, action string
		payload      any
		field        string
	}{
		{name: "delay steps 0", action: "delay", payload: map[string]int{"ms": 100, "steps": 0}, field: "steps"},
		{name: "delay steps too many", action: "delay", payload: map[string]int{"ms": 100, "steps": 1001}, field: "steps"},
		{name: "delay without ms", action: "delay", payload: map[string]int{"steps": 1}, field: "ms"},
		{name: "delay negative ms", action: "delay", payload: map[string]int{"ms": -1, "steps": 1}, field: "ms"},
		{name: "report end before start", action: "generate_report", payload: map[string]string{"startDate": "2024-02-01", "endDate": "2024-01-01"}, field: "endDate"},
		{name: "report bad start", action: "generate_report", payload: map[string]string{"startDate": "01/02/2024", "endDate": "2024-01-01"}, field: "startDate"},
		{name: "fail lower-case code", action: "fail", payload: map[string]string{"code": "bad"}, field: "code"},
		{name: "blob without bytes", action: "blob", payload: map[string]int{}, field: "bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, s, tok)
			id := uid("valid")
			r.request(tc.action, id, tc.payload)
			m := r.expectError(streamer.CodeValidation, id)
			fields := detailsFields(t, m.Error)
			require.True(t, hasField(fields, tc.field), "details %s must name %s", m.Error.Details, tc.field)
			require.Equal(t, streamer.CodeNotFound, r.status(id).Error.Code, "nothing is stored")
			require.Empty(t, r.ping(), "nothing runs")
		})
	}

	t.Run("payload of the wrong type", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("valid")
		r.request("delay", id, []int{1, 2})
		r.expectError(streamer.CodeValidation, id)
		require.Equal(t, streamer.CodeNotFound, r.status(id).Error.Code)
	})

	t.Run("Go client", func(t *testing.T) {
		c := dialClient(t, s, tok)
		_, err := c.Request(testCtx(t, readTimeout), "delay", map[string]int{"ms": 1, "steps": 0})
		var ce *client.Error
		require.ErrorAs(t, err, &ce)
		require.Equal(t, streamer.CodeValidation, ce.Code)
		require.Contains(t, string(ce.Details), `"steps"`)
	})
}

// frameOfSize returns an echo frame of exactly n bytes.
func frameOfSize(t *testing.T, id string, n int) (frame, payload string) {
	t.Helper()
	head := `{"action":"echo","id":"` + id + `","payload":"`
	tail := `"}`
	pad := n - len(head) - len(tail)
	require.Positive(t, pad)
	payload = `"` + strings.Repeat("x", pad) + `"`
	frame = head + strings.Repeat("x", pad) + tail
	require.Len(t, frame, n)
	return frame, payload
}

// Section 1: the 128 KiB inbound limit.
func TestE2EFrameSizeLimit(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("size"), "")

	t.Run("131073 bytes closes with 1009", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		frame, _ := frameOfSize(t, uid("big"), streamer.MaxMessageSize+1)
		ctx, cancel := context.WithTimeout(context.Background(), readTimeout)
		defer cancel()
		// The server may close while the frame is being written.
		_ = r.c.Write(ctx, websocket.MessageText, []byte(frame))
		for {
			_, data, err := r.readRaw()
			if err != nil {
				require.Equal(t, websocket.StatusMessageTooBig, websocket.CloseStatus(err), "want close 1009, got %v", err)
				return
			}
			t.Fatalf("a message instead of the close: %s", data)
		}
	})

	t.Run("131072 bytes is not closed for size", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("edge")
		frame, payload := frameOfSize(t, id, streamer.MaxMessageSize)
		r.sendText(frame)
		// The echo is too large for one message: chunks, then the response.
		var text strings.Builder
		index := 0
		for {
			m := r.readFor(id)
			if m.Type == streamer.TypeError {
				// A protocol error is acceptable; a close is not.
				require.NotEqual(t, streamer.CodeInternal, m.Error.Code)
				break
			}
			if m.Type == streamer.TypeResultChunk {
				require.Zero(t, m.Seq, "sync chunks carry no seq")
				require.Equal(t, index, m.Index)
				chunk, err := m.ChunkText()
				require.NoError(t, err)
				text.WriteString(chunk)
				index++
				continue
			}
			require.Equal(t, streamer.TypeResponse, m.Type)
			require.True(t, m.Success)
			if m.Chunks > 0 {
				require.Equal(t, index, m.Chunks)
				require.Equal(t, payload, text.String())
			} else {
				require.Equal(t, payload, string(m.Data))
			}
			break
		}
		require.Empty(t, r.ping(), "the connection stays open")
	})
}

// Section 3: results larger than one message.
func TestE2EBlob(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("blob"), "")
	const size = 1 << 20
	want := `"` + strings.Repeat("x", size) + `"`

	t.Run("Go client", func(t *testing.T) {
		c := dialClient(t, s, tok)
		res, err := c.Request(testCtx(t, 30*time.Second), "blob", map[string]int{"bytes": size})
		require.NoError(t, err)
		require.Len(t, res, size+2)
		require.Equal(t, want, string(res), "the result is reassembled byte for byte")
	})

	t.Run("raw frames", func(t *testing.T) {
		r := dialRaw(t, s, tok)
		id := uid("blob")
		r.ack("blob", id, map[string]int{"bytes": size})
		events := r.collect(id, 0)
		checkStream(t, events, 1)
		join := func(events []streamer.Message) string {
			t.Helper()
			done := events[len(events)-1]
			require.Equal(t, streamer.TypeComplete, done.Type)
			require.Empty(t, done.Result, "a chunked result is not repeated in complete")
			chunks := events[:len(events)-1]
			for len(chunks) > 0 && chunks[0].Lifecycle() {
				chunks = chunks[1:]
			}
			require.Equal(t, len(chunks), done.Chunks)
			require.Greater(t, len(chunks), 8, "1 MiB needs at least 9 chunks of 128 KiB")
			var b strings.Builder
			for i, m := range chunks {
				require.Equal(t, streamer.TypeResultChunk, m.Type)
				require.Equal(t, i, m.Index)
				require.Equal(t, len(chunks), m.Total)
				text, err := m.ChunkText()
				require.NoError(t, err)
				b.WriteString(text)
			}
			return b.String()
		}
		require.Equal(t, want, join(events))
		require.Empty(t, r.ping())

		// The chunks are stored events: a resume replays them.
		r2 := dialRaw(t, s, tok)
		r2.resume(id, 0)
		replay := r2.untilTerminal(id)
		checkStream(t, replay, 1)
		require.Equal(t, want, join(replay))

		st := r2.status(id)
		require.Equal(t, "succeeded", st.Status)
		require.Empty(t, st.Result, "too large for the status message")
		require.Equal(t, len(events)-2, st.Chunks, "every event but started and complete is a chunk")
	})
}

// Section 4: a handler's own code is passed through, and a request with
// one attempt is not retried.
func TestE2EFail(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("fail"), "")

	r := dialRaw(t, s, tok)
	id := uid("fail")
	r.ack("fail", id, map[string]string{"code": "BAD_THING", "message": "nope"})
	events := r.collect(id, 0)
	progress := checkStream(t, events, 1)
	require.Len(t, progress, 1, "one run: one progress event")
	require.InDelta(t, 50, progress[0].Percentage, 1e-9)
	require.Len(t, events, 3, "started, progress, error: not retried")
	end := events[2]
	require.Equal(t, streamer.TypeError, end.Type)
	require.Equal(t, int64(3), end.Seq)
	require.Equal(t, "BAD_THING", end.Error.Code)
	require.Equal(t, "nope", end.Error.Message)
	require.NotZero(t, end.Timestamp)
	require.Empty(t, r.ping())

	st := r.status(id)
	require.Equal(t, "failed", st.Status)
	require.Equal(t, int64(3), st.Seq)
	require.NotNil(t, st.Error)
	require.Equal(t, "BAD_THING", st.Error.Code)

	r2 := dialRaw(t, s, tok)
	r2.resume(id, 0)
	require.Len(t, r2.untilTerminal(id), 3, "not retried")
	require.Empty(t, r2.ping())

	c := dialClient(t, s, tok)
	_, err := c.Request(testCtx(t, 30*time.Second), "fail", map[string]string{"code": "BAD_THING", "message": "nope"})
	var ce *client.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, "BAD_THING", ce.Code)
	require.Equal(t, "nope", ce.Message)
}

// Section 2: ping.
func TestE2EPing(t *testing.T) {
	t.Parallel()
	s := shared(t)
	tok := token(t, uid("ping"), "")
	r := dialRaw(t, s, tok)
	before := time.Now().Add(-time.Minute).UnixMilli()
	r.request(streamer.ActionPing, "", nil)
	m := r.read()
	require.Equal(t, streamer.TypePong, m.Type)
	require.GreaterOrEqual(t, m.Timestamp, before, "timestamp is Unix milliseconds")
	require.LessOrEqual(t, m.Timestamp, time.Now().Add(time.Minute).UnixMilli())

	c := dialClient(t, s, tok)
	require.NoError(t, c.Ping(testCtx(t, readTimeout)))
}

// Section 3: progress is coalesced to at most 10 events a second, seqs stay
// contiguous and the terminal event is never dropped.
func TestE2ECoalescing(t *testing.T) {
	t.Parallel()
	s := shared(t)
	r := dialRaw(t, s, token(t, uid("coalesce"), ""))
	id := uid("coalesce")
	start := time.Now()
	r.ack("delay", id, map[string]int{"ms": 1000, "steps": 1000})
	events := r.collect(id, 0)
	elapsed := time.Since(start)
	progress := checkStream(t, events, 1)
	// One event at once, then at most one per 100 ms, plus a trailing one.
	limit := int(elapsed/(100*time.Millisecond)) + 2
	require.LessOrEqual(t, len(progress), limit, "%d progress events in %s", len(progress), elapsed)
	require.GreaterOrEqual(t, len(progress), 3, "coalescing keeps reporting: %d events in %s", len(progress), elapsed)
	end := events[len(events)-1]
	require.Equal(t, streamer.TypeComplete, end.Type)
	require.JSONEq(t, `{"steps":1000,"ms":1000}`, string(end.Result))
}

// Section 1: idle connections are closed (the dev server's limit is a flag,
// so the test need not wait 10 minutes).
func TestE2EIdleTimeout(t *testing.T) {
	t.Parallel()
	idle := "300ms"
	if faultThrottle() != "" {
		// The pong needs a DynamoDB read (the connection's principal),
		// which throttling can delay past 300 ms.
		idle = "3s"
	}
	s := startDev(t, "--idle-timeout", idle)
	r := dialRaw(t, s, token(t, uid("idle"), ""))
	require.Empty(t, r.ping())
	start := time.Now()
	_, data, err := r.readRaw()
	require.Error(t, err, "got %s instead of the close", data)
	require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "%v", err)
	require.Less(t, time.Since(start), 10*time.Second)
}
