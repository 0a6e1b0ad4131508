package streamer_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/plugins/demo"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// countingStore counts the writes a run makes.
type countingStore struct {
	*memory.Store
	appends, withCheckpoint, saves atomic.Int64
}

func (s *countingStore) AppendEvent(ctx context.Context, k storage.Key, attempt int, ev storage.Event, v int64) error {
	s.appends.Add(1)
	if ev.Checkpoint != nil {
		s.withCheckpoint.Add(1)
	}
	return s.Store.AppendEvent(ctx, k, attempt, ev, v)
}

func (s *countingStore) SaveCheckpoint(ctx context.Context, k storage.Key, attempt int, state json.RawMessage) error {
	s.saves.Add(1)
	return s.Store.SaveCheckpoint(ctx, k, attempt, state)
}

// cpBundle is an App (no worker: the tests call Process, as the Lambda
// processor does) on a counting memory store.
type cpBundle struct {
	app   *streamer.App
	store *countingStore
	rec   *transporttest.Recorder
	conn  streamer.Conn
}

func cpSetup(t *testing.T, cfg streamer.Config, actions ...streamer.Action) *cpBundle {
	t.Helper()
	b := &cpBundle{store: &countingStore{Store: memory.New()}, rec: transporttest.NewRecorder(),
		conn: streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice"}}}
	cfg.Store, cfg.Sender = b.store, b.rec
	cfg.Plugins = []streamer.Plugin{demo.New(), {Name: "cp", Actions: actions}}
	app, err := streamer.New(cfg)
	require.NoError(t, err)
	b.app = app
	return b
}

func (b *cpBundle) send(t *testing.T, frame string) {
	t.Helper()
	require.NoError(t, b.app.HandleMessage(context.Background(), b.conn, []byte(frame), false))
}

func (b *cpBundle) key(id string) storage.Key { return storage.Key{Subject: "alice", ID: id} }

// processWithDeadline runs one delivery of id with a Lambda-like deadline.
func (b *cpBundle) processWithDeadline(t *testing.T, id string, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	require.NoError(t, b.app.Process(ctx, b.key(id)))
}

func (b *cpBundle) request(t *testing.T, id string) storage.Request {
	t.Helper()
	r, err := b.store.GetRequest(context.Background(), b.key(id))
	require.NoError(t, err)
	return r
}

// A job longer than one invocation spans several, each continuing from the
// last checkpoint: no item before it is done again, seqs continue and the
// percentage never goes back.
func TestCheckpointedJobSpansInvocations(t *testing.T) {
	t.Parallel()
	b := cpSetup(t, streamer.Config{})
	b.send(t, `{"action":"checkpointed","id":"j1","payload":{"items":12,"item_ms":50}}`)
	invocations := 0
	deadline := time.Now().Add(time.Minute)
	for !b.request(t, "j1").Status.Final() {
		require.True(t, time.Now().Before(deadline), "the job did not finish")
		invocations++
		b.processWithDeadline(t, "j1", 250*time.Millisecond) // about 4 items an invocation
	}
	r := b.request(t, "j1")
	require.Equal(t, storage.StatusSucceeded, r.Status)
	require.GreaterOrEqual(t, invocations, 2)
	require.Equal(t, invocations-1, r.Continuations, "every invocation but the last was continued")
	require.Equal(t, invocations, r.Attempt)
	var res demo.CheckpointedResult
	require.NoError(t, json.Unmarshal(r.Result, &res))
	require.Equal(t, 12, res.Items)
	require.Equal(t, invocations, res.Runs, "each invocation did some of the work")

	evs, err := b.store.ReadEvents(context.Background(), b.key("j1"), 0, 0)
	require.NoError(t, err)
	checkItems(t, evs, 12)
	require.Equal(t, streamer.TypeStarted, evs[0].Type)
	runs := 0
	for _, ev := range evs {
		if ev.Type == streamer.TypeContinued {
			runs++
			var m streamer.Message
			require.NoError(t, json.Unmarshal(ev.Data, &m))
			require.Equal(t, runs, m.Continuations)
			require.Equal(t, 1, m.Attempt, "continuations keep the attempt's number")
		}
	}
	require.Equal(t, invocations-1, runs, "each continuation opens with continued")
}

// checkItems checks a checkpointed log: seqs contiguous from 1, the
// percentage never decreasing, and the items as demo.CheckCheckpointed
// checks them, every one reported.
func checkItems(t *testing.T, evs []storage.Event, n int) {
	t.Helper()
	types, msgs := make([]string, len(evs)), make([]string, len(evs))
	pct := 0.0
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.Seq, "seqs are contiguous")
		require.GreaterOrEqual(t, ev.Percentage, pct, "the percentage never goes back (seq %d)", ev.Seq)
		pct = ev.Percentage
		types[i], msgs[i] = ev.Type, ev.Message
	}
	reported, _, err := demo.CheckCheckpointed(types, msgs, n)
	require.NoError(t, err)
	require.Equal(t, n, reported, "every item reported")
}

