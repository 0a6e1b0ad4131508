package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/client"
)

func TestPrintStatusHuman(t *testing.T) {
	now := time.Now()
	var b bytes.Buffer
	printStatusHuman(&b, client.Status{
		RequestID: "r-1", Action: "delay", Status: "running", Seq: 3, Percentage: 30, Message: "step 3/10",
		CreatedAt: now.Add(-5 * time.Second), UpdatedAt: now.Add(-time.Second),
	}, now, " --url ws://x/ws")
	out := b.String()
	require.Contains(t, out, "Request r-1 (delay)")
	require.Contains(t, out, "status:   running  30.0%  step 3/10")
	require.Contains(t, out, "(5s ago)")
	require.Contains(t, out, "follow it with: streamer call --resume r-1 --url ws://x/ws")

	b.Reset()
	printStatusHuman(&b, client.Status{
		RequestID: "r 2", Action: "fail", Status: "failed", Seq: 1,
		Error: &client.Error{Code: "BAD", Message: "no"},
	}, now, "")
	out = b.String()
	require.Contains(t, out, "error:    BAD: no")
	require.NotContains(t, out, "follow it")

	b.Reset()
	printStatusHuman(&b, client.Status{RequestID: "r 3", Status: "succeeded", Chunks: 4}, now, "")
	require.Contains(t, b.String(), "(4 chunks); print it with: streamer call --resume 'r 3'")

	b.Reset()
	printStatusHuman(&b, client.Status{RequestID: "r4", Status: "succeeded", Result: json.RawMessage(`{"a":1}`)}, now, "")
	require.Contains(t, b.String(), `result:   {"a":1}`)
}

func TestPrintActionsHuman(t *testing.T) {
	var b bytes.Buffer
	printActionsHuman(&b, []client.Action{{Name: "delay", Mode: "async"}, {Name: "admin_reset", Mode: "sync", Scopes: []string{"admin", "ops"}}})
	require.Equal(t, "ACTION       MODE   SCOPES\ndelay        async  -\nadmin_reset  sync   admin ops\n\nCall one with: streamer call ACTION '{...payload...}'\n", b.String())
	b.Reset()
	printActionsHuman(&b, nil)
	require.Contains(t, b.String(), "No actions")
}

func TestShellQuote(t *testing.T) {
	require.Equal(t, "ws://127.0.0.1:8080/ws", shellQuote("ws://127.0.0.1:8080/ws"))
	require.Equal(t, "'a b'", shellQuote("a b"))
	require.Equal(t, `'it'\''s'`, shellQuote("it's"))
	require.Equal(t, "''", shellQuote(""))
}

func TestRetryUnavailable(t *testing.T) {
	unavailable := &client.Error{Code: "UNAVAILABLE", Details: json.RawMessage(`{"retry_after_ms":1}`), Retryable: true}
	calls := 0
	err := retryUnavailable(context.Background(), func() error {
		calls++
		if calls < 3 {
			return unavailable
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, 3, calls)

	calls = 0
	err = retryUnavailable(context.Background(), func() error { calls++; return unavailable })
	require.Equal(t, unavailable, err)
	require.Equal(t, unavailableTries, calls, "then it gives up")

	calls = 0
	notFound := &client.Error{Code: "NOT_FOUND"}
	err = retryUnavailable(context.Background(), func() error { calls++; return notFound })
	require.Equal(t, notFound, err)
	require.Equal(t, 1, calls, "other errors are not retried")
}
