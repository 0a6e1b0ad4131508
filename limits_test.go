package streamer_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/ratelimit"
	rlmemory "github.com/streamer-go/streamer/ratelimit/memory"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// slow refills one token an hour: within a test, a bucket admits its
// burst and nothing more.
func slow(burst int) ratelimit.Rule {
	return ratelimit.Rule{Rate: 1, Per: time.Hour, Burst: burst}
}

// readCountingStore counts the reads of requests, to show a refused frame
// reads nothing.
type readCountingStore struct {
	storage.Store
	gets atomic.Int64
}

func (s *readCountingStore) GetRequest(ctx context.Context, k storage.Key) (storage.Request, error) {
	s.gets.Add(1)
	return s.Store.GetRequest(ctx, k)
}

// replies sends each frame on conn and returns the replies (messages
// without seq) sent to it meanwhile.
func replies(t *testing.T, app *streamer.App, rec *transporttest.Recorder, conn streamer.Conn, frames ...string) []streamer.Message {
	t.Helper()
	before := len(rec.Raw(conn.ID))
	for _, f := range frames {
		require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(f), false))
	}
	var out []streamer.Message
	for _, m := range rec.Messages(t, conn.ID)[before:] {
		if m.Seq == 0 {
			out = append(out, m)
		}
	}
	return out
}

func retryAfterMS(t *testing.T, m streamer.Message) int64 {
	t.Helper()
	require.NotNil(t, m.Error)
	raw, err := json.Marshal(m.Error.Details)
	require.NoError(t, err)
	var d struct {
		RetryAfterMS int64 `json:"retry_after_ms"`
	}
	require.NoError(t, json.Unmarshal(raw, &d))
	return d.RetryAfterMS
}

// The App's rate limit (Config.RateLimit) applies to reserved actions: a
// flood of status frames is refused with RATE_LIMITED, carrying the
// request_id asked about, before the store is read; reserved frames take
// from a bucket of their own, so the flood leaves the action budget whole.
func TestRateLimitReservedActions(t *testing.T) {
	t.Parallel()
	store := &readCountingStore{Store: memory.New()}
	rec := transporttest.NewRecorder()
	echo := streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) { return "ok", nil })
	app, err := streamer.New(streamer.Config{
		Store: store, Sender: rec, RateLimit: streamer.RateLimit{Rule: slow(3)},
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{{Name: "echo", Handler: echo, Options: streamer.ActionOptions{Mode: streamer.ModeSync}}}}},
	})
	require.NoError(t, err)
	conn := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice", Tenant: "t"}}

	var frames []string
	for range 10 {
		frames = append(frames, `{"action":"status","payload":{"request_id":"r-1"}}`)
	}
	got := replies(t, app, rec, conn, frames...)
	require.Len(t, got, 10)
	admitted, refused := 0, 0
	for _, m := range got {
		require.Equal(t, streamer.TypeError, m.Type)
		require.Equal(t, "r-1", m.RequestID, "the refusal names the request asked about, as every status answer does")
		switch m.Error.Code {
		case streamer.CodeNotFound:
			admitted++
		case streamer.CodeRateLimited:
			refused++
			require.True(t, m.Error.Retryable)
			require.Positive(t, retryAfterMS(t, m))
		default:
			t.Fatalf("unexpected code %s", m.Error.Code)
		}
	}
	require.Equal(t, 3, admitted, "the burst is admitted")
	require.Equal(t, 7, refused)
	require.Equal(t, int64(3), store.gets.Load(), "a refused status reads nothing")

	// Ping and list share the reserved bucket, and carry the frame's id.
	got = replies(t, app, rec, conn, `{"action":"ping","id":"p1"}`, `{"action":"list","id":"l1"}`)
	require.Len(t, got, 2)
	for i, id := range []string{"p1", "l1"} {
		require.Equal(t, streamer.TypeError, got[i].Type)
		require.Equal(t, streamer.CodeRateLimited, got[i].Error.Code)
		require.Equal(t, id, got[i].RequestID)
	}

	// Actions have their bucket: the flood did not use it.
	got = replies(t, app, rec, conn, `{"action":"echo","id":"e1"}`, `{"action":"echo","id":"e2"}`, `{"action":"echo","id":"e3"}`, `{"action":"echo","id":"e4"}`)
	require.Len(t, got, 4)
	for _, m := range got[:3] {
		require.Equal(t, streamer.TypeResponse, m.Type, "%+v", m)
		require.True(t, m.Success)
	}
	require.Equal(t, streamer.TypeError, got[3].Type)
	require.Equal(t, streamer.CodeRateLimited, got[3].Error.Code)
	require.Equal(t, "e4", got[3].RequestID)

	// Another principal has buckets of its own.
	other := streamer.Conn{ID: "c2", Principal: &streamer.Principal{Subject: "bob", Tenant: "t"}}
	got = replies(t, app, rec, other, `{"action":"ping","id":"p2"}`)
	require.Len(t, got, 1)
	require.Equal(t, streamer.TypePong, got[0].Type)
}

