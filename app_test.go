package streamer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

const wait = 30 * time.Second

type testBundle struct {
	app   *streamer.App
	store *memory.Store
	rec   *transporttest.Recorder
	conn  streamer.Conn
	n     atomic.Int64
}

// send sends a raw frame from the bundle's connection.
func (b *testBundle) send(t *testing.T, frame string) {
	t.Helper()
	require.NoError(t, b.app.HandleMessage(context.Background(), b.conn, []byte(frame), false))
}

// sendAs sends a frame from another connection.
func (b *testBundle) sendAs(t *testing.T, conn streamer.Conn, frame string) {
	t.Helper()
	require.NoError(t, b.app.HandleMessage(context.Background(), conn, []byte(frame), false))
}

func (b *testBundle) msgs(t *testing.T) []streamer.Message { return b.rec.Messages(t, b.conn.ID) }

// waitTerminal waits for id's terminal event and returns the connection's
// messages, with id's acknowledgment before id's events: the worker may start the
// request, and send its first events, before the router has sent the
// acknowledgment (docs/protocol.md: live events may overtake it).
func (b *testBundle) waitTerminal(t *testing.T, id string) []streamer.Message {
	t.Helper()
	ms := b.rec.WaitFor(t, b.conn.ID, wait, transporttest.HasTerminal(id))
	first := slices.IndexFunc(ms, func(m streamer.Message) bool { return m.RequestID == id })
	ack := slices.IndexFunc(ms, func(m streamer.Message) bool {
		return m.Type == streamer.TypeAcknowledgment && m.RequestID == id
	})
	if ack > first && first >= 0 {
		m := ms[ack]
		ms = slices.Delete(slices.Clone(ms), ack, ack+1)
		ms = slices.Insert(ms, first, m)
	}
	return ms
}

func (b *testBundle) waitType(t *testing.T, typ, id string) streamer.Message {
	t.Helper()
	ms := b.rec.WaitFor(t, b.conn.ID, wait, transporttest.HasType(typ, id))
	for _, m := range ms {
		if m.Type == typ && m.RequestID == id {
			return m
		}
	}
	panic("unreachable")
}

type setupOpts struct {
	cfg    func(*streamer.Config)
	noRun  bool
	extra  []streamer.Action
	plugin []streamer.Plugin
}

// setup builds an App on the memory store with the test plugin, and runs
// its embedded worker until the test ends.
func setup(t *testing.T, o setupOpts) *testBundle {
	t.Helper()
	b := &testBundle{store: memory.New(), rec: transporttest.NewRecorder()}
	plugins := append([]streamer.Plugin{testPlugin(b, o.extra)}, o.plugin...)
	cfg := streamer.Config{Store: b.store, Sender: b.rec, Plugins: plugins, CoalesceInterval: -1}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	app, err := streamer.New(cfg)
	require.NoError(t, err)
	b.app = app
	b.conn = streamer.Conn{ID: "conn-1", Principal: &streamer.Principal{Subject: "alice", Tenant: "t1", Scopes: []string{"read"}}}
	if !o.noRun {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- app.Run(ctx, 4) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	return b
}

type stepsIn struct {
	Steps int  `json:"steps" validate:"required,min=1,max=100"`
	Hold  bool `json:"hold"`
}

// testPlugin has actions whose behaviour the tests drive.
func testPlugin(b *testBundle, extra []streamer.Action) streamer.Plugin {
	acts := []streamer.Action{
		{Name: "echo", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
				return req.Payload, nil
			})},
		{Name: "steps", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.Typed(func(ctx context.Context, in stepsIn, rep streamer.Reporter) (map[string]int, error) {
				b.n.Add(1)
				for i := 1; i <= in.Steps; i++ {
					_ = rep.Report(ctx, streamer.Update{Percentage: float64(100 * i / in.Steps), Message: fmt.Sprintf("step %d", i)})
				}
				if in.Hold {
					<-ctx.Done()
					return nil, ctx.Err()
				}
				return map[string]int{"steps": in.Steps}, nil
			})},
		{Name: "sync_steps", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
				_ = rep.Report(ctx, streamer.Update{Percentage: 50, Message: "half"})
				return "done", nil
			})},
		{Name: "scoped", Options: streamer.ActionOptions{Mode: streamer.ModeSync, Scopes: []string{"admin"}},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return 1, nil })},
		{Name: "small", Options: streamer.ActionOptions{Mode: streamer.ModeSync, MaxPayload: 10},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return 1, nil })},
		{Name: "panic", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { panic("secret internals") })},
		{Name: "sync_panic", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { panic("secret internals") })},
		{Name: "big", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return strings.Repeat("é\"x", 100000), nil
			})},
		{Name: "sync_big", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return strings.Repeat("é\"x", 100000), nil
			})},
		{Name: "slow_sync", Options: streamer.ActionOptions{Mode: streamer.ModeSync, Timeout: 50 * time.Millisecond},
			Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			})},
		{Name: "slow_async", Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Timeout: 50 * time.Millisecond},
			Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			})},
		{Name: "coded", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return nil, streamer.NewError("QUOTA_EXCEEDED", "no quota left")
			})},
		{Name: "flaky", Options: streamer.ActionOptions{Mode: streamer.ModeAsync,
			Retry: streamer.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, Jitter: -1}},
			Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
				if req.Attempt < 3 {
					return nil, streamer.Retryable(errors.New("transient"))
				}
				return map[string]int{"attempt": req.Attempt}, nil
			})},
		{Name: "auto_fast", Options: streamer.ActionOptions{Estimate: time.Second},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return "fast", nil })},
		{Name: "auto_slow", Options: streamer.ActionOptions{Estimate: time.Minute},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return "slow", nil })},
	}
	return streamer.Plugin{Name: "test", Actions: append(acts, extra...)}
}

