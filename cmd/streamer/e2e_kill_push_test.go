package main_test

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/internal/loadpush"
)

// Issue 13, no lost guarantee: an event is durable before it is sent, so
// kill -9 during a run of many pushing jobs loses nothing a client got.
// 100 jobs report 20 events a second each; the server is killed with
// SIGKILL while they run and restarted on the same data dir; every event
// a client received before the kill is in the replay of its request, with
// the same seq and content, and every request still ends once.
func TestE2EKillDuringPushLosesNoSentEvent(t *testing.T) {
	if os.Getenv("STREAMER_E2E_RUNTIME") == "aws-local" {
		t.Skip("the loadpush action is served by the embedded runtime's --bench only")
	}
	t.Parallel()
	s := startDev(t, "--bench")
	const jobs = 100
	type job struct {
		id, tok string
		r       *rawConn
		mu      sync.Mutex
		got     map[int64]streamer.Message
	}
	js := make([]*job, jobs)
	for i := range js {
		j := &job{id: uid(fmt.Sprintf("kill-%d", i)), tok: token(t, uid("killer"), ""), got: map[int64]streamer.Message{}}
		j.r = dialRaw(t, s, j.tok)
		j.r.request(loadpush.Action, j.id, loadpush.Payload{Rate: 20, DurationMs: 4000})
		js[i] = j
	}
	// One reader per connection, until the connection ends with the
	// server: every event it got, by seq.
	var (
		readers sync.WaitGroup
		total   sync.Map // job id → count, for the wait below
	)
	for _, j := range js {
		readers.Go(func() {
			for {
				_, data, err := j.r.readRaw()
				if err != nil {
					return
				}
				var m streamer.Message
				if json.Unmarshal(data, &m) != nil || m.RequestID != j.id || m.Seq == 0 {
					continue
				}
				j.mu.Lock()
				j.got[m.Seq] = m
				total.Store(j.id, len(j.got))
				j.mu.Unlock()
			}
		})
	}
	// Kill once every job has sent a few events.
	deadline := time.Now().Add(2 * startTimeout)
	for {
		ready := 0
		total.Range(func(_, v any) bool {
			if v.(int) >= 5 {
				ready++
			}
			return true
		})
		if ready == jobs {
			break
		}
		require.True(t, time.Now().Before(deadline), "only %d of %d jobs sent 5 events", ready, jobs)
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	readers.Wait() // each read ends with its connection (or its read timeout)

	ns := s.restart(t)
	received := 0
	for _, j := range js {
		r := dialRaw(t, ns, j.tok)
		r.resume(j.id, 0)
		all := r.collect(j.id, 0)
		stored := map[int64]streamer.Message{}
		for _, m := range all {
			stored[m.Seq] = m
		}
		j.mu.Lock()
		for seq, m := range j.got {
			sm, ok := stored[seq]
			require.True(t, ok, "%s: seq %d was sent before the kill and is not stored: %+v", j.id, seq, m)
			require.Equal(t, m, sm, "%s: seq %d was sent with other content than is stored", j.id, seq)
			received++
		}
		j.mu.Unlock()
		require.True(t, all[len(all)-1].Terminal(), "%s ends with its terminal event", j.id)
	}
	require.GreaterOrEqual(t, received, 5*jobs)
	t.Logf("%d events received before the kill, each stored", received)
}
