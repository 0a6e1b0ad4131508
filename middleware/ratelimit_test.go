package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/ratelimit/memory"
	"github.com/streamer-go/streamer/ratelimit/ratelimittest"
	"github.com/streamer-go/streamer/storage"
	smemory "github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

type countIn struct {
	N int `json:"n" validate:"min=1,max=10"`
}

type rlApp struct {
	app   *streamer.App
	store *smemory.Store
	rec   *transporttest.Recorder
	clock *ratelimittest.Clock
	runs  atomic.Int64
}

// newRLApp builds an App with a sync action "count", an async action
// "job", and a scoped action "admin", under mw; the worker runs while the
// test does.
func newRLApp(t *testing.T, mw func(l ratelimit.Limiter) []streamer.Middleware, actionMW ...streamer.Middleware) *rlApp {
	t.Helper()
	b := &rlApp{store: smemory.New(), rec: transporttest.NewRecorder(), clock: ratelimittest.NewClock()}
	l := memory.New(memory.Options{Now: b.clock.Now})
	count := streamer.Typed(func(_ context.Context, in countIn, _ streamer.Reporter) (int, error) {
		b.runs.Add(1)
		return in.N, nil
	})
	app, err := streamer.New(streamer.Config{
		Store: b.store, Sender: b.rec, Middleware: mw(l),
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{
			{Name: "count", Handler: count, Options: streamer.ActionOptions{Mode: streamer.ModeSync}},
			{Name: "job", Handler: count, Options: streamer.ActionOptions{Mode: streamer.ModeAsync}},
			{Name: "admin", Handler: count, Options: streamer.ActionOptions{Mode: streamer.ModeSync, Scopes: []string{"admin"}}},
			{Name: "limited", Handler: count, Options: streamer.ActionOptions{Mode: streamer.ModeSync}, Middleware: actionMW},
		}}},
	})
	require.NoError(t, err)
	b.app = app
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, 2) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})
	return b
}

func (b *rlApp) send(t *testing.T, who, conn, frame string) streamer.Message {
	t.Helper()
	c := streamer.Conn{ID: conn, Principal: &streamer.Principal{Subject: who, Tenant: "t1"}}
	before := len(b.rec.Messages(t, conn))
	require.NoError(t, b.app.HandleMessage(context.Background(), c, []byte(frame), false))
	ms := b.rec.Messages(t, conn)
	// The reply is the first message without a seq: events (with a seq)
	// of requests admitted earlier may come between.
	for _, m := range ms[before:] {
		if m.Seq == 0 {
			return m
		}
	}
	require.Fail(t, "no reply", "to %s", frame)
	return streamer.Message{}
}

func requireRateLimited(t *testing.T, m streamer.Message, id string, wantMS int64) {
	t.Helper()
	require.Equal(t, streamer.TypeError, m.Type, "a refusal before the handler is an error message")
	require.Equal(t, id, m.RequestID)
	require.NotNil(t, m.Error)
	require.Equal(t, streamer.CodeRateLimited, m.Error.Code)
	require.True(t, m.Error.Retryable)
	var d streamer.RetryAfter
	require.NoError(t, json.Unmarshal(m.Error.Details, &d))
	require.Equal(t, wantMS, d.RetryAfterMS)
}

func perPrincipal(rule ratelimit.Rule) func(ratelimit.Limiter) []streamer.Middleware {
	return func(l ratelimit.Limiter) []streamer.Middleware {
		return []streamer.Middleware{middleware.RateLimit(middleware.RateLimitOptions{Limiter: l, Rule: rule})}
	}
}

func TestRateLimitSync(t *testing.T) {
	t.Parallel()
	b := newRLApp(t, perPrincipal(ratelimit.Rule{Rate: 2, Burst: 3}))
	for i := range 3 {
		m := b.send(t, "alice", "c1", fmt.Sprintf(`{"action":"count","id":"s%d","payload":{"n":1}}`, i))
		require.Equal(t, streamer.TypeResponse, m.Type)
		require.True(t, m.Success)
	}
	requireRateLimited(t, b.send(t, "alice", "c1", `{"action":"count","id":"s3","payload":{"n":1}}`), "s3", 500)
	// Another connection of the same principal shares the bucket.
	requireRateLimited(t, b.send(t, "alice", "c2", `{"action":"count","id":"s4","payload":{"n":1}}`), "s4", 500)
	// Another principal has its own.
	require.Equal(t, streamer.TypeResponse, b.send(t, "bob", "c3", `{"action":"count","id":"s5","payload":{"n":1}}`).Type)
	require.EqualValues(t, 4, b.runs.Load(), "refused requests never ran")
	// Reserved actions are not limited.
	require.Equal(t, streamer.TypePong, b.send(t, "alice", "c1", `{"action":"ping"}`).Type)

	b.clock.Advance(500 * time.Millisecond)
	require.Equal(t, streamer.TypeResponse, b.send(t, "alice", "c1", `{"action":"count","id":"s6","payload":{"n":1}}`).Type)
}

