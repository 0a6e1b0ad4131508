package awslocal_test

import (
	"context"
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/plugins/demo"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// dialLocal connects a WebSocket client as subject to the local gateway.
func dialLocal(t *testing.T, wsURL, subject string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lambdatest.Wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, wsURL+"?token="+url.QueryEscape(lambdatest.Token(t, subject)), nil) //nolint:bodyclose // coder/websocket closes it
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.CloseNow() })
	c.SetReadLimit(1 << 20)
	return c
}

// A job longer than the processor's timeout spans several invocations: each
// stops before its deadline and hands the request back, and the next
// continues from the last checkpoint. 40 items of 500 ms (20 s of work)
// with a 5 s processor timeout take at least four invocations; no item
// before a checkpoint is done twice, the seqs are contiguous and the
// percentage never goes back.
func TestCheckpointedJobSpansInvocations(t *testing.T) {
	t.Parallel()
	aws, table, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{demo.New()}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		ProcessorTimeout: 5 * time.Second,
	})
	c := dialLocal(t, info.WebSocketURL, "kim")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(`{"action":"checkpointed","id":"cp-1","payload":{"items":40,"item_ms":500}}`)))
	got := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	done := got[len(got)-1]
	var res demo.CheckpointedResult
	require.NoError(t, json.Unmarshal(done.Result, &res))
	require.Equal(t, 40, res.Items)
	require.GreaterOrEqual(t, res.Runs, 4, "20 s of work in invocations of 5 s")

	store, err := dynamodb.New(dynamodb.Config{Client: aws.DB, Table: table})
	require.NoError(t, err)
	key := storage.Key{Subject: "kim", ID: "cp-1"}
	evs, err := store.ReadEvents(ctx, key, 0, 0)
	require.NoError(t, err)
	continued := checkItems(t, evs, 40)
	req, err := store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusSucceeded, req.Status)
	require.Equal(t, req.Continuations, continued, "every run after the first continued from a checkpoint")
	// res.Runs counts the runs that checkpointed an item: on a loaded
	// machine a run may be stopped before its first item, and its count
	// is not saved.
	require.GreaterOrEqual(t, continued, res.Runs-1)
	require.Zero(t, req.Stalls, "deadlines are continuations, not stalls")

	// The client got every event, in order.
	var seq int64
	for _, m := range got[1:] { // after the acknowledgment
		seq++
		require.Equal(t, seq, m.Seq)
	}
	require.Len(t, evs, int(seq))
}

// Past STREAMER_MAX_CONTINUATIONS the request ends with TIMEOUT: a job that
// never finishes within its invocations is not re-queued forever.
func TestContinuationCapEndsWithTimeout(t *testing.T) {
	t.Parallel()
	_, _, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{demo.New()}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		ProcessorTimeout: 2 * time.Second, MaxContinuations: 2,
	})
	c := dialLocal(t, info.WebSocketURL, "lee")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(`{"action":"checkpointed","id":"cap-1","payload":{"items":1000,"item_ms":100}}`)))
	got := lambdatest.ReadUntil(t, c, streamer.TypeError)
	end := got[len(got)-1]
	require.Positive(t, end.Seq, "a terminal error")
	require.Equal(t, streamer.CodeTimeout, end.Error.Code)
	require.Contains(t, end.Error.Message, "continued 3 times")
	var continued int
	for _, m := range got {
		if m.Type == streamer.TypeContinued {
			continued++
		}
	}
	require.Equal(t, 2, continued, "two continuations, then the cap")
}

// checkItems checks a checkpointed job's log: it opens with started, seqs
// are contiguous from 1, the percentage never decreases, and the items are
// as demo.CheckCheckpointed checks them, every one reported. It returns
// the number of continued events.
func checkItems(t *testing.T, evs []storage.Event, n int) int {
	t.Helper()
	require.Equal(t, streamer.TypeStarted, evs[0].Type)
	types, msgs := make([]string, len(evs)), make([]string, len(evs))
	pct := 0.0
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.Seq, "seqs are contiguous")
		require.GreaterOrEqual(t, ev.Percentage, pct, "the percentage never goes back (seq %d)", ev.Seq)
		pct = ev.Percentage
		types[i], msgs[i] = ev.Type, ev.Message
	}
	reported, continued, err := demo.CheckCheckpointed(types, msgs, n)
	require.NoError(t, err)
	require.Equal(t, n, reported, "every item reported")
	return continued
}
