package streamer_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// quotaSetup runs an App with cfg's quotas and the worker, and returns it
// with its store and recorder.
func quotaSetup(t *testing.T, cfg streamer.Config, acts ...streamer.Action) (*streamer.App, *memory.Store, *transporttest.Recorder) {
	t.Helper()
	store, rec := memory.New(), transporttest.NewRecorder()
	cfg.Store, cfg.Sender, cfg.CoalesceInterval = store, rec, -1
	cfg.Plugins = []streamer.Plugin{{Name: "q", Actions: acts}}
	app, err := streamer.New(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Go(func() {
		close(started)
		_ = app.Run(ctx, 8)
	})
	<-started
	t.Cleanup(func() { cancel(); wg.Wait() })
	return app, store, rec
}

// lastReply returns the last message a connection got about id.
func lastReply(t *testing.T, rec *transporttest.Recorder, conn, id string) streamer.Message {
	t.Helper()
	var last streamer.Message
	for _, m := range rec.Messages(t, conn) {
		if m.RequestID == id {
			last = m
		}
	}
	return last
}

// A principal may have Config.MaxPending queued or running requests; one
// more is refused before anything is stored, and others are not affected.
func TestPendingQuota(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	hold := streamer.Action{Name: "hold", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			select {
			case <-release:
				return "ok", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})}
	app, store, rec := quotaSetup(t, streamer.Config{MaxPending: 3}, hold)
	alice := streamer.Conn{ID: "c-alice", Principal: &streamer.Principal{Subject: "alice"}}
	send := func(c streamer.Conn, id string) {
		require.NoError(t, app.HandleMessage(context.Background(), c, []byte(`{"action":"hold","id":"`+id+`"}`), false))
	}
	// The worker starts counting once it has read what a previous run left.
	require.Eventually(t, func() bool {
		send(alice, "probe")
		return lastReply(t, rec, alice.ID, "probe").Type == streamer.TypeAcknowledgment
	}, 10*time.Second, 10*time.Millisecond)
	send(alice, "a1")
	send(alice, "a2")
	send(alice, "a3")
	refused := lastReply(t, rec, alice.ID, "a3")
	require.Equal(t, streamer.TypeError, refused.Type)
	require.Equal(t, streamer.CodeQuotaExceeded, refused.Error.Code)
	require.JSONEq(t, `{"quota":"pending_requests","limit":3}`, string(refused.Error.Details))
	_, err := store.GetRequest(context.Background(), storage.Key{Subject: "alice", ID: "a3"})
	require.ErrorIs(t, err, storage.ErrNotFound, "nothing stored")

	send(alice, "a1") // a re-send of a stored request still attaches
	require.Equal(t, streamer.TypeAcknowledgment, lastReply(t, rec, alice.ID, "a1").Type)

	bob := streamer.Conn{ID: "c-bob", Principal: &streamer.Principal{Subject: "bob"}}
	send(bob, "b1")
	require.Equal(t, streamer.TypeAcknowledgment, lastReply(t, rec, bob.ID, "b1").Type, "another principal is not affected")

	close(release) // alice's requests end, and she may send again
	require.Eventually(t, func() bool {
		send(alice, "a4")
		return lastReply(t, rec, alice.ID, "a4").Type == streamer.TypeAcknowledgment
	}, 10*time.Second, 10*time.Millisecond)
}

// A result larger than Config.MaxResultBytes ends the request with
// QUOTA_EXCEEDED and is not stored, sync or async.
func TestResultBytesQuota(t *testing.T) {
	t.Parallel()
	big := func(_ context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
		return strings.Repeat("x", 500), nil
	}
	app, store, rec := quotaSetup(t, streamer.Config{MaxResultBytes: 100},
		streamer.Action{Name: "big", Options: streamer.ActionOptions{Mode: streamer.ModeAsync}, Handler: streamer.HandlerFunc(big)},
		streamer.Action{Name: "big_sync", Options: streamer.ActionOptions{Mode: streamer.ModeSync}, Handler: streamer.HandlerFunc(big)})
	conn := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice"}}
	require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(`{"action":"big","id":"r1"}`), false))
	ms := rec.WaitFor(t, "c1", 10*time.Second, transporttest.HasTerminal("r1"))
	end := ms[len(ms)-1]
	require.Equal(t, streamer.CodeQuotaExceeded, end.Error.Code)
	require.Contains(t, end.Error.Message, "502 bytes")
	r, err := store.GetRequest(context.Background(), storage.Key{Subject: "alice", ID: "r1"})
	require.NoError(t, err)
	require.Nil(t, r.Result)
	require.Equal(t, storage.StatusFailed, r.Status)

	require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(`{"action":"big_sync","id":"s1"}`), false))
	resp := lastReply(t, rec, "c1", "s1")
	require.Equal(t, streamer.TypeResponse, resp.Type)
	require.False(t, resp.Success)
	require.Equal(t, streamer.CodeQuotaExceeded, resp.Error.Code)
}

// A handler that reports more than Config.MaxEvents events is stopped; the
// request ends with QUOTA_EXCEEDED as its last event, within the limit.
func TestEventsQuota(t *testing.T) {
	t.Parallel()
	chatty := streamer.Action{Name: "chatty", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
			for i := range 1000 {
				if err := rep.Report(ctx, streamer.Update{Percentage: float64(i) / 10}); err != nil {
					return nil, err
				}
			}
			return "too chatty to finish", nil
		})}
	app, store, rec := quotaSetup(t, streamer.Config{MaxEvents: 10}, chatty)
	conn := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice"}}
	require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(`{"action":"chatty","id":"r1"}`), false))
	ms := rec.WaitFor(t, "c1", 10*time.Second, transporttest.HasTerminal("r1"))
	end := ms[len(ms)-1]
	require.Equal(t, streamer.CodeQuotaExceeded, end.Error.Code)
	var d streamer.QuotaDetails
	require.NoError(t, json.Unmarshal(end.Error.Details, &d))
	require.Equal(t, streamer.QuotaDetails{Quota: "events", Limit: 10}, d)
	evs, err := store.ReadEvents(context.Background(), storage.Key{Subject: "alice", ID: "r1"}, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 10, "the limit counts the terminal event")
}
