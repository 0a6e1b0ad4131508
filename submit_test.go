package streamer_test

import (
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/progress"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// stepClock is an App clock that tests move forward by hand.
type stepClock struct {
	mu   sync.Mutex
	skip time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.skip)
}

func (c *stepClock) AfterFunc(d time.Duration, f func()) progress.Timer { return time.AfterFunc(d, f) }

func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.skip += d
}

// alice is the principal of the bundle's connection (setup).
func alice() streamer.Principal {
	return streamer.Principal{Subject: "alice", Tenant: "t1", Scopes: []string{"read"}}
}

func aliceKey(id string) storage.Key { return storage.Key{Tenant: "t1", Subject: "alice", ID: id} }

// requireCode asserts that err is a *streamer.Error with code.
func requireCode(t *testing.T, err error, code string) {
	t.Helper()
	_ = codeError(t, err, code)
}

// codeError asserts that err is a *streamer.Error with code and returns it.
func codeError(t *testing.T, err error, code string) *streamer.Error {
	t.Helper()
	var se *streamer.Error
	require.ErrorAs(t, err, &se, "err %v", err)
	require.Equal(t, code, se.Code, "err %v", err)
	return se
}

// waitStatus polls the store until the request reaches status.
func waitStatus(t *testing.T, store storage.Store, k storage.Key, status storage.Status) storage.Request {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		r, err := store.GetRequest(context.Background(), k)
		if err == nil && r.Status == status {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("request %s: status %q, error %v; want %q within %v", k.ID, r.Status, err, status, wait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A delayed submit is stored queued, with no connection, and is not run
// before its NotBefore: the processor reports it not due until then. Once
// the clock passes it, it runs, and a client of the principal that resumed
// it meanwhile gets its events.
func TestSubmitNotBefore(t *testing.T) {
	t.Parallel()
	clock := &stepClock{}
	b := setup(t, setupOpts{noRun: true, cfg: func(c *streamer.Config) { c.Clock = clock }})
	ctx := context.Background()
	notBefore := clock.Now().Add(time.Hour)
	res, err := b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 2}, streamer.SubmitOptions{NotBefore: notBefore})
	require.NoError(t, err)
	require.Len(t, res.ID, 26, "a server-made id (ULID)")
	require.Equal(t, streamer.SubmitResult{ID: res.ID, Status: storage.StatusQueued}, res)

	key := aliceKey(res.ID)
	stored, err := b.store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, stored.Status)
	require.Empty(t, stored.ConnectionID)
	require.WithinDuration(t, notBefore, stored.NotBefore, time.Millisecond)
	require.JSONEq(t, `{"steps":2}`, string(stored.Payload))

	// A client of alice follows it.
	b.send(t, `{"action":"resume","payload":{"request_id":"`+res.ID+`"}}`)

	var nd *streamer.NotDueError
	require.ErrorAs(t, b.app.Process(ctx, key), &nd)
	require.WithinDuration(t, notBefore, nd.At, time.Millisecond)
	require.False(t, nd.Held)
	require.Zero(t, b.n.Load(), "not run before NotBefore")
	clock.advance(time.Hour - time.Second)
	require.ErrorAs(t, b.app.Process(ctx, key), &nd, "still a second early")
	require.Zero(t, b.n.Load())

	clock.advance(time.Second)
	require.NoError(t, b.app.Process(ctx, key))
	require.EqualValues(t, 1, b.n.Load())
	msgs := b.waitTerminal(t, res.ID)
	last := msgs[len(msgs)-1]
	require.Equal(t, streamer.TypeComplete, last.Type)
	require.JSONEq(t, `{"steps":2}`, string(last.Result))
	require.EqualValues(t, 4, last.Seq, "started, two progress events, then complete")
	done, err := b.store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusSucceeded, done.Status)
	require.Equal(t, 1, done.Attempt)
}