// TestRateLimitAsync: async requests take a token when admitted, once;
// refused ones are not stored, and running admitted ones takes nothing.
func TestRateLimitAsync(t *testing.T) {
	t.Parallel()
	b := newRLApp(t, perPrincipal(ratelimit.Rule{Rate: 1, Burst: 2}))
	for _, id := range []string{"a0", "a1"} {
		m := b.send(t, "alice", "c1", `{"action":"job","id":"`+id+`","payload":{"n":2}}`)
		require.Equal(t, streamer.TypeAcknowledgment, m.Type)
	}
	requireRateLimited(t, b.send(t, "alice", "c1", `{"action":"job","id":"a2","payload":{"n":2}}`), "a2", 1000)
	_, err := b.store.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "a2"})
	require.ErrorIs(t, err, storage.ErrNotFound, "nothing stored for a refused request")
	for _, id := range []string{"a0", "a1"} {
		ms := b.rec.WaitFor(t, "c1", 10*time.Second, transporttest.HasTerminal(id))
		var end streamer.Message
		for _, m := range ms {
			if m.RequestID == id && m.Terminal() {
				end = m
			}
		}
		require.Equal(t, streamer.TypeComplete, end.Type, "the admitted request %s ran: the processor took no token", id)
	}
}

// TestRateLimitBeforeValidation: the limit runs before the payload is
// decoded, validated or checked against scopes, so invalid and forbidden
// frames take tokens as valid ones do, and past the burst are refused
// RATE_LIMITED without being validated.
func TestRateLimitBeforeValidation(t *testing.T) {
	t.Parallel()
	b := newRLApp(t, perPrincipal(ratelimit.Rule{Rate: 1, Burst: 3}))
	m := b.send(t, "alice", "c1", `{"action":"count","id":"v0","payload":{"n":0}}`)
	require.Equal(t, streamer.CodeValidation, m.Error.Code)
	m = b.send(t, "alice", "c1", `{"action":"count","id":"v1","payload":"not an object"}`)
	require.Equal(t, streamer.TypeError, m.Type)
	require.Equal(t, streamer.CodeValidation, m.Error.Code)
	m = b.send(t, "alice", "c1", `{"action":"admin","id":"v2","payload":{"n":1}}`)
	require.Equal(t, streamer.CodeForbidden, m.Error.Code)
	// The bucket is empty: invalid, forbidden and valid frames are refused alike.
	requireRateLimited(t, b.send(t, "alice", "c1", `{"action":"count","id":"v3","payload":{"n":0}}`), "v3", 1000)
	requireRateLimited(t, b.send(t, "alice", "c1", `{"action":"admin","id":"v4"}`), "v4", 1000)
	requireRateLimited(t, b.send(t, "alice", "c1", `{"action":"job","id":"v5","payload":{"n":1}}`), "v5", 1000)
	require.Zero(t, b.runs.Load())
	// An unknown action is refused before the chain (nothing to limit).
	require.Equal(t, streamer.CodeInvalidAction, b.send(t, "alice", "c1", `{"action":"nope","id":"v6"}`).Error.Code)
}

// TestRateLimitPerAction: a limit declared on one action, with a name of
// its own, leaves the others alone.
func TestRateLimitPerAction(t *testing.T) {
	t.Parallel()
	none := func(ratelimit.Limiter) []streamer.Middleware { return nil }
	l := memory.New(memory.Options{})
	b := newRLApp(t, none, middleware.RateLimit(middleware.RateLimitOptions{
		Limiter: l, Rule: ratelimit.Rule{Rate: 1, Per: time.Hour, Burst: 1}, Name: "limited", Key: middleware.ByConnection,
	}))
	require.Equal(t, streamer.TypeResponse, b.send(t, "alice", "c1", `{"action":"limited","id":"p0","payload":{"n":1}}`).Type)
	m := b.send(t, "alice", "c1", `{"action":"limited","id":"p1","payload":{"n":1}}`)
	require.Equal(t, streamer.CodeRateLimited, m.Error.Code)
	require.Equal(t, streamer.TypeResponse, b.send(t, "alice", "c2", `{"action":"limited","id":"p2","payload":{"n":1}}`).Type, "keyed by connection")
	for i := range 5 {
		require.Equal(t, streamer.TypeResponse, b.send(t, "alice", "c1", fmt.Sprintf(`{"action":"count","id":"q%d","payload":{"n":1}}`, i)).Type, "another action is not limited")
	}
}