// Past Config.MaxContinuations the request ends with TIMEOUT: no endless
// re-queue.
func TestContinuationCap(t *testing.T) {
	t.Parallel()
	hold := streamer.Action{Name: "hold", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})}
	b := cpSetup(t, streamer.Config{MaxContinuations: 2}, hold)
	b.send(t, `{"action":"hold","id":"h1"}`)
	for i := 0; i < 3; i++ {
		b.processWithDeadline(t, "h1", 100*time.Millisecond)
	}
	r := b.request(t, "h1")
	require.Equal(t, storage.StatusFailed, r.Status)
	require.Equal(t, streamer.CodeTimeout, r.Error.Code)
	require.Contains(t, r.Error.Message, "continued 3 times")
	require.Contains(t, r.Error.Message, "MaxContinuations")
	require.Equal(t, 2, r.Continuations)
}

// An action's MaxDuration bounds its running time across runs.
func TestMaxDuration(t *testing.T) {
	t.Parallel()
	hold := streamer.Action{Name: "hold", Options: streamer.ActionOptions{Mode: streamer.ModeAsync, MaxDuration: 400 * time.Millisecond},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})}
	b := cpSetup(t, streamer.Config{}, hold)

	// Within one run.
	b.send(t, `{"action":"hold","id":"m1"}`)
	require.NoError(t, b.app.Process(context.Background(), b.key("m1")))
	r := b.request(t, "m1")
	require.Equal(t, streamer.CodeTimeout, r.Error.Code)
	require.Contains(t, r.Error.Message, "MaxDuration (400ms)")

	// Across runs: continued runs count from the first.
	b.send(t, `{"action":"hold","id":"m2"}`)
	start := time.Now()
	for !b.request(t, "m2").Status.Final() {
		require.Less(t, time.Since(start), time.Minute)
		b.processWithDeadline(t, "m2", 150*time.Millisecond)
	}
	r = b.request(t, "m2")
	require.Equal(t, streamer.CodeTimeout, r.Error.Code)
	require.Contains(t, r.Error.Message, "MaxDuration")
	require.Positive(t, r.Continuations)

	_, err := streamer.New(streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder(),
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{{Name: "x", Handler: hold.Handler,
			Options: streamer.ActionOptions{MaxDuration: -time.Second}}}}}})
	require.ErrorContains(t, err, "MaxDuration (-1s) must not be negative")
}