func errorOf(t *testing.T, ms []streamer.Message, id string) *streamer.ErrorBody {
	t.Helper()
	for _, m := range ms {
		if m.RequestID == id && m.Error != nil {
			return m.Error
		}
	}
	t.Fatalf("no error for %q in %+v", id, ms)
	return nil
}

func TestSyncEcho(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"echo","id":"e1","payload":{"hello":"world"}}`)
	ms := b.msgs(t)
	require.Len(t, ms, 1)
	require.Equal(t, streamer.TypeResponse, ms[0].Type)
	require.True(t, ms[0].Success)
	require.JSONEq(t, `{"hello":"world"}`, string(ms[0].Data))
	_, err := b.store.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "e1"})
	require.ErrorIs(t, err, storage.ErrNotFound, "sync requests are not stored")
}

func TestServerMakesSortableIDs(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"echo"}`)
	b.send(t, `{"action":"echo"}`)
	ms := b.msgs(t)
	require.Len(t, ms, 2)
	require.True(t, streamer.ValidName(ms[0].RequestID))
	require.NotEqual(t, ms[0].RequestID, ms[1].RequestID)
	require.Less(t, ms[0].RequestID, ms[1].RequestID)
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	cases := []struct{ frame, id, code string }{
		{`{"action":"nope","id":"x1"}`, "x1", streamer.CodeInvalidAction},
		{`not json`, "", streamer.CodeInvalidMessage},
		{`{"id":"x2"}`, "x2", streamer.CodeInvalidMessage},
		{`{"action":"scoped","id":"x3"}`, "x3", streamer.CodeForbidden},
		{`{"action":"small","id":"x4","payload":"0123456789abc"}`, "x4", streamer.CodePayloadTooLarge},
		{`{"action":"steps","id":"x5","payload":{"steps":0}}`, "x5", streamer.CodeValidation},
		{`{"action":"steps","id":"x6","payload":{"steps":"three"}}`, "x6", streamer.CodeValidation},
		{`{"action":"status","id":"x7"}`, "x7", streamer.CodeValidation},
		{`{"action":"status","payload":{"request_id":"missing"}}`, "missing", streamer.CodeNotFound},
		{`{"action":"resume","payload":{"request_id":"missing"}}`, "missing", streamer.CodeNotFound},
		{`{"action":"cancel","payload":{"request_id":"missing"}}`, "missing", streamer.CodeNotFound},
	}
	for _, tc := range cases {
		before := len(b.msgs(t))
		b.send(t, tc.frame)
		ms := b.msgs(t)
		require.Len(t, ms, before+1, tc.frame)
		m := ms[len(ms)-1]
		require.Equal(t, streamer.TypeError, m.Type, tc.frame)
		require.Equal(t, tc.code, m.Error.Code, tc.frame)
		require.Equal(t, tc.id, m.RequestID, tc.frame)
		require.Zero(t, m.Seq, "pre-handler errors carry no seq")
	}
	require.NoError(t, b.app.HandleMessage(context.Background(), b.conn, []byte(`{"action":"echo"}`), true))
	ms := b.msgs(t)
	require.Equal(t, streamer.CodeInvalidMessage, ms[len(ms)-1].Error.Code, "binary frames are refused")

	// Nothing was stored for the refused async request.
	_, err := b.store.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "x5"})
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func TestValidationDetails(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"steps","id":"v1","payload":{"steps":1000}}`)
	e := errorOf(t, b.msgs(t), "v1")
	require.Equal(t, streamer.CodeValidation, e.Code)
	var details []streamer.FieldError
	require.NoError(t, json.Unmarshal(e.Details, &details))
	require.Equal(t, []streamer.FieldError{{Field: "steps", Rule: "max", Message: "steps must be at most 100"}}, details)
}

func TestAsyncLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"steps","id":"a1","payload":{"steps":5}}`)
	ms := b.waitTerminal(t, "a1")
	require.Equal(t, streamer.TypeAcknowledgment, ms[0].Type)
	require.Equal(t, "queued", ms[0].Status)
	require.Zero(t, ms[0].Seq)
	var seqs []int64
	for _, m := range ms[1:] {
		seqs = append(seqs, m.Seq)
	}
	require.Equal(t, []int64{1, 2, 3, 4, 5, 6, 7}, seqs, "contiguous seq from 1")
	require.Equal(t, streamer.TypeStarted, ms[1].Type, "the run's lifecycle event comes first")
	require.Equal(t, 1, ms[1].Attempt)
	require.Equal(t, 20.0, ms[2].Percentage)
	require.Equal(t, "step 1", ms[2].Message)
	last := ms[len(ms)-1]
	require.Equal(t, streamer.TypeComplete, last.Type)
	require.JSONEq(t, `{"steps":5}`, string(last.Result))

	b.send(t, `{"action":"status","payload":{"request_id":"a1"}}`)
	st := b.msgs(t)[len(b.msgs(t))-1]
	require.Equal(t, streamer.TypeStatus, st.Type)
	require.Equal(t, "succeeded", st.Status)
	require.Equal(t, "steps", st.Action)
	require.Equal(t, int64(7), st.Seq)
	require.Equal(t, 100.0, st.Percentage)
	require.JSONEq(t, `{"steps":5}`, string(st.Result))
	require.NotZero(t, st.CreatedAt)
}