// The embedded worker runs a delayed submit once it is due, and not
// before; whether it was submitted while the worker runs, or before it
// started (the worker picks it up from the store).
func TestSubmitWorkerWaits(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"running", "before_run"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			started := make(chan time.Time, 1)
			stamp := streamer.Action{Name: "stamp", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
				Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
					started <- time.Now()
					return "ok", nil
				})}
			b := setup(t, setupOpts{noRun: name == "before_run", extra: []streamer.Action{stamp}})
			notBefore := time.Now().Add(300 * time.Millisecond)
			res, err := b.app.Submit(context.Background(), alice(), "stamp", nil, streamer.SubmitOptions{NotBefore: notBefore})
			require.NoError(t, err)
			if name == "before_run" {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- b.app.Run(ctx, 2) }()
				t.Cleanup(func() {
					cancel()
					require.NoError(t, <-done)
				})
			}
			r := waitStatus(t, b.store, aliceKey(res.ID), storage.StatusSucceeded)
			at := <-started
			// Stored times are kept to the millisecond.
			require.False(t, at.Before(notBefore.Truncate(time.Millisecond)), "started %v before NotBefore %v", at, notBefore)
			require.Equal(t, 1, r.Attempt)
		})
	}
}

// An idempotency key is the request's id: the same key, action and payload
// give back the stored request; another payload is a CONFLICT. Ids are
// shared with the protocol's: a client's frame with the id attaches to a
// submitted request, and a submit with the id of a client's request finds
// it, without subscribing anything.
func TestSubmitIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noRun: true})
	ctx := context.Background()
	opts := streamer.SubmitOptions{IdempotencyKey: "nightly-2024-01-01", NotBefore: time.Now().Add(time.Hour)}
	first, err := b.app.Submit(ctx, alice(), "steps", json.RawMessage(`{"steps": 3}`), opts)
	require.NoError(t, err)
	require.Equal(t, streamer.SubmitResult{ID: "nightly-2024-01-01", Status: storage.StatusQueued}, first)

	// The same payload, however spaced, and another NotBefore.
	again, err := b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 3}, streamer.SubmitOptions{IdempotencyKey: "nightly-2024-01-01"})
	require.NoError(t, err)
	require.Equal(t, streamer.SubmitResult{ID: "nightly-2024-01-01", Status: storage.StatusQueued, Existing: true}, again)
	stored, err := b.store.GetRequest(ctx, aliceKey(first.ID))
	require.NoError(t, err)
	require.WithinDuration(t, opts.NotBefore, stored.NotBefore, time.Millisecond, "the first submit's NotBefore stays")

	_, err = b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 4}, streamer.SubmitOptions{IdempotencyKey: "nightly-2024-01-01"})
	requireCode(t, err, streamer.CodeConflict)
	_, err = b.app.Submit(ctx, alice(), "big", map[string]int{"steps": 3}, streamer.SubmitOptions{IdempotencyKey: "nightly-2024-01-01"})
	requireCode(t, err, streamer.CodeConflict)

	// Another principal's key is another request.
	bob := streamer.Principal{Subject: "bob", Tenant: "t1"}
	other, err := b.app.Submit(ctx, bob, "steps", map[string]int{"steps": 4}, streamer.SubmitOptions{IdempotencyKey: "nightly-2024-01-01"})
	require.NoError(t, err)
	require.False(t, other.Existing)

	// A client of alice re-sending the id attaches to it.
	b.send(t, `{"action":"steps","id":"nightly-2024-01-01","payload":{"steps":3}}`)
	ack := b.waitType(t, streamer.TypeAcknowledgment, "nightly-2024-01-01")
	require.Equal(t, "queued", ack.Status)
	subs, err := b.store.Subscribers(ctx, aliceKey("nightly-2024-01-01"))
	require.NoError(t, err)
	require.Equal(t, []string{b.conn.ID}, subs)

	// A submit with the id of a request a client sent finds it.
	b.send(t, `{"action":"steps","id":"from-client","payload":{"steps":1}}`)
	b.waitType(t, streamer.TypeAcknowledgment, "from-client")
	found, err := b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{IdempotencyKey: "from-client"})
	require.NoError(t, err)
	require.True(t, found.Existing)
	subs, err = b.store.Subscribers(ctx, aliceKey("from-client"))
	require.NoError(t, err)
	require.Empty(t, subs, "a submit subscribes no connection")

	// Without a key, every submit is a new request.
	x, err := b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{})
	require.NoError(t, err)
	y, err := b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{})
	require.NoError(t, err)
	require.NotEqual(t, x.ID, y.ID)
	require.False(t, y.Existing)
	reqs, err := b.store.ListUnfinished(ctx)
	require.NoError(t, err)
	require.Len(t, reqs, 5)
}

