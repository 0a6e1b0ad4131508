package lambdaapp_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/storage/storagetest"
)

// faultPlugin has "work" (ten progress events, then a result) and
// "retried" (fails its first attempt with a retryable error).
func faultPlugin() streamer.Plugin {
	return streamer.Plugin{Name: "faults", Actions: []streamer.Action{
		{
			Name:    "work",
			Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, rep streamer.Reporter) (any, error) {
				for i := 1; i <= 10; i++ {
					_ = rep.Report(ctx, streamer.Update{Percentage: float64(10 * i), Message: fmt.Sprintf("step %d", i)})
				}
				return "done", ctx.Err()
			}),
		},
		{
			Name: "retried",
			Options: streamer.ActionOptions{Mode: streamer.ModeAsync,
				Retry: streamer.RetryPolicy{MaxAttempts: 3, InitialBackoff: 10 * time.Millisecond, Jitter: -1}},
			Handler: streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
				_ = rep.Report(ctx, streamer.Update{Percentage: 50, Message: "trying"})
				if req.Attempt < 2 {
					return nil, streamer.Retryable(errors.New("transient"))
				}
				return "done", nil
			}),
		},
	}}
}

// TestProcessorStorageFailures fails one DynamoDB call of the processor
// Lambda's handler, which the stream then delivers again as Lambda would.
// Each request still ends in exactly one terminal event within lease plus
// backoff, with contiguous seqs, and both its sender and a subscriber on
// another connection receive it.
func TestProcessorStorageFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, method, action string
		fault                storagetest.Fault
	}{
		{"LastEvent fails at the start of a run", "LastEvent", "work", storagetest.Fault{Calls: []int{1}}},
		{"AppendEvent fails mid-run", "AppendEvent", "work", storagetest.Fault{Calls: []int{2}}},
		{"RequeueRequest fails after a retryable error", "RequeueRequest", "retried", storagetest.Fault{Calls: []int{1}}},
		{"FinishRequest commits and times out", "FinishRequest", "work", storagetest.Fault{Calls: []int{1}, Commit: true}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStack(t, faultPlugin())
			var faulty *storagetest.Faulty
			proc := s.build(lambdaapp.Processor, lambdaapp.Options{
				Lease: time.Second,
				WrapStore: func(st storage.Store) storage.Store {
					faulty = storagetest.NewFaulty(st)
					return faulty
				},
			})
			faulty.Fail(tc.method, tc.fault)

			id := fmt.Sprintf("fault-%d", i)
			sender, senderID := s.open(t, "erin")
			s.send(t, senderID, fmt.Sprintf(`{"action":%q,"id":%q}`, tc.action, id))
			require.Equal(t, streamer.TypeAcknowledgment, lambdatest.Read(t, sender).Type)
			sub, subID := s.open(t, "erin")
			s.send(t, subID, fmt.Sprintf(`{"action":"resume","payload":{"request_id":%q}}`, id))

			_, insert := s.capture(t, isQueuedInsert(id))
			ev := decode(t, insert)
			k, ok, err := lambdaapp.QueuedKey(ev.Records[0])
			require.NoError(t, err)
			require.True(t, ok)

			// Deliver the record until the request is final, as the stream
			// does with a record whose processing failed (and as it does
			// with the MODIFY of a re-queue, which names the same key).
			store, err := dynamodb.New(dynamodb.Config{Client: s.aws.DB, Table: s.table})
			require.NoError(t, err)
			deadline := time.Now().Add(lambdatest.Wait * 3)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				resp, err := proc.Process(ctx, ev)
				cancel()
				require.NoError(t, err)
				r, err := store.GetRequest(context.Background(), k)
				require.NoError(t, err)
				if r.Status.Final() {
					require.Empty(t, resp.BatchItemFailures)
					break
				}
				require.True(t, time.Now().Before(deadline), "request %s still %s", id, r.Status)
				time.Sleep(100 * time.Millisecond)
			}
			require.Positive(t, faulty.Failed(tc.method), "the fault fired")

			evs, err := store.ReadEvents(context.Background(), k, 0, 0)
			require.NoError(t, err)
			for i, e := range evs {
				require.Equal(t, int64(i+1), e.Seq, "seqs are contiguous")
				require.Equal(t, i == len(evs)-1, e.Terminal(), "exactly one terminal event, the last")
			}
			require.Equal(t, streamer.TypeComplete, evs[len(evs)-1].Type)
			for _, c := range []string{"sender", "subscriber"} {
				conn := sender
				if c == "subscriber" {
					conn = sub
				}
				got := lambdatest.ReadUntil(t, conn, streamer.TypeComplete)
				require.Equal(t, evs[len(evs)-1].Seq, got[len(got)-1].Seq, "the %s received the terminal event", c)
			}
		})
	}
}
