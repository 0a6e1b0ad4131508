package streamer_test

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

type admissionIn struct {
	N int `json:"n" validate:"min=1"`
}

// TestAdmissionOrder: the middleware runs before the checks that read the
// payload (scopes, payload size, validation), at the sync and admit stages,
// so a middleware refusal (a rate limit) wins over a bad payload, and a
// refusal before the handler is an error message, sync included.
func TestAdmissionOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	refuse := false
	mw := func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			mu.Lock()
			seen = append(seen, req.ID+":"+req.Stage.String())
			r := refuse
			mu.Unlock()
			if r && req.Stage != streamer.StageProcess {
				return nil, streamer.RateLimited(1500)
			}
			return next.Serve(ctx, req, rep)
		})
	}
	h := streamer.Typed(func(_ context.Context, in admissionIn, _ streamer.Reporter) (int, error) { return in.N, nil })
	rec := transporttest.NewRecorder()
	var logs bytes.Buffer
	store := memory.New()
	app, err := streamer.New(streamer.Config{
		Store: store, Sender: rec, Middleware: []streamer.Middleware{mw},
		Logger: zerolog.New(&logs).Level(zerolog.DebugLevel),
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{
			{Name: "s", Handler: h, Options: streamer.ActionOptions{Mode: streamer.ModeSync, MaxPayload: 20}},
			{Name: "a", Handler: h, Options: streamer.ActionOptions{Mode: streamer.ModeAsync}},
			{Name: "x", Handler: h, Options: streamer.ActionOptions{Mode: streamer.ModeSync, Scopes: []string{"admin"}, MaxPayload: 5}},
		}}},
	})
	require.NoError(t, err)
	conn := streamer.Conn{ID: "c", Principal: &streamer.Principal{Subject: "alice"}}
	last := func(frame string) streamer.Message {
		t.Helper()
		require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(frame), false))
		ms := rec.Messages(t, "c")
		return ms[len(ms)-1]
	}
	cases := []struct{ frame, typ, code string }{
		{`{"action":"s","id":"s1","payload":{"n":0}}`, streamer.TypeError, streamer.CodeValidation},
		{`{"action":"s","id":"s2","payload":{"n":1,"pad":"0123456789"}}`, streamer.TypeError, streamer.CodePayloadTooLarge},
		{`{"action":"x","id":"s3","payload":{"n":1,"pad":"0123456789"}}`, streamer.TypeError, streamer.CodeForbidden},
		{`{"action":"a","id":"a1","payload":{"n":0}}`, streamer.TypeError, streamer.CodeValidation},
		{`{"action":"s","id":"s4","payload":{"n":2}}`, streamer.TypeResponse, ""},
	}
	for _, tc := range cases {
		m := last(tc.frame)
		require.Equal(t, tc.typ, m.Type, tc.frame)
		if tc.code != "" {
			require.Equal(t, tc.code, m.Error.Code, tc.frame)
			require.Zero(t, m.Seq)
		}
	}
	mu.Lock()
	require.Equal(t, []string{"s1:sync", "s2:sync", "s3:sync", "a1:admit", "s4:sync"}, seen, "the middleware saw every request before its checks")
	refuse = true
	mu.Unlock()

	// A middleware refusal comes before validation, sync or async, and is
	// an error message, not a response.
	for _, f := range []string{`{"action":"s","id":"r1","payload":{"n":0}}`, `{"action":"a","id":"r2","payload":"bad"}`, `{"action":"x","id":"r3"}`} {
		m := last(f)
		require.Equal(t, streamer.TypeError, m.Type, f)
		require.Equal(t, streamer.CodeRateLimited, m.Error.Code, f)
		require.True(t, m.Error.Retryable)
	}
	_, err = store.GetRequest(context.Background(), storage.Key{Subject: "alice", ID: "r2"})
	require.ErrorIs(t, err, storage.ErrNotFound)
	for _, want := range []string{`"code":"VALIDATION_ERROR","error":"payload failed validation","message":"frame refused"`, `"code":"RATE_LIMITED"`, `"code":"FORBIDDEN"`} {
		require.Contains(t, logs.String(), want, "refusals in the chain are logged at debug")
	}
}