// A finished request is found by its key too, with its final status.
func TestSubmitIdempotentAfterFinish(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	ctx := context.Background()
	opts := streamer.SubmitOptions{IdempotencyKey: "once"}
	_, err := b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 2}, opts)
	require.NoError(t, err)
	waitStatus(t, b.store, aliceKey("once"), storage.StatusSucceeded)
	again, err := b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 2}, opts)
	require.NoError(t, err)
	require.Equal(t, streamer.SubmitResult{ID: "once", Status: storage.StatusSucceeded, Seq: 4, Existing: true}, again)
	require.EqualValues(t, 1, b.n.Load(), "run once")
}

// Submit refuses what the router refuses for a frame, with the same codes,
// and stores nothing.
func TestSubmitRefusals(t *testing.T) {
	t.Parallel()
	noop := streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return nil, nil })
	b := setup(t, setupOpts{noRun: true, extra: []streamer.Action{
		{Name: "admin_async", Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Scopes: []string{"read", "admin"}}, Handler: noop},
		{Name: "small_async", Options: streamer.ActionOptions{Mode: streamer.ModeAsync, MaxPayload: 10}, Handler: noop},
		{Name: "long", Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Timeout: time.Hour}, Handler: noop},
	}})
	ctx := context.Background()
	p := alice()
	cases := []struct {
		name, action string
		principal    streamer.Principal
		payload      any
		opts         streamer.SubmitOptions
		code         string
	}{
		{"unknown action", "nope", p, nil, streamer.SubmitOptions{}, streamer.CodeInvalidAction},
		{"reserved action", streamer.ActionStatus, p, nil, streamer.SubmitOptions{}, streamer.CodeInvalidAction},
		{"sync action", "echo", p, nil, streamer.SubmitOptions{}, streamer.CodeInvalidAction},
		{"no subject", "steps", streamer.Principal{Tenant: "t1"}, map[string]int{"steps": 1}, streamer.SubmitOptions{}, streamer.CodeUnauthorized},
		{"validation", "steps", p, map[string]int{"steps": 0}, streamer.SubmitOptions{}, streamer.CodeValidation},
		{"missing payload", "steps", p, nil, streamer.SubmitOptions{}, streamer.CodeValidation},
		{"invalid JSON", "steps", p, json.RawMessage(`{"steps":`), streamer.SubmitOptions{}, streamer.CodeValidation},
		{"not JSON", "steps", p, func() {}, streamer.SubmitOptions{}, streamer.CodeValidation},
		{"scope", "admin_async", p, nil, streamer.SubmitOptions{}, streamer.CodeForbidden},
		{"action's payload limit", "small_async", p, "0123456789", streamer.SubmitOptions{}, streamer.CodePayloadTooLarge},
		{"frame limit", "steps", p, strings.Repeat("x", streamer.MaxMessageSize), streamer.SubmitOptions{}, streamer.CodePayloadTooLarge},
		{"bad key", "steps", p, map[string]int{"steps": 1}, streamer.SubmitOptions{IdempotencyKey: "no spaces"}, streamer.CodeValidation},
		{"too late", "steps", p, map[string]int{"steps": 1}, streamer.SubmitOptions{NotBefore: time.Now().Add(24 * time.Hour)}, streamer.CodeValidation},
		{"too late for its timeout", "long", p, nil, streamer.SubmitOptions{NotBefore: time.Now().Add(23 * time.Hour)}, streamer.CodeValidation},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.app.Submit(ctx, tc.principal, tc.action, tc.payload, tc.opts)
			requireCode(t, err, tc.code)
		})
	}
	reqs, err := b.store.ListUnfinished(ctx)
	require.NoError(t, err)
	require.Empty(t, reqs, "nothing stored")

	// The details are the router's.
	_, err = b.app.Submit(ctx, p, "nope", nil, streamer.SubmitOptions{})
	se := codeError(t, err, streamer.CodeInvalidAction)
	require.Contains(t, se.Message, "steps")
	_, err = b.app.Submit(ctx, p, "steps", map[string]int{"steps": 0}, streamer.SubmitOptions{})
	se = codeError(t, err, streamer.CodeValidation)
	fields, ok := se.Details.([]streamer.FieldError)
	require.True(t, ok, "details %#v", se.Details)
	require.Equal(t, "steps", fields[0].Field)

	// Within the limits, the same actions are accepted.
	_, err = b.app.Submit(ctx, streamer.Principal{Subject: "root", Scopes: []string{"read", "admin"}}, "admin_async", nil, streamer.SubmitOptions{})
	require.NoError(t, err)
	_, err = b.app.Submit(ctx, p, "long", nil, streamer.SubmitOptions{NotBefore: time.Now().Add(22 * time.Hour)})
	require.NoError(t, err)
	_, err = b.app.Submit(ctx, p, "auto_fast", nil, streamer.SubmitOptions{})
	require.NoError(t, err, "an auto action is submitted as async")
}