func TestAutoMode(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"auto_fast","id":"f"}`)
	require.Equal(t, streamer.TypeResponse, b.msgs(t)[0].Type)
	b.send(t, `{"action":"auto_slow","id":"s"}`)
	ms := b.waitTerminal(t, "s")
	require.Equal(t, streamer.TypeAcknowledgment, ms[1].Type)
}

func TestIdempotentResend(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"steps","id":"i1","payload":{"steps":3}}`)
	b.waitTerminal(t, "i1")
	other := streamer.Conn{ID: "conn-2", Principal: b.conn.Principal}
	b.sendAs(t, other, `{"action":"steps","id":"i1","payload": {"steps": 3}}`)
	ms := b.rec.Messages(t, "conn-2")
	require.Len(t, ms, 1)
	require.Equal(t, streamer.TypeAcknowledgment, ms[0].Type)
	require.Equal(t, "succeeded", ms[0].Status)
	require.Equal(t, int64(5), ms[0].Seq, "the last stored seq")
	require.Equal(t, int64(1), b.n.Load(), "the handler ran once")

	b.sendAs(t, other, `{"action":"steps","id":"i1","payload":{"steps":4}}`)
	require.Equal(t, streamer.CodeConflict, errorOf(t, b.rec.Messages(t, "conn-2"), "i1").Code)
}