// ReservedRateLimit limits reserved frames alone: actions stay unlimited.
func TestReservedRateLimitAlone(t *testing.T) {
	t.Parallel()
	rec := transporttest.NewRecorder()
	echo := streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) { return "ok", nil })
	app, err := streamer.New(streamer.Config{
		Store: memory.New(), Sender: rec, ReservedRateLimit: streamer.RateLimit{Rule: slow(1), Key: streamer.RateKeyConnection},
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{{Name: "echo", Handler: echo, Options: streamer.ActionOptions{Mode: streamer.ModeSync}}}}},
	})
	require.NoError(t, err)
	conn := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice"}}
	got := replies(t, app, rec, conn, `{"action":"ping"}`, `{"action":"ping"}`, `{"action":"echo"}`, `{"action":"echo"}`, `{"action":"echo"}`)
	require.Len(t, got, 5)
	require.Equal(t, streamer.TypePong, got[0].Type)
	require.Equal(t, streamer.CodeRateLimited, got[1].Error.Code)
	for _, m := range got[2:] {
		require.Equal(t, streamer.TypeResponse, m.Type)
	}
	// Keyed by connection: another connection of alice has its own bucket.
	got = replies(t, app, rec, streamer.Conn{ID: "c2", Principal: conn.Principal}, `{"action":"ping"}`)
	require.Equal(t, streamer.TypePong, got[0].Type)
}

// An action's declared RateLimit is refused before the middleware, the
// scopes and the validation, keyed as declared; requests of Submit count.
func TestActionRateLimit(t *testing.T) {
	t.Parallel()
	var validated, mw atomic.Int64
	h := &validatingHandler{validated: &validated}
	countMW := func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			if req.Stage != streamer.StageProcess {
				mw.Add(1)
			}
			return next.Serve(ctx, req, rep)
		})
	}
	rec := transporttest.NewRecorder()
	app, err := streamer.New(streamer.Config{
		Store: memory.New(), Sender: rec, Middleware: []streamer.Middleware{countMW},
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{
			{Name: "global", Handler: h, Options: streamer.ActionOptions{Mode: streamer.ModeSync, RateLimit: streamer.RateLimit{Rule: slow(2), Key: streamer.RateKeyGlobal}}},
			{Name: "tenant", Handler: h, Options: streamer.ActionOptions{Mode: streamer.ModeAsync, RateLimit: streamer.RateLimit{Rule: slow(1), Key: streamer.RateKeyTenant}}},
			{Name: "free", Handler: h, Options: streamer.ActionOptions{Mode: streamer.ModeSync}},
		}}},
	})
	require.NoError(t, err)
	alice := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice", Tenant: "acme"}}
	bob := streamer.Conn{ID: "c2", Principal: &streamer.Principal{Subject: "bob", Tenant: "acme"}}
	carol := streamer.Conn{ID: "c3", Principal: &streamer.Principal{Subject: "carol", Tenant: "other"}}

	// Global: two calls in all, whoever makes them; an invalid payload is
	// refused as a valid one, and never validated.
	a := replies(t, app, rec, alice, `{"action":"global","id":"g1","payload":{"ok":true}}`)
	b := replies(t, app, rec, bob, `{"action":"global","id":"g2","payload":{"ok":true}}`, `{"action":"global","id":"g3","payload":{"ok":false}}`)
	require.Equal(t, streamer.TypeResponse, a[0].Type)
	require.Equal(t, streamer.TypeResponse, b[0].Type)
	require.Equal(t, streamer.TypeError, b[1].Type)
	require.Equal(t, streamer.CodeRateLimited, b[1].Error.Code)
	require.Equal(t, "g3", b[1].RequestID)
	require.Positive(t, retryAfterMS(t, b[1]))
	require.Equal(t, int64(2), validated.Load(), "the refused request was not validated")
	require.Equal(t, int64(2), mw.Load(), "nor did it run the middleware")

	// Other actions are not limited by it.
	require.Equal(t, streamer.TypeResponse, replies(t, app, rec, alice, `{"action":"free","payload":{"ok":true}}`)[0].Type)

	// Tenant: acme's principals share one bucket; another tenant has its own.
	a = replies(t, app, rec, alice, `{"action":"tenant","id":"t1","payload":{"ok":true}}`)
	require.Equal(t, streamer.TypeAcknowledgment, a[0].Type)
	b = replies(t, app, rec, bob, `{"action":"tenant","id":"t2","payload":{"ok":true}}`)
	require.Equal(t, streamer.CodeRateLimited, b[0].Error.Code)
	c := replies(t, app, rec, carol, `{"action":"tenant","id":"t3","payload":{"ok":true}}`)
	require.Equal(t, streamer.TypeAcknowledgment, c[0].Type)

	// Submit takes from the same buckets.
	_, err = app.Submit(context.Background(), *bob.Principal, "tenant", map[string]bool{"ok": true}, streamer.SubmitOptions{})
	var se *streamer.Error
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, streamer.CodeRateLimited, se.Code)
}