// The middleware chain runs at StageAdmit, with the request as a frame's
// would be but no connection; a refusal there is returned and stores
// nothing; at StageProcess the stored request runs through the chain too.
func TestSubmitMiddleware(t *testing.T) {
	t.Parallel()
	type seen struct {
		stage   streamer.Stage
		conn    string
		subject string
		meta    string
	}
	var (
		mu  sync.Mutex
		got []seen
	)
	errPlain := errors.New("plain failure")
	mw := func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			mu.Lock()
			got = append(got, seen{req.Stage, req.ConnectionID, req.Principal.Subject, req.Metadata["source"]})
			mu.Unlock()
			switch req.Metadata["source"] {
			case "limited":
				return nil, streamer.NewError(streamer.CodeRateLimited, "slow down").WithDetails(streamer.RetryAfter{RetryAfterMS: 500})
			case "plain":
				return nil, errPlain
			}
			if r, _ := streamer.RequestFromContext(ctx); r != req {
				return nil, errors.New("the request is not in the context")
			}
			return next.Serve(ctx, req, rep)
		})
	}
	b := setup(t, setupOpts{cfg: func(c *streamer.Config) { c.Middleware = []streamer.Middleware{mw} }})
	ctx := context.Background()

	res, err := b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{Metadata: map[string]string{"source": "cron"}})
	require.NoError(t, err)
	waitStatus(t, b.store, aliceKey(res.ID), storage.StatusSucceeded)
	mu.Lock()
	require.Equal(t, []seen{{streamer.StageAdmit, "", "alice", "cron"}, {streamer.StageProcess, "", "alice", "cron"}}, got)
	got = nil
	mu.Unlock()

	_, err = b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{IdempotencyKey: "limited", Metadata: map[string]string{"source": "limited"}})
	se := codeError(t, err, streamer.CodeRateLimited)
	require.Equal(t, streamer.RetryAfter{RetryAfterMS: 500}, se.Details)
	_, err = b.app.Submit(ctx, alice(), "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{IdempotencyKey: "plain", Metadata: map[string]string{"source": "plain"}})
	se = codeError(t, err, streamer.CodeInternal)
	require.ErrorIs(t, err, errPlain, "the cause is kept for the caller")
	require.Equal(t, "internal error", se.Message, "no internals in the message")
	for _, id := range []string{"limited", "plain"} {
		_, err := b.store.GetRequest(ctx, aliceKey(id))
		require.ErrorIs(t, err, storage.ErrNotFound, "%s stored nothing", id)
	}
	mu.Lock()
	require.Equal(t, []seen{{streamer.StageAdmit, "", "alice", "limited"}, {streamer.StageAdmit, "", "alice", "plain"}}, got)
	mu.Unlock()
}

// failingCreate is the memory store whose CreateRequest fails, as a
// throttled DynamoDB would after its retries.
type failingCreate struct{ storage.Store }

func (failingCreate) CreateRequest(context.Context, storage.Request) error {
	return errors.New("throttled")
}

// A store failure is UNAVAILABLE, retryable, as the router answers it.
func TestSubmitStoreFailure(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noRun: true})
	app, err := streamer.New(streamer.Config{Store: failingCreate{b.store}, Sender: transporttest.NewRecorder(), Plugins: []streamer.Plugin{testPlugin(b, nil)}})
	require.NoError(t, err)
	_, err = app.Submit(context.Background(), alice(), "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{IdempotencyKey: "k"})
	se := codeError(t, err, streamer.CodeUnavailable)
	require.True(t, se.Retryable)
}

// TestReadmeSubmitBuilds compiles the submitter Lambda of README.md as it
// stands.
func TestReadmeSubmitBuilds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program; skipped with -short")
	}
	dir := readmeDir(t, map[string]string{"main.go": readmeBlock(t, "readme-submit")})
	cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "submitter"), "./"+filepath.Join(dir, "main.go"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "README submitter does not build:\n%s", out)
}
