package awslocal_test

import (
	"context"
	"errors"
	"net"
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
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// runLocal serves the AWS path on a fresh table until the test ends, with
// short settings: the reaper every 200 ms, a stall timeout and a lease of
// a second, at most one stall.
func runLocal(t *testing.T) (*lambdatest.AWS, string, devserver.Info) {
	t.Helper()
	return startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{demo.New()}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		ReapInterval: 200 * time.Millisecond, StallTimeout: time.Second, MaxStalls: 1, Lease: time.Second,
	})
}

// startLocal runs awslocal.Run with cfg on DynamoDB Local, a fresh table
// and a loopback listener (which it fills in, with the secret) until the
// test ends, and returns once it is ready.
func startLocal(t *testing.T, cfg awslocal.Config) (*lambdatest.AWS, string, devserver.Info) {
	t.Helper()
	local := lambdatest.DynamoDBLocal(t)
	table := local.Table(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.Listener, cfg.DynamoDBEndpoint, cfg.Table, cfg.Secret = ln, local.Endpoint, table, []byte(lambdatest.Secret)
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan devserver.Info, 1)
	done := make(chan error, 1)
	cfg.Ready = func(info devserver.Info) { ready <- info }
	go func() { done <- awslocal.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(2 * lambdatest.Wait):
			t.Error("awslocal.Run did not return")
		}
	})
	select {
	case info := <-ready:
		return local, table, info
	case err := <-done:
		t.Fatalf("awslocal.Run: %v", err)
	case <-time.After(2 * lambdatest.Wait):
		t.Fatal("awslocal.Run did not get ready")
	}
	return nil, "", devserver.Info{}
}

// A request whose processor died holding it (stored as claimed, with a
// lease that runs out and no stream record the processor's filter passes)
// is reaped by the runtime's periodic reaper: re-queued, delivered by the
// poller, run, and its one terminal event reaches the client that sent it.
// Without the reaper (ReapInterval -1) nothing would ever run it again.
func TestRunReapsCrashedRun(t *testing.T) {
	t.Parallel()
	aws, table, info := runLocal(t)
	ctx := context.Background()
	store, err := dynamodb.New(dynamodb.Config{Client: aws.DB, Table: table})
	require.NoError(t, err)

	dctx, cancel := context.WithTimeout(ctx, lambdatest.Wait)
	defer cancel()
	c, _, err := websocket.Dial(dctx, info.WebSocketURL+"?token="+url.QueryEscape(lambdatest.Token(t, "vic")), nil) //nolint:bodyclose // coder/websocket closes it
	require.NoError(t, err)
	defer func() { _ = c.CloseNow() }()

	// A request run normally gives the connection's stored identity.
	require.NoError(t, c.Write(dctx, websocket.MessageText, []byte(`{"action":"delay","id":"warm-1","payload":{"ms":10,"steps":1}}`)))
	lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	warm, err := store.GetRequest(ctx, storage.Key{Subject: "vic", ID: "warm-1"})
	require.NoError(t, err)

	// The same connection's next request, as a processor left it when it
	// died just after its claim.
	now := time.Now()
	key := storage.Key{Subject: "vic", ID: "crash-1"}
	require.NoError(t, store.CreateRequest(ctx, storage.Request{
		Key: key, Action: "delay", Payload: []byte(`{"ms":50,"steps":2}`), Fingerprint: "crash-1",
		Principal: warm.Principal, ConnectionID: warm.ConnectionID, Endpoint: warm.Endpoint,
		Status: storage.StatusRunning, Attempt: 1, LeaseUntil: now.Add(time.Second),
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour),
	}))

	got := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	var seq int64
	for _, m := range got {
		require.Equal(t, "crash-1", m.RequestID)
		seq++
		require.Equal(t, seq, m.Seq, "contiguous seqs from 1")
	}
	evs, err := store.ReadEvents(ctx, key, 0, 0)
	require.NoError(t, err)
	require.Len(t, evs, len(got), "the client got every event")
	req, err := store.GetRequest(ctx, key)
	require.NoError(t, err)
	require.Equal(t, storage.StatusSucceeded, req.Status)
	require.Equal(t, 1, req.Stalls)

	// Nothing else comes: one terminal event.
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	_, data, err := c.Read(rctx)
	require.True(t, errors.Is(err, context.DeadlineExceeded), "unexpected message %s (%v)", data, err)
}