// A checkpoint is saved with the pending progress update in one write, or
// alone when none is pending; the next run reads it.
func TestCheckpointWrites(t *testing.T) {
	t.Parallel()
	var runs atomic.Int64
	work := streamer.Action{Name: "work", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			if runs.Add(1) == 2 {
				st, ok, err := streamer.CheckpointOf[map[string]int](ctx)
				return map[string]any{"state": st, "ok": ok, "raw": string(req.Checkpoint)}, err
			}
			_ = rep.Report(ctx, streamer.Update{Percentage: 10, Message: "a"}) // emitted at once
			_ = rep.Report(ctx, streamer.Update{Percentage: 20, Message: "b"}) // pending (coalesced)
			if err := streamer.Checkpoint(ctx, rep, map[string]int{"n": 1}); err != nil {
				return nil, err
			}
			if err := streamer.Checkpoint(ctx, rep, map[string]int{"n": 2}); err != nil { // nothing pending
				return nil, err
			}
			return nil, streamer.Retryable(errors.New("run again"))
		})}
	work.Options.Retry = streamer.RetryPolicy{InitialBackoff: time.Millisecond, Jitter: -1}
	b := cpSetup(t, streamer.Config{CoalesceInterval: time.Hour}, work)
	b.send(t, `{"action":"work","id":"w1"}`)
	require.NoError(t, b.app.Process(context.Background(), b.key("w1")))
	require.Equal(t, int64(1), b.store.withCheckpoint.Load(), "the first checkpoint went with the pending progress")
	require.Equal(t, int64(1), b.store.saves.Load(), "the second, with nothing pending, alone")
	// started, a, b+checkpoint, retrying
	require.Equal(t, int64(4), b.store.appends.Load())
	require.JSONEq(t, `{"n":2}`, string(b.request(t, "w1").Checkpoint))

	require.Eventually(t, func() bool {
		return b.app.Process(context.Background(), b.key("w1")) == nil && b.request(t, "w1").Status.Final()
	}, 10*time.Second, 5*time.Millisecond)
	r := b.request(t, "w1")
	require.Equal(t, storage.StatusSucceeded, r.Status)
	require.JSONEq(t, `{"state":{"n":2},"ok":true,"raw":"{\"n\":2}"}`, string(r.Result), "the retried attempt read the checkpoint")
	evs, err := b.store.ReadEvents(context.Background(), b.key("w1"), 0, 0)
	require.NoError(t, err)
	var types []string
	for _, ev := range evs {
		types = append(types, ev.Type)
	}
	require.Equal(t, []string{"started", "progress", "progress", "retrying", "continued", "complete"}, types,
		"a run with a checkpoint opens with continued")
}

// Bad checkpoints are refused with clear errors; sync runs have none.
func TestCheckpointRefusals(t *testing.T) {
	t.Parallel()
	var got atomic.Value
	big := streamer.Action{Name: "big", Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Retry: streamer.RetryPolicy{MaxAttempts: 1}},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
			err := streamer.Checkpoint(ctx, rep, strings.Repeat("x", 100))
			got.Store(fmt.Sprint(err))
			if !errors.Is(err, streamer.ErrCheckpointTooLarge) {
				return nil, errors.New("want ErrCheckpointTooLarge")
			}
			if err := streamer.Checkpoint(ctx, streamer.Discard, 1); !errors.Is(err, streamer.ErrNoCheckpoints) {
				return nil, fmt.Errorf("want ErrNoCheckpoints, got %w", err)
			}
			if err := streamer.Checkpoint(ctx, rep, func() {}); err == nil {
				return nil, errors.New("want a JSON error")
			}
			return "refused", nil
		})}
	syncCP := streamer.Action{Name: "sync_cp", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
			_, ok, err := streamer.CheckpointOf[int](ctx)
			return map[string]any{"ok": ok, "err": fmt.Sprint(err), "save": fmt.Sprint(streamer.Checkpoint(ctx, rep, 1))}, nil
		})}
	b := cpSetup(t, streamer.Config{MaxCheckpoint: 50}, big, syncCP)
	b.send(t, `{"action":"big","id":"b1"}`)
	require.NoError(t, b.app.Process(context.Background(), b.key("b1")))
	r := b.request(t, "b1")
	require.Equal(t, storage.StatusSucceeded, r.Status, "%+v", r.Error)
	require.Contains(t, got.Load(), "102 bytes of JSON; the limit is 50 (Config.MaxCheckpoint)")
	require.Nil(t, r.Checkpoint)

	b.send(t, `{"action":"sync_cp","id":"s1"}`)
	ms := b.rec.Messages(t, "c1")
	last := ms[len(ms)-1]
	require.Equal(t, streamer.TypeResponse, last.Type)
	require.JSONEq(t, `{"ok":false,"err":"<nil>","save":"<nil>"}`, string(last.Data))
}