type validatingHandler struct{ validated *atomic.Int64 }

func (h *validatingHandler) Serve(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
	return "ok", nil
}

func (h *validatingHandler) Validate(_ context.Context, req *streamer.Request) error {
	h.validated.Add(1)
	var in struct {
		OK bool `json:"ok"`
	}
	if json.Unmarshal(req.Payload, &in) != nil || !in.OK {
		return streamer.NewError(streamer.CodeValidation, "not ok")
	}
	return nil
}

// A limiter that fails refuses with UNAVAILABLE, or admits with FailOpen.
func TestRateLimitLimiterFails(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		rec := transporttest.NewRecorder()
		app, err := streamer.New(streamer.Config{
			Store: memory.New(), Sender: rec, Limiter: failingLimiter{},
			RateLimit: streamer.RateLimit{Rule: slow(5), FailOpen: failOpen},
		})
		require.NoError(t, err)
		conn := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice"}}
		err = app.HandleMessage(context.Background(), conn, []byte(`{"action":"ping","id":"p"}`), false)
		got := rec.Messages(t, conn.ID)
		require.Len(t, got, 1)
		if failOpen {
			require.NoError(t, err)
			require.Equal(t, streamer.TypePong, got[0].Type)
			continue
		}
		require.Error(t, err, "a limiter's storage failure is reported as the store's are")
		require.Equal(t, streamer.CodeUnavailable, got[0].Error.Code)
		require.Equal(t, "p", got[0].RequestID)
	}
}

type failingLimiter struct{}

func (failingLimiter) Take(context.Context, string, ratelimit.Rule, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("table throttled")
}

// New refuses invalid limits, and uses the Limiter given.
func TestRateLimitConfig(t *testing.T) {
	t.Parallel()
	h := streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return nil, nil })
	base := func() streamer.Config {
		return streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder()}
	}
	cfg := base()
	cfg.RateLimit = streamer.RateLimit{Rule: ratelimit.Rule{Rate: -1}}
	_, err := streamer.New(cfg)
	require.ErrorIs(t, err, ratelimit.ErrInvalidRule)
	cfg = base()
	cfg.ReservedRateLimit = streamer.RateLimit{Rule: slow(1), Key: streamer.RateKey(9)}
	_, err = streamer.New(cfg)
	require.ErrorContains(t, err, "RateKey")
	cfg = base()
	cfg.Plugins = []streamer.Plugin{{Name: "p", Actions: []streamer.Action{{Name: "a", Handler: h, Options: streamer.ActionOptions{RateLimit: streamer.RateLimit{Rule: ratelimit.Rule{Rate: 1, Burst: -1}}}}}}}
	_, err = streamer.New(cfg)
	require.ErrorIs(t, err, ratelimit.ErrInvalidRule)
	cfg = base()
	cfg.Plugins = []streamer.Plugin{{Name: "p", Actions: []streamer.Action{{Name: "a", Handler: h, Options: streamer.ActionOptions{Concurrency: -1}}}}}
	_, err = streamer.New(cfg)
	require.ErrorContains(t, err, "Concurrency")

	// The Limiter given holds the buckets.
	lim := &countingLimiter{Limiter: rlmemory.New(rlmemory.Options{})}
	cfg = base()
	rec := transporttest.NewRecorder()
	cfg.Sender, cfg.Limiter, cfg.RateLimit = rec, lim, streamer.RateLimit{Rule: slow(1), Key: streamer.RateKeyGlobal}
	app, err := streamer.New(cfg)
	require.NoError(t, err)
	conn := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice"}}
	got := replies(t, app, rec, conn, `{"action":"ping"}`, `{"action":"ping"}`)
	require.Equal(t, streamer.TypePong, got[0].Type)
	require.Equal(t, streamer.CodeRateLimited, got[1].Error.Code)
	require.Equal(t, int64(2), lim.takes.Load())
}

type countingLimiter struct {
	ratelimit.Limiter
	takes atomic.Int64
}

func (l *countingLimiter) Take(ctx context.Context, key string, rule ratelimit.Rule, n int) (ratelimit.Decision, error) {
	l.takes.Add(1)
	return l.Limiter.Take(ctx, key, rule, n)
}
