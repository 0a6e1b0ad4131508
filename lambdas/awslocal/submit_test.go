package awslocal_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/storage"
)

// stampPlugin's async action reports two steps and records when each run
// started, by request id.
type stampPlugin struct {
	mu      sync.Mutex
	started map[string][]time.Time
}

func (p *stampPlugin) plugin() streamer.Plugin {
	return streamer.Plugin{Name: "stamp", Actions: []streamer.Action{{
		Name:    "stamp",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			p.mu.Lock()
			p.started[req.ID] = append(p.started[req.ID], time.Now())
			p.mu.Unlock()
			_ = rep.Report(ctx, streamer.Update{Percentage: 50, Message: "half"})
			return map[string]string{"for": req.Principal.Subject, "id": req.ID}, nil
		}),
	}}}
}

func (p *stampPlugin) starts(id string) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.started[id]...)
}

// job is one invocation of the processor function: its payload and
// deadline.
type job struct {
	payload  string
	deadline time.Time
}

// Backend code submits a delayed request to the AWS path with the
// submitter built from the Lambdas' configuration (lambdaapp.NewSubmitter,
// on the same DynamoDB Local table); the table's stream dispatches it to
// the processor, whose jobs wait for it, each handing it on to a new
// invocation when it is not due before its deadline (a 5 s processor
// timeout here), and run it once due. A client of the principal resumes it
// over the gateway and follows it to its result.
func TestSubmitFromBackend(t *testing.T) {
	t.Parallel()
	stamps := &stampPlugin{started: map[string][]time.Time{}}
	var (
		mu   sync.Mutex
		jobs []job
	)
	const timeout = 5 * time.Second
	_, table, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{stamps.plugin()}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		ProcessorTimeout: timeout,
		WrapJob: func(next awslocal.LambdaHandler) awslocal.LambdaHandler {
			return func(ctx context.Context, payload []byte) ([]byte, error) {
				dl, _ := ctx.Deadline()
				mu.Lock()
				jobs = append(jobs, job{string(payload), dl})
				mu.Unlock()
				return next(ctx, payload)
			}
		},
	})
	vars := map[string]string{
		lambdaapp.EnvTable: table, lambdaapp.EnvEndpoint: info.ManagementURL, lambdaapp.EnvLogLevel: "warn",
	}
	plugins := func(context.Context, streamer.Env) ([]streamer.Plugin, error) {
		return []streamer.Plugin{stamps.plugin()}, nil
	}
	// The AWS configuration (DynamoDB Local's endpoint, region and
	// credentials) comes from the environment, as in a Lambda.
	sub, err := lambdaapp.NewSubmitter(context.Background(), func(k string) string { return vars[k] }, plugins)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 4*lambdatest.Wait)
	defer cancel()
	vic := streamer.Principal{Subject: "vic"}
	notBefore := time.Now().Add(6 * time.Second)
	res, err := sub.Submit(ctx, vic, "stamp", map[string]int{"n": 1}, streamer.SubmitOptions{NotBefore: notBefore, IdempotencyKey: "backend-1"})
	require.NoError(t, err)
	require.Equal(t, streamer.SubmitResult{ID: "backend-1", Status: storage.StatusQueued}, res)

	// Idempotent: the same key and payload find it; another payload is
	// refused.
	again, err := sub.Submit(ctx, vic, "stamp", map[string]int{"n": 1}, streamer.SubmitOptions{IdempotencyKey: "backend-1"})
	require.NoError(t, err)
	require.True(t, again.Existing)
	_, err = sub.Submit(ctx, vic, "stamp", map[string]int{"n": 2}, streamer.SubmitOptions{IdempotencyKey: "backend-1"})
	require.Equal(t, streamer.CodeConflict, streamer.CodeOf(err), "err %v", err)
	_, err = sub.Submit(ctx, vic, "nope", nil, streamer.SubmitOptions{})
	require.Equal(t, streamer.CodeInvalidAction, streamer.CodeOf(err), "err %v", err)

	c, err := client.Dial(ctx, info.WebSocketURL, client.Options{Token: lambdatest.Token(t, "vic")})
	require.NoError(t, err)
	defer c.Close() //nolint:errcheck // test cleanup
	// The client finds the submitted request with list.
	page, err := c.List(ctx, client.ListOptions{})
	require.NoError(t, err)
	require.Len(t, page.Requests, 1)
	require.Equal(t, res.ID, page.Requests[0].RequestID)
	require.Equal(t, "stamp", page.Requests[0].Action)
	st, err := c.Status(ctx, res.ID)
	require.NoError(t, err)
	if time.Now().Before(notBefore) {
		require.Equal(t, "queued", st.Status, "not started before NotBefore")
	}
	var seen []client.Progress
	out, err := c.Resume(ctx, res.ID, 0, client.WithProgress(func(p client.Progress) { seen = append(seen, p) }))
	require.NoError(t, err)
	require.JSONEq(t, `{"for":"vic","id":"backend-1"}`, string(out))
	require.Len(t, seen, 1)
	require.Equal(t, "half", seen[0].Message)

	starts := stamps.starts(res.ID)
	require.Len(t, starts, 1, "run once")
	// DynamoDB keeps times to the millisecond.
	require.False(t, starts[0].Before(notBefore.Truncate(time.Millisecond)), "started %v before NotBefore %v", starts[0], notBefore)

	// The jobs of the request: the first, when it could not wait until
	// NotBefore within its deadline (less the stop margin), handed it on
	// to another. (A resume of the queued request dispatches none: the
	// subscription leaves it queued the same, see dynamodb.NewlyQueued.)
	mu.Lock()
	var mine []job
	for _, j := range jobs {
		if strings.Contains(j.payload, res.ID) {
			mine = append(mine, j)
		}
	}
	mu.Unlock()
	require.NotEmpty(t, mine)
	for _, j := range mine {
		t.Logf("job with deadline %s (NotBefore %s)", j.deadline.Format(time.StampMilli), notBefore.Format(time.StampMilli))
	}
	if handOff := mine[0].deadline.Add(-streamer.StopMargin); handOff.Before(notBefore) {
		later := false
		for _, j := range mine[1:] {
			later = later || !j.deadline.Add(-timeout).Before(handOff)
		}
		require.True(t, later, "the first job could not wait: it hands the request on to a job started at %v", handOff)
	}

	st, err = c.Status(ctx, res.ID)
	require.NoError(t, err)
	require.Equal(t, "succeeded", st.Status)
	require.EqualValues(t, 3, st.Seq, "started, progress, complete")

	// The runtime's own App (devserver.Info.App) submits the same way.
	now, err := info.App.Submit(ctx, vic, "stamp", nil, streamer.SubmitOptions{})
	require.NoError(t, err)
	out, err = c.Resume(ctx, now.ID, 0)
	require.NoError(t, err)
	require.JSONEq(t, fmt.Sprintf(`{"for":"vic","id":%q}`, now.ID), string(out))
}