func TestPrincipalsAreIsolated(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"steps","id":"p1","payload":{"steps":1}}`)
	b.waitTerminal(t, "p1")
	mallory := streamer.Conn{ID: "conn-m", Principal: &streamer.Principal{Subject: "mallory", Tenant: "t1"}}
	for _, action := range []string{"status", "resume", "cancel"} {
		b.sendAs(t, mallory, `{"action":"`+action+`","payload":{"request_id":"p1"}}`)
	}
	ms := b.rec.Messages(t, "conn-m")
	require.Len(t, ms, 3)
	for _, m := range ms {
		require.Equal(t, streamer.CodeNotFound, m.Error.Code)
		require.Equal(t, "p1", m.RequestID)
	}
	// Same id, other principal: an independent request.
	b.sendAs(t, mallory, `{"action":"steps","id":"p1","payload":{"steps":2}}`)
	b.rec.WaitFor(t, "conn-m", wait, transporttest.HasTerminal("p1"))
	require.Equal(t, int64(2), b.n.Load())
}

func TestResumeReplaysFromSeq(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.rec.Gone(b.conn.ID) // the sender vanishes at once
	b.send(t, `{"action":"steps","id":"r1","payload":{"steps":4}}`)
	require.Eventually(t, func() bool {
		r, err := b.store.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "r1"})
		return err == nil && r.Status.Final()
	}, wait, 5*time.Millisecond)
	again := streamer.Conn{ID: "conn-3", Principal: b.conn.Principal}
	b.sendAs(t, again, `{"action":"resume","payload":{"request_id":"r1","after_seq":3}}`)
	ms := b.rec.Messages(t, "conn-3")
	var seqs []int64
	for _, m := range ms {
		seqs = append(seqs, m.Seq)
	}
	require.Equal(t, []int64{4, 5, 6}, seqs, "nothing lost while no connection was live")
	require.Equal(t, streamer.TypeComplete, ms[2].Type)
}

func TestCancelRunning(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"steps","id":"c1","payload":{"steps":1,"hold":true}}`)
	b.waitType(t, streamer.TypeProgress, "c1")
	b.send(t, `{"action":"cancel","payload":{"request_id":"c1"}}`)
	ms := b.waitTerminal(t, "c1")
	var st, term *streamer.Message
	for i := range ms {
		switch {
		case ms[i].Type == streamer.TypeStatus:
			st = &ms[i]
		case ms[i].Terminal():
			term = &ms[i]
		}
	}
	require.NotNil(t, st)
	require.Equal(t, "canceling", st.Status)
	require.Equal(t, streamer.TypeError, term.Type)
	require.Equal(t, streamer.CodeCanceled, term.Error.Code)
	require.Equal(t, int64(3), term.Seq, "started, progress, then the terminal error")

	b.send(t, `{"action":"cancel","payload":{"request_id":"c1"}}`)
	last := b.msgs(t)[len(b.msgs(t))-1]
	require.Equal(t, "canceled", last.Status, "cancel of a finished request gives its final status")
}

func TestCancelQueuedWithoutProcessor(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noRun: true})
	b.send(t, `{"action":"steps","id":"q1","payload":{"steps":1}}`)
	b.send(t, `{"action":"cancel","payload":{"request_id":"q1"}}`)
	ms := b.msgs(t)
	require.Len(t, ms, 3)
	require.Equal(t, "canceling", ms[1].Status)
	require.Equal(t, streamer.CodeCanceled, ms[2].Error.Code)
	require.Equal(t, int64(1), ms[2].Seq)
	// A late delivery to a processor runs nothing; it sends the terminal
	// event again (the same seq, which clients drop), in case its first
	// send was lost.
	require.NoError(t, b.app.Process(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "q1"}))
	require.Zero(t, b.n.Load())
	ms = b.msgs(t)
	require.Len(t, ms, 4)
	require.Equal(t, ms[2].Seq, ms[3].Seq)
	require.Equal(t, streamer.CodeCanceled, ms[3].Error.Code)
}

func TestDuplicateDeliveryRunsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noRun: true})
	b.send(t, `{"action":"steps","id":"d1","payload":{"steps":2}}`)
	key := storage.Key{Tenant: "t1", Subject: "alice", ID: "d1"}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			require.NoError(t, b.app.Process(context.Background(), key))
		}()
	}
	wg.Wait()
	require.Equal(t, int64(1), b.n.Load())
	// Exactly one terminal event: deliveries that find the request
	// finished send that same event again (clients drop the seq).
	var terminal *streamer.Message
	for _, m := range b.msgs(t) {
		if m.Terminal() {
			if terminal == nil {
				terminal = &m
			}
			require.Equal(t, terminal.Seq, m.Seq)
			require.Equal(t, terminal.Type, m.Type)
		}
	}
	require.NotNil(t, terminal)
	evs, err := b.store.ReadEvents(context.Background(), key, 0, 0)
	require.NoError(t, err)
	stored := 0
	for _, ev := range evs {
		if ev.Terminal() {
			stored++
		}
	}
	require.Equal(t, 1, stored)
}