// TestRateLimitFlood measures a flood (SECURITY.md): one principal sends
// 1,000 frames, half of them invalid, at one instant of the limiter's clock
// under 10/s with a burst of 20, while another principal sends 10.
func TestRateLimitFlood(t *testing.T) {
	t.Parallel()
	b := newRLApp(t, perPrincipal(ratelimit.Rule{Rate: 10, Burst: 20}))
	var admitted, limited, invalid int
	c := streamer.Conn{ID: "cm", Principal: &streamer.Principal{Subject: "mallory", Tenant: "t1"}}
	for i := range 1000 {
		n := 1
		if i%2 == 1 {
			n = 0 // fails validation
		}
		frame := fmt.Sprintf(`{"action":"count","id":"f%d","payload":{"n":%d}}`, i, n)
		require.NoError(t, b.app.HandleMessage(context.Background(), c, []byte(frame), false))
	}
	ms := b.rec.Messages(t, "cm")
	require.Len(t, ms, 1000, "one reply a frame")
	for _, m := range ms {
		switch {
		case m.Type == streamer.TypeResponse:
			admitted++
		case m.Error.Code == streamer.CodeRateLimited:
			limited++
		case m.Error.Code == streamer.CodeValidation:
			invalid++
		default:
			t.Fatalf("unexpected reply %+v", m)
		}
	}
	t.Logf("flood of 1000 frames (half invalid), rule 10/s burst 20, no time passing: %d ran, %d VALIDATION_ERROR, %d RATE_LIMITED", admitted, invalid, limited)
	require.Equal(t, 10, admitted)
	require.Equal(t, 10, invalid, "invalid frames take tokens too")
	require.Equal(t, 980, limited)
	for i := range 10 {
		require.Equal(t, streamer.TypeResponse, b.send(t, "bob", "cb", fmt.Sprintf(`{"action":"count","id":"b%d","payload":{"n":1}}`, i)).Type, "another principal is unaffected")
	}
	// Two seconds later, 20 more tokens.
	b.clock.Advance(2 * time.Second)
	for i := range 100 {
		frame := fmt.Sprintf(`{"action":"count","id":"g%d","payload":{"n":1}}`, i)
		require.NoError(t, b.app.HandleMessage(context.Background(), c, []byte(frame), false))
	}
	admitted = 0
	for _, m := range b.rec.Messages(t, "cm")[1000:] {
		if m.Type == streamer.TypeResponse {
			admitted++
		}
	}
	require.Equal(t, 20, admitted)
}

type failing struct{}

func (failing) Take(context.Context, string, ratelimit.Rule, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, fmt.Errorf("storage down")
}

func TestRateLimitLimiterFailure(t *testing.T) {
	t.Parallel()
	for _, open := range []bool{false, true} {
		b := newRLApp(t, func(ratelimit.Limiter) []streamer.Middleware {
			return []streamer.Middleware{middleware.RateLimit(middleware.RateLimitOptions{Limiter: failing{}, Rule: ratelimit.Rule{Rate: 1}, FailOpen: open})}
		})
		m := b.send(t, "alice", "c1", `{"action":"count","id":"x","payload":{"n":1}}`)
		if open {
			require.Equal(t, streamer.TypeResponse, m.Type)
			continue
		}
		require.Equal(t, streamer.TypeError, m.Type)
		require.Equal(t, streamer.CodeUnavailable, m.Error.Code)
		require.True(t, m.Error.Retryable)
	}
}

func TestRateLimitKeys(t *testing.T) {
	t.Parallel()
	r := &streamer.Request{Action: "a", ConnectionID: "c", Principal: streamer.Principal{Tenant: "t", Subject: "s"}}
	require.Equal(t, "p:1:t:s", middleware.ByPrincipal(r))
	require.Equal(t, "t:t", middleware.ByTenant(r))
	require.Equal(t, "c:c", middleware.ByConnection(r))
	require.Equal(t, "a:a", middleware.ByAction(r))
	// Tenant "a:b" with subject "c" and tenant "a" with subject "b:c" differ.
	x := &streamer.Request{Principal: streamer.Principal{Tenant: "a:b", Subject: "c"}}
	y := &streamer.Request{Principal: streamer.Principal{Tenant: "a", Subject: "b:c"}}
	require.NotEqual(t, middleware.ByPrincipal(x), middleware.ByPrincipal(y))
	noTenant := &streamer.Request{Principal: streamer.Principal{Subject: "s"}}
	require.Equal(t, middleware.ByPrincipal(noTenant), middleware.ByTenant(noTenant))
	require.Equal(t, middleware.ByPrincipal(noTenant), middleware.ByConnection(noTenant))
	require.Panics(t, func() { middleware.RateLimit(middleware.RateLimitOptions{Rule: ratelimit.Rule{Rate: 1}}) })
	require.Panics(t, func() { middleware.RateLimit(middleware.RateLimitOptions{Limiter: failing{}}) })
	require.Panics(t, func() {
		middleware.RateLimit(middleware.RateLimitOptions{Limiter: failing{}, Rule: ratelimit.Rule{Rate: 1, Burst: 2}, Cost: 3})
	})
}
