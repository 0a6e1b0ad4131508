package streamer_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// errThrottled stands for a store call that failed after the SDK's retries.
var errThrottled = errors.New("ProvisionedThroughputExceededException: throttled")

// flakyStore fails the methods named in failing with errThrottled.
type flakyStore struct {
	storage.Store
	mu      sync.Mutex
	failing map[string]bool
}

func (s *flakyStore) fail(methods ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = map[string]bool{}
	for _, m := range methods {
		s.failing[m] = true
	}
}

func (s *flakyStore) err(method string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing[method] {
		return errThrottled
	}
	return nil
}

func (s *flakyStore) GetConnection(ctx context.Context, id string) (storage.Connection, error) {
	if err := s.err("GetConnection"); err != nil {
		return storage.Connection{}, err
	}
	return s.Store.GetConnection(ctx, id)
}

func (s *flakyStore) CreateRequest(ctx context.Context, r storage.Request) error {
	if err := s.err("CreateRequest"); err != nil {
		return err
	}
	return s.Store.CreateRequest(ctx, r)
}

func (s *flakyStore) GetRequest(ctx context.Context, k storage.Key) (storage.Request, error) {
	if err := s.err("GetRequest"); err != nil {
		return storage.Request{}, err
	}
	return s.Store.GetRequest(ctx, k)
}

func (s *flakyStore) Subscribe(ctx context.Context, k storage.Key, connID string, expiresAt time.Time) error {
	if err := s.err("Subscribe"); err != nil {
		return err
	}
	return s.Store.Subscribe(ctx, k, connID, expiresAt)
}

func (s *flakyStore) ReadEvents(ctx context.Context, k storage.Key, afterSeq int64, limit int) ([]storage.Event, error) {
	if err := s.err("ReadEvents"); err != nil {
		return nil, err
	}
	return s.Store.ReadEvents(ctx, k, afterSeq, limit)
}

func (s *flakyStore) LastEvent(ctx context.Context, k storage.Key) (storage.Event, error) {
	if err := s.err("LastEvent"); err != nil {
		return storage.Event{}, err
	}
	return s.Store.LastEvent(ctx, k)
}

func (s *flakyStore) CancelRequest(ctx context.Context, k storage.Key, now time.Time) (storage.Request, error) {
	if err := s.err("CancelRequest"); err != nil {
		return storage.Request{}, err
	}
	return s.Store.CancelRequest(ctx, k, now)
}

// requireUnavailable checks that the last message to conn is an error
// UNAVAILABLE about id, retryable, with retry_after_ms.
func requireUnavailable(t *testing.T, rec *transporttest.Recorder, connID, id string) {
	t.Helper()
	ms := rec.Messages(t, connID)
	require.NotEmpty(t, ms)
	m := ms[len(ms)-1]
	require.Equal(t, streamer.TypeError, m.Type, "%+v", m)
	require.Equal(t, id, m.RequestID)
	require.NotNil(t, m.Error)
	require.Equal(t, streamer.CodeUnavailable, m.Error.Code)
	require.True(t, m.Error.Retryable)
	require.JSONEq(t, `{"retry_after_ms":1000}`, string(m.Error.Details))
	require.NotContains(t, m.Error.Message, "Provisioned", "no internals are sent")
}

func TestStoreFailuresAnswerUnavailable(t *testing.T) {
	t.Parallel()
	store := &flakyStore{Store: memory.New()}
	rec := transporttest.NewRecorder()
	app, err := streamer.New(streamer.Config{Store: store, Sender: rec, CoalesceInterval: -1, Plugins: []streamer.Plugin{{Name: "test", Actions: []streamer.Action{
		{Name: "job", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return "done", nil })},
	}}}})
	require.NoError(t, err)
	conn := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice"}}
	other := streamer.Conn{ID: "c2", Principal: &streamer.Principal{Subject: "alice"}}
	ctx := context.Background()
	handle := func(c streamer.Conn, frame string) error {
		return app.HandleMessage(ctx, c, []byte(frame), false)
	}

	// A request whose CreateRequest fails is answered UNAVAILABLE, and the
	// same frame sent again once the store is back is accepted.
	store.fail("CreateRequest")
	require.Error(t, handle(conn, `{"action":"job","id":"r1"}`))
	requireUnavailable(t, rec, "c1", "r1")
	store.fail()
	require.NoError(t, handle(conn, `{"action":"job","id":"r1"}`))
	ms := rec.Messages(t, "c1")
	require.Equal(t, streamer.TypeAcknowledgment, ms[len(ms)-1].Type)

	// An idempotent re-send from another connection fails to attach.
	for _, m := range []string{"GetRequest", "Subscribe", "LastEvent"} {
		store.fail(m)
		require.Error(t, handle(other, `{"action":"job","id":"r1"}`), m)
		requireUnavailable(t, rec, "c2", "r1")
	}

	for _, tc := range []struct {
		method, frame string
	}{
		{"GetRequest", `{"action":"status","payload":{"request_id":"r1"}}`},
		{"LastEvent", `{"action":"status","payload":{"request_id":"r1"}}`},
		{"GetRequest", `{"action":"resume","payload":{"request_id":"r1"}}`},
		{"Subscribe", `{"action":"resume","payload":{"request_id":"r1"}}`},
		{"ReadEvents", `{"action":"resume","payload":{"request_id":"r1"}}`},
		{"CancelRequest", `{"action":"cancel","payload":{"request_id":"r1"}}`},
	} {
		store.fail(tc.method)
		require.Error(t, handle(other, tc.frame), tc.method)
		requireUnavailable(t, rec, "c2", "r1")
	}

	// The AWS runtime reads the principal from the stored connection.
	store.fail("GetConnection")
	require.Error(t, handle(streamer.Conn{ID: "c3"}, `{"action":"job","id":"r2"}`))
	requireUnavailable(t, rec, "c3", "r2")
	store.fail()
	require.NoError(t, handle(streamer.Conn{ID: "c3"}, `{"action":"job","id":"r2"}`))
	ms = rec.Messages(t, "c3")
	require.Equal(t, streamer.CodeUnauthorized, ms[len(ms)-1].Error.Code, "an unknown connection is still UNAUTHORIZED")
}

func TestAdmissionFailureIsStillInternal(t *testing.T) {
	t.Parallel()
	broken := func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			if req.Stage == streamer.StageAdmit {
				return nil, errors.New("a bug in a middleware")
			}
			return next.Serve(ctx, req, rep)
		})
	}
	b := setup(t, setupOpts{cfg: func(c *streamer.Config) { c.Middleware = []streamer.Middleware{broken} }})
	require.Error(t, b.app.HandleMessage(context.Background(), b.conn, []byte(`{"action":"steps","id":"bug","payload":{"steps":1}}`), false))
	require.Equal(t, streamer.CodeInternal, errorOf(t, b.msgs(t), "bug").Code)
}

func TestUnavailable(t *testing.T) {
	t.Parallel()
	e := streamer.Unavailable(1500*time.Microsecond + time.Second)
	require.Equal(t, streamer.CodeUnavailable, e.Code)
	require.True(t, e.Retryable)
	b := streamer.Body(e, streamer.CodeInternal)
	require.True(t, b.Retryable)
	require.JSONEq(t, `{"retry_after_ms":1002}`, string(b.Details))
	require.True(t, streamer.ValidCode(streamer.CodeUnavailable))
}