func TestPanicBecomesInternalError(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"panic","id":"x"}`)
	ms := b.waitTerminal(t, "x")
	e := ms[len(ms)-1].Error
	require.Equal(t, streamer.CodeInternal, e.Code)
	require.NotContains(t, e.Message, "secret")
	b.send(t, `{"action":"sync_panic","id":"y"}`)
	last := b.msgs(t)[len(b.msgs(t))-1]
	require.Equal(t, streamer.TypeResponse, last.Type)
	require.False(t, last.Success)
	require.Equal(t, streamer.CodeInternal, last.Error.Code)
	require.NotContains(t, string(b.rec.Raw(b.conn.ID)[len(b.msgs(t))-1]), "secret")
}

func TestHandlerCodesAndTimeouts(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"coded","id":"k"}`)
	ms := b.waitTerminal(t, "k")
	require.Equal(t, "QUOTA_EXCEEDED", ms[len(ms)-1].Error.Code)
	require.Equal(t, "no quota left", ms[len(ms)-1].Error.Message)

	b.send(t, `{"action":"slow_async","id":"sa"}`)
	ms = b.waitTerminal(t, "sa")
	require.Equal(t, streamer.CodeTimeout, ms[len(ms)-1].Error.Code)

	b.send(t, `{"action":"slow_sync","id":"ss"}`)
	last := b.msgs(t)[len(b.msgs(t))-1]
	require.Equal(t, "ss", last.RequestID, "the sync request's own reply, sent after its deadline")
	require.Equal(t, streamer.TypeResponse, last.Type)
	require.False(t, last.Success)
	require.Equal(t, streamer.CodeTimeout, last.Error.Code)
}

func TestRetryableErrorsAreRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"flaky","id":"fl"}`)
	ms := b.waitTerminal(t, "fl")
	last := ms[len(ms)-1]
	require.Equal(t, streamer.TypeComplete, last.Type)
	require.JSONEq(t, `{"attempt":3}`, string(last.Result))
	var types []string
	var attempts []int
	for _, m := range ms[1:] {
		types = append(types, m.Type)
		attempts = append(attempts, m.Attempt)
		if m.Type == streamer.TypeRetrying {
			require.Equal(t, streamer.CodeProcessingFailed, m.Error.Code, "retrying carries the error")
			require.Positive(t, m.NextAt)
		}
	}
	require.Equal(t, []string{"started", "retrying", "started", "retrying", "started", "complete"}, types,
		"each run opens with started; each retried failure sends retrying")
	require.Equal(t, []int{1, 1, 2, 2, 3, 0}, attempts)
	require.Equal(t, int64(6), last.Seq)
}

func TestLargeResultsAreChunked(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	want, err := json.Marshal(strings.Repeat("é\"x", 100000))
	require.NoError(t, err)

	b.send(t, `{"action":"big","id":"bg"}`)
	ms := b.waitTerminal(t, "bg")
	var sb strings.Builder
	chunks := 0
	require.Equal(t, streamer.TypeStarted, ms[1].Type)
	for i, m := range ms[2 : len(ms)-1] {
		require.Equal(t, streamer.TypeResultChunk, m.Type)
		require.Equal(t, i, m.Index)
		require.Equal(t, int64(i+2), m.Seq)
		text, err := m.ChunkText()
		require.NoError(t, err)
		sb.WriteString(text)
		chunks++
	}
	last := ms[len(ms)-1]
	require.Equal(t, streamer.TypeComplete, last.Type)
	require.Equal(t, chunks, last.Chunks)
	require.Greater(t, chunks, 1)
	require.Equal(t, string(want), sb.String(), "chunks join to the exact result text")

	b.send(t, `{"action":"sync_big","id":"sb"}`)
	all := b.msgs(t)
	sb.Reset()
	n := 0
	for _, m := range all {
		if m.RequestID == "sb" && m.Type == streamer.TypeResultChunk {
			require.Zero(t, m.Seq, "sync chunks carry no seq")
			text, err := m.ChunkText()
			require.NoError(t, err)
			sb.WriteString(text)
			n++
		}
	}
	resp := all[len(all)-1]
	require.Equal(t, streamer.TypeResponse, resp.Type)
	require.Equal(t, n, resp.Chunks)
	require.Nil(t, resp.Data)
	require.Equal(t, string(want), sb.String())
}

func TestSyncProgressIsLiveAndUnstored(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"sync_steps","id":"sp"}`)
	ms := b.msgs(t)
	require.Len(t, ms, 2)
	require.Equal(t, streamer.TypeProgress, ms[0].Type)
	require.Zero(t, ms[0].Seq)
	require.Equal(t, 50.0, ms[0].Percentage)
	require.Equal(t, streamer.TypeResponse, ms[1].Type)
}

