package streamer_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// Events stop going to a connection once its token has expired (past the
// leeway), on every runtime and with no read per event: the processor stops
// sending to the request's sender, and a subscription ends with its token
// (noticed when the processor reads the subscribers again, before the
// terminal event at the latest). The events stay stored: a client with a
// fresh token resumes them.
func TestNoEventsAfterTokenExpiry(t *testing.T) {
	t.Parallel()
	step := make(chan struct{})
	work := streamer.Action{Name: "work", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
			for i := 1; i <= 2; i++ {
				<-step
				_ = rep.Report(ctx, streamer.Update{Percentage: float64(50 * i), Message: "step"})
			}
			return "done", nil
		})}
	store, rec := memory.New(), transporttest.NewRecorder()
	app, err := streamer.New(streamer.Config{Store: store, Sender: rec, CoalesceInterval: -1,
		TokenLeeway: time.Millisecond, Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{work}}}})
	require.NoError(t, err)
	// The store expires subscriptions by its own (real) clock: a token
	// that expires in a second of real time.
	expires := time.Now().Add(time.Second)
	p := &streamer.Principal{Subject: "alice", ExpiresAt: expires}
	sender := streamer.Conn{ID: "c-sender", Principal: p}
	watcher := streamer.Conn{ID: "c-watcher", Principal: p}
	ctx := context.Background()
	require.NoError(t, app.HandleMessage(ctx, sender, []byte(`{"action":"work","id":"w1"}`), false))
	require.NoError(t, app.HandleMessage(ctx, watcher, []byte(`{"action":"resume","payload":{"request_id":"w1"}}`), false))

	done := make(chan error, 1)
	go func() { done <- app.Process(ctx, storage.Key{Subject: "alice", ID: "w1"}) }()
	step <- struct{}{}
	rec.WaitFor(t, sender.ID, 10*time.Second, hasTypes(streamer.TypeProgress, 1))
	rec.WaitFor(t, watcher.ID, 10*time.Second, hasTypes(streamer.TypeProgress, 1))

	for !time.Now().After(expires.Add(100 * time.Millisecond)) { // both tokens expire
		time.Sleep(20 * time.Millisecond)
	}
	step <- struct{}{}
	require.NoError(t, <-done)
	evs, err := store.ReadEvents(ctx, storage.Key{Subject: "alice", ID: "w1"}, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, 4, "started, two steps, complete: all stored")
	for _, m := range rec.Messages(t, sender.ID) {
		require.Less(t, m.Seq, int64(3), "the sender got seq %d after its token expired", m.Seq)
	}
	// A subscriber's subscription ends with its token; a run that holds
	// the subscribers it read sends to it until it reads them again, at the
	// latest before the terminal event.
	for _, m := range rec.Messages(t, watcher.ID) {
		require.False(t, m.Terminal(), "the watcher got the terminal event after its token expired")
	}
}
