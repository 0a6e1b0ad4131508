package main_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
)

// Findings 1 and 5 of the multi-tenant issue, against the real streamer
// dev: one principal floods the server with long jobs. Another tenant's
// short job still runs at once (it waited 17 s before fair scheduling), and
// the flooding principal's 1,001st pending request is refused with
// QUOTA_EXCEEDED before anything is stored (all 10,000 were stored before).
func TestE2ETenantFlood(t *testing.T) {
	if os.Getenv("STREAMER_E2E_RUNTIME") == "aws-local" {
		t.Skip("per-tenant running limits and the pending quota are built for the embedded runtime only (docs/fairness.md)")
	}
	t.Parallel()
	s := startDev(t)
	flood := dialRaw(t, s, token(t, uid("mallory"), "big"))
	const n = 1000 // the default pending quota
	for i := range n {
		flood.request("delay", fmt.Sprintf("flood-%d", i), map[string]int{"ms": 600000, "steps": 1})
	}
	// The flood's runs send started events (and a first step) among the
	// replies: skip them.
	next := func() streamer.Message {
		for {
			m := flood.read()
			if m.Seq == 0 || m.Type == streamer.TypeAcknowledgment {
				return m
			}
		}
	}
	for range n {
		m := next()
		require.Equal(t, streamer.TypeAcknowledgment, m.Type, "%+v", m.Error)
	}
	flood.request("delay", "flood-over", map[string]int{"ms": 1, "steps": 1})
	refused := next()
	require.Equal(t, streamer.TypeError, refused.Type)
	require.Equal(t, "flood-over", refused.RequestID)
	require.Equal(t, streamer.CodeQuotaExceeded, refused.Error.Code)
	require.JSONEq(t, `{"quota":"pending_requests","limit":1000}`, string(refused.Error.Details))
	flood.request(streamer.ActionStatus, "", map[string]any{"request_id": "flood-over"})
	gone := next()
	require.Equal(t, streamer.CodeNotFound, gone.Error.Code, "nothing stored")

	// Another tenant's short job runs while the flood's jobs hold their
	// lane: its result comes long before any flood job could end.
	other := dialRaw(t, s, token(t, uid("alice"), "small"))
	start := time.Now()
	other.ack("delay", "quick", map[string]int{"ms": 100, "steps": 1})
	events := other.collect("quick", 0)
	require.Equal(t, streamer.TypeComplete, events[len(events)-1].Type)
	require.Less(t, time.Since(start), 5*time.Minute, "not behind the flood's ten-minute jobs")
}