func TestPing(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	b.send(t, `{"action":"ping"}`)
	ms := b.msgs(t)
	require.Equal(t, streamer.TypePong, ms[0].Type)
	require.NotZero(t, ms[0].Timestamp)
}

func TestRegistrationErrors(t *testing.T) {
	t.Parallel()
	h := streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return nil, nil })
	_, err := streamer.New(streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder(), Plugins: []streamer.Plugin{
		{Name: "billing", Actions: []streamer.Action{{Name: "export", Handler: h}}},
		{Name: "reports", Actions: []streamer.Action{{Name: "export", Handler: h}}},
	}})
	require.ErrorContains(t, err, `"billing"`)
	require.ErrorContains(t, err, `"reports"`)
	require.ErrorContains(t, err, `"export"`)

	_, err = streamer.New(streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder(), Plugins: []streamer.Plugin{
		{Name: "sneaky", Actions: []streamer.Action{{Name: "cancel", Handler: h}}},
	}})
	require.ErrorContains(t, err, "reserved")
	require.ErrorContains(t, err, `"sneaky"`)

	_, err = streamer.New(streamer.Config{Sender: transporttest.NewRecorder()})
	require.ErrorContains(t, err, "Config.Store")
}

func TestMiddlewareOrderIsDeclared(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var order []string
	mark := func(name string) streamer.Middleware {
		return func(next streamer.Handler) streamer.Handler {
			return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
				mu.Lock()
				order = append(order, name+":"+req.Stage.String())
				mu.Unlock()
				return next.Serve(ctx, req, rep)
			})
		}
	}
	h := streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return 1, nil })
	other := streamer.Plugin{Name: "other", Middleware: []streamer.Middleware{mark("other")},
		Actions: []streamer.Action{{Name: "x", Handler: h}}}
	mine := streamer.Plugin{Name: "mine", Middleware: []streamer.Middleware{mark("plugin"), nil},
		Actions: []streamer.Action{
			{Name: "a", Handler: h, Middleware: []streamer.Middleware{mark("action")}},
			{Name: "b", Handler: h, Options: streamer.ActionOptions{Mode: streamer.ModeAsync}, Middleware: []streamer.Middleware{mark("action")}},
		}}
	b := setup(t, setupOpts{plugin: []streamer.Plugin{other, mine}, cfg: func(c *streamer.Config) {
		c.Middleware = []streamer.Middleware{mark("app1"), mark("app2")}
	}})
	b.send(t, `{"action":"a","id":"m1"}`)
	require.Equal(t, []string{"app1:sync", "app2:sync", "plugin:sync", "action:sync"}, order)
	mu.Lock()
	order = nil
	mu.Unlock()
	b.send(t, `{"action":"b","id":"m2"}`)
	b.waitTerminal(t, "m2")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{
		"app1:admit", "app2:admit", "plugin:admit", "action:admit",
		"app1:process", "app2:process", "plugin:process", "action:process",
	}, order)
}

