package awslocal_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
)

// TestTenantLimitsOnAWS: on the AWS path (router and processor Lambdas,
// DynamoDB Local with Streams, no reaper), a principal runs at most
// STREAMER_KEY_CONCURRENCY requests at once while another principal's job
// runs beside them; its requests over the limit wait, parked, and each
// runs when one of its runs ends (woken through the stream, not by a
// reaper); past STREAMER_MAX_PENDING it gets QUOTA_EXCEEDED and nothing is
// stored.
func TestTenantLimitsOnAWS(t *testing.T) {
	t.Parallel()
	holds := newHoldPlugin()
	_, _, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{holds.plugin()}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
		Concurrency: 100, ReapInterval: -1, KeyConcurrency: 2, MaxPending: 5,
	})

	flood := dial(t, info, "flood")
	for i := range 5 {
		send(t, flood, fmt.Sprintf(`{"action":"hold","id":"flood-%d"}`, i))
	}
	holds.waitRunning(t, 2, 3*lambdatest.Wait)
	send(t, flood, `{"action":"hold","id":"flood-over"}`)

	other := dial(t, info, "other")
	send(t, other, `{"action":"hold","id":"other-0"}`)
	holds.waitRunning(t, 3, 3*lambdatest.Wait)

	// The sixth request of the flood is refused, nothing stored.
	var refused *streamer.ErrorBody
	acks := 0
	for refused == nil {
		m := lambdatest.Read(t, flood)
		switch {
		case m.Type == streamer.TypeAcknowledgment:
			acks++
		case m.Type == streamer.TypeError && m.RequestID == "flood-over":
			refused = m.Error
		}
	}
	require.Equal(t, streamer.CodeQuotaExceeded, refused.Code, "%+v", refused)
	var details streamer.QuotaDetails
	require.NoError(t, json.Unmarshal(refused.Details, &details))
	require.Equal(t, streamer.QuotaDetails{Quota: "pending_requests", Limit: 5}, details)
	send(t, flood, `{"action":"status","payload":{"request_id":"flood-over"}}`)
	for {
		m := lambdatest.Read(t, flood)
		if m.RequestID == "flood-over" && m.Seq == 0 {
			require.Equal(t, streamer.TypeError, m.Type)
			require.Equal(t, streamer.CodeNotFound, m.Error.Code, "nothing was stored")
			break
		}
	}
	require.LessOrEqual(t, holds.peak.Load(), int64(3), "the flood ran more than 2 at once")

	// Every held request ends; the three parked ones run as slots free,
	// with no reaper running.
	close(holds.release)
	completed := map[string]bool{}
	deadline := time.Now().Add(6 * lambdatest.Wait)
	for len(completed) < 5 {
		require.True(t, time.Now().Before(deadline), "completed only %v", completed)
		m := lambdatest.Read(t, flood)
		if m.Type == streamer.TypeComplete {
			completed[m.RequestID] = true
		}
	}
	lambdatest.ReadUntil(t, other, streamer.TypeComplete)
	require.LessOrEqual(t, holds.peak.Load(), int64(3), "never more than 2 of the flood and 1 other at once")
	t.Logf("flood acknowledged %d before the refusal; peak running %d", acks, holds.peak.Load())
}

// TestActionConcurrencyOnAWS: an action declaring Concurrency 1 runs one
// request at a time across principals on the AWS path; the second waits,
// parked, and runs when the first ends.
func TestActionConcurrencyOnAWS(t *testing.T) {
	t.Parallel()
	holds := newHoldPlugin()
	p := holds.plugin()
	p.Actions[0].Options.Concurrency = 1 // "hold"
	_, _, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{p}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel),
		Concurrency: 100, ReapInterval: -1,
	})
	a, b := dial(t, info, "ann"), dial(t, info, "bob")
	send(t, a, `{"action":"hold","id":"a-1"}`)
	holds.waitRunning(t, 1, 3*lambdatest.Wait)
	send(t, b, `{"action":"hold","id":"b-1"}`)
	// b-1 is acknowledged and stays queued while a-1 runs.
	for {
		m := lambdatest.Read(t, b)
		if m.Type == streamer.TypeAcknowledgment {
			break
		}
	}
	send(t, b, `{"action":"quick","id":"b-2"}`)
	lambdatest.ReadUntil(t, b, streamer.TypeComplete) // another action is not held back
	close(holds.release)
	lambdatest.ReadUntil(t, a, streamer.TypeComplete)
	for {
		m := lambdatest.Read(t, b)
		if m.Type == streamer.TypeComplete && m.RequestID == "b-1" {
			break
		}
	}
	require.Equal(t, int64(1), holds.peak.Load(), "the action never ran twice at once")
}
