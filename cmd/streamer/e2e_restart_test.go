package main_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

// Section 3, delivery: events are stored, so a crash of the server loses
// nothing. The server is killed with SIGKILL mid-job and restarted on the
// same address and data dir; a raw client resumes after the last seq it saw
// and the Go client reconnects by itself.
func TestE2ERestartMidJob(t *testing.T) {
	t.Parallel()
	s := startDev(t)
	tok := token(t, uid("restart"), "")

	// A raw connection runs one job.
	r := dialRaw(t, s, tok)
	rawID := uid("restart-raw")
	r.ack("delay", rawID, map[string]int{"ms": 3000, "steps": 30})

	// The Go client runs another.
	c := dialClient(t, s, tok)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the cancel of ctx, which ends the request
	ctx := testCtx(t, 60*time.Second)
	progress := make(chan client.Progress, 100)
	type outcome struct {
		res json.RawMessage
		err error
	}
	done := make(chan outcome, 1)
	wg.Go(func() {
		res, err := c.Request(ctx, "delay", map[string]int{"ms": 3000, "steps": 30},
			client.WithProgress(func(p client.Progress) { progress <- p }))
		done <- outcome{res, err}
	})

	var seen []streamer.Message
	for n := 0; n < 5; {
		m := r.readFor(rawID)
		require.True(t, m.Type == streamer.TypeProgress || m.Lifecycle(), "%+v", m)
		if m.Type == streamer.TypeProgress {
			n++
		}
		seen = append(seen, m)
	}
	var goSeen []client.Progress
	for len(goSeen) < 3 {
		select {
		case p := <-progress:
			goSeen = append(goSeen, p)
		case o := <-done:
			t.Fatalf("the Go client's request ended before the crash: %s %v", o.res, o.err)
		case <-ctx.Done():
			t.Fatal("no progress on the Go client before the deadline")
		}
	}

	s.kill()
	// Events sent before the crash may still be buffered: they count as
	// seen. Then the connection ends with the server.
	for {
		typ, data, err := r.readRaw()
		if err != nil {
			break
		}
		require.Equal(t, websocket.MessageText, typ)
		var m streamer.Message
		require.NoError(t, json.Unmarshal(data, &m))
		require.Equal(t, rawID, m.RequestID, "%s", data)
		require.False(t, m.Terminal(), "the job ended before the crash: %s", data)
		seen = append(seen, m)
	}
	ns := s.restart(t)

	r2 := dialRaw(t, ns, tok)
	last := seen[len(seen)-1].Seq
	r2.resume(rawID, last)
	all := append(slices.Clone(seen), r2.collect(rawID, last)...)
	checkStream(t, all, 1) // contiguous, one terminal, percentage never decreases
	end := all[len(all)-1]
	require.Equal(t, streamer.TypeComplete, end.Type, "%+v", end.Error)
	require.JSONEq(t, `{"steps":30,"ms":3000}`, string(end.Result))
	require.Empty(t, r2.ping())

	st := r2.status(rawID)
	require.Equal(t, "succeeded", st.Status)
	require.Equal(t, end.Seq, st.Seq)

	var o outcome
	select {
	case o = <-done:
	case <-ctx.Done():
		t.Fatal("the Go client's request did not finish after the restart")
	}
	require.NoError(t, o.err)
	require.JSONEq(t, `{"steps":30,"ms":3000}`, string(o.res))
	close(progress)
	for p := range progress {
		goSeen = append(goSeen, p)
	}
	pct := -1.0
	prev := int64(0)
	for _, p := range goSeen {
		// Lifecycle events (started, and started again after the restart)
		// take seqs between progress events.
		require.Greater(t, p.Seq, prev, "the Go client reports each seq once, in order")
		prev = p.Seq
		require.GreaterOrEqual(t, p.Percentage, pct, "percentage decreased at seq %d", p.Seq)
		pct = p.Percentage
	}
	require.NotEmpty(t, goSeen)
	require.InDelta(t, 100, goSeen[len(goSeen)-1].Percentage, 1e-9, fmt.Sprintf("last progress %+v", goSeen[len(goSeen)-1]))
}