func TestAdmissionMiddlewareRefusesBeforeStoring(t *testing.T) {
	t.Parallel()
	limit := func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			if req.Stage == streamer.StageAdmit {
				return nil, streamer.NewError(streamer.CodeRateLimited, "slow down").WithDetails(map[string]int{"retry_after_ms": 1000})
			}
			return next.Serve(ctx, req, rep)
		})
	}
	b := setup(t, setupOpts{cfg: func(c *streamer.Config) { c.Middleware = []streamer.Middleware{limit} }})
	b.send(t, `{"action":"steps","id":"rl","payload":{"steps":1}}`)
	e := errorOf(t, b.msgs(t), "rl")
	require.Equal(t, streamer.CodeRateLimited, e.Code)
	require.JSONEq(t, `{"retry_after_ms":1000}`, string(e.Details))
	_, err := b.store.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "rl"})
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func TestRestartPicksUpRunningWork(t *testing.T) {
	t.Parallel()
	store := memory.New()
	rec := transporttest.NewRecorder()
	b := &testBundle{store: store, rec: rec}
	newApp := func() *streamer.App {
		app, err := streamer.New(streamer.Config{Store: store, Sender: rec, Plugins: []streamer.Plugin{testPlugin(b, nil)}, CoalesceInterval: -1})
		require.NoError(t, err)
		return app
	}
	conn := streamer.Conn{ID: "c", Principal: &streamer.Principal{Subject: "alice"}}
	app1 := newApp()
	ctx1, stop1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	go func() { done1 <- app1.Run(ctx1, 2) }()
	require.NoError(t, app1.HandleMessage(context.Background(), conn, []byte(`{"action":"steps","id":"rs","payload":{"steps":2,"hold":true}}`), false))
	rec.WaitFor(t, "c", wait, hasTypes(streamer.TypeProgress, 1))
	stop1() // the worker stops mid-run: the request is re-queued, not failed
	require.NoError(t, <-done1)
	r, err := store.GetRequest(context.Background(), storage.Key{Subject: "alice", ID: "rs"})
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, r.Status)

	app2 := newApp()
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	done2 := make(chan error, 1)
	go func() { done2 <- app2.Run(ctx2, 2) }()
	rec.WaitFor(t, "c", wait, hasTypes(streamer.TypeProgress, 4)) // two in each run
	require.NoError(t, app2.HandleMessage(context.Background(), conn, []byte(`{"action":"cancel","payload":{"request_id":"rs"}}`), false))
	ms := rec.WaitFor(t, "c", wait, transporttest.HasTerminal("rs"))
	var seqs []int64
	for _, m := range ms {
		if m.Seq > 0 && m.Type != streamer.TypeStatus {
			seqs = append(seqs, m.Seq)
		}
	}
	require.Equal(t, []int64{1, 2, 3, 4, 5, 6, 7}, seqs, "seq continues across the restart: started, progress, then again after the restart, and the cancel")
	stop2()
	require.NoError(t, <-done2)
}

func BenchmarkDispatchSync(b *testing.B) {
	app, err := streamer.New(streamer.Config{
		Store:  memory.New(),
		Sender: discard{},
		Plugins: []streamer.Plugin{{Name: "bench", Actions: []streamer.Action{{
			Name: "echo", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
				return req.Payload, nil
			}),
		}}}},
	})
	require.NoError(b, err)
	conn := streamer.Conn{ID: "c", Principal: &streamer.Principal{Subject: "bench"}}
	frame := []byte(`{"action":"echo","id":"req-1","payload":{"message":"hello","n":42}}`)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := app.HandleMessage(ctx, conn, frame, false); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Send(context.Context, string, string, []byte) error { return nil }

// hasTypes is a transporttest predicate: at least n messages of type typ.
func hasTypes(typ string, n int) func([]streamer.Message) bool {
	return func(ms []streamer.Message) bool {
		c := 0
		for _, m := range ms {
			if m.Type == typ {
				c++
			}
		}
		return c >= n
	}
}

func TestProcessRequeuesBeforeTheDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noRun: true})
	b.send(t, `{"action":"steps","id":"dl","payload":{"steps":1,"hold":true}}`)
	key := storage.Key{Tenant: "t1", Subject: "alice", ID: "dl"}
	// A Lambda-like deadline: the handler is stopped before it (a tenth
	// of the time left, at most StopMargin), and the request goes back to
	// the queue to be continued instead of failing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	require.NoError(t, b.app.Process(ctx, key))
	require.NoError(t, ctx.Err(), "Process returned before the deadline")
	r, err := b.store.GetRequest(context.Background(), key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, r.Status)
	require.Equal(t, 1, r.Attempt)
	require.Equal(t, 1, r.Continuations, "a continuation, not a failed attempt")
	for _, m := range b.msgs(t) {
		require.False(t, m.Terminal(), "no terminal event: %+v", m)
	}
	// The next delivery runs it again, and its stream continues.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	require.NoError(t, b.app.Process(ctx2, key), "due at once")
	ms := b.msgs(t)
	last := ms[len(ms)-1]
	require.Equal(t, int64(4), last.Seq, "started, progress, then the second run's started and progress")
	r, err = b.store.GetRequest(context.Background(), key)
	require.NoError(t, err)
	require.Equal(t, 2, r.Attempt)
	require.Equal(t, 2, r.Continuations)
}
