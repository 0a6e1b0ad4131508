package devserver_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// countdown is an async action that reports each step and records when it
// started.
func countdown(started chan<- time.Time) streamer.Plugin {
	type in struct {
		Steps int `json:"steps" validate:"min=1,max=10"`
	}
	return streamer.Plugin{Name: "countdown", Actions: []streamer.Action{{
		Name:    "countdown",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.Typed(func(ctx context.Context, in in, rep streamer.Reporter) (map[string]int, error) {
			started <- time.Now()
			for i := 1; i <= in.Steps; i++ {
				_ = rep.Report(ctx, streamer.Update{Percentage: float64(100 * i / in.Steps), Message: fmt.Sprintf("step %d", i)})
			}
			return map[string]int{"steps": in.Steps}, nil
		}),
	}}}
}

// A program's own code submits a delayed request through the App the dev
// server hands it; a client of the same principal (the ready token's
// subject, "dev") finds it queued with status, resumes it and follows it
// to its result, over the WebSocket, on the bolt store and the embedded
// worker. The request does not start before its NotBefore, and another
// principal cannot see it.
func TestSubmitFromProgram(t *testing.T) {
	t.Parallel()
	started := make(chan time.Time, 1)
	secret := []byte("submit-test-secret-0123456789abcdef")
	info := start(t, devserver.Config{DataDir: t.TempDir(), Secret: secret, Plugins: []streamer.Plugin{countdown(started)}})
	require.NotNil(t, info.App)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	notBefore := time.Now().Add(time.Second)
	res, err := info.App.Submit(ctx, streamer.Principal{Subject: "dev"}, "countdown", map[string]int{"steps": 4},
		streamer.SubmitOptions{NotBefore: notBefore, IdempotencyKey: "nightly-1"})
	require.NoError(t, err)
	require.Equal(t, streamer.SubmitResult{ID: "nightly-1", Status: storage.StatusQueued}, res)

	c, err := client.Dial(ctx, info.WebSocketURL, client.Options{Token: info.Token})
	require.NoError(t, err)
	defer c.Close() //nolint:errcheck // test cleanup
	// The client finds the submitted request with list, as a reloaded
	// page would.
	page, err := c.List(ctx, client.ListOptions{})
	require.NoError(t, err)
	require.NotEmpty(t, page.Requests)
	require.Equal(t, res.ID, page.Requests[0].RequestID, "newest first")
	require.Equal(t, "countdown", page.Requests[0].Action)
	st, err := c.Status(ctx, res.ID)
	require.NoError(t, err)
	require.Equal(t, "countdown", st.Action)
	if time.Now().Before(notBefore) {
		require.Equal(t, "queued", st.Status, "not started before NotBefore")
	}

	var seen []float64
	out, err := c.Resume(ctx, res.ID, 0, client.WithProgress(func(p client.Progress) { seen = append(seen, p.Percentage) }))
	require.NoError(t, err)
	require.JSONEq(t, `{"steps":4}`, string(out))
	// Progress is coalesced: the first report and the last are kept.
	require.Equal(t, 25.0, seen[0])
	require.Equal(t, 100.0, seen[len(seen)-1])
	// The bolt store keeps times to the millisecond.
	require.False(t, (<-started).Before(notBefore.Truncate(time.Millisecond)), "started before NotBefore")

	st, err = c.Status(ctx, res.ID)
	require.NoError(t, err)
	require.Equal(t, "succeeded", st.Status)
	require.EqualValues(t, len(seen)+2, st.Seq, "started, the progress events, then complete")

	// Submitting it again finds it, finished.
	again, err := info.App.Submit(ctx, streamer.Principal{Subject: "dev"}, "countdown", map[string]int{"steps": 4},
		streamer.SubmitOptions{IdempotencyKey: "nightly-1"})
	require.NoError(t, err)
	require.Equal(t, streamer.SubmitResult{ID: "nightly-1", Status: storage.StatusSucceeded, Seq: st.Seq, Existing: true}, again)

	// Another principal's client does not see it.
	tok, err := middleware.SignHS256(secret, middleware.Claims{Subject: "mallory", TTL: time.Hour})
	require.NoError(t, err)
	other, err := client.Dial(ctx, info.WebSocketURL, client.Options{Token: tok})
	require.NoError(t, err)
	defer other.Close() //nolint:errcheck // test cleanup
	_, err = other.Status(ctx, res.ID)
	require.Equal(t, streamer.CodeNotFound, client.CodeOf(err), "err %v", err)
}
