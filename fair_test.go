package streamer_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// One tenant's flood of long jobs does not delay another tenant: the
// embedded worker runs at most KeyConcurrency requests of a tenant at once
// and lets the tenants take turns (finding 1 of the multi-tenant issue:
// 500 long jobs of one principal held every slot).
func TestFairSchedulingAcrossTenants(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var running, maxRunning atomic.Int64
	var quickDone atomic.Bool
	long := streamer.Action{Name: "long", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			n := running.Add(1)
			defer running.Add(-1)
			for {
				m := maxRunning.Load()
				if n <= m || maxRunning.CompareAndSwap(m, n) {
					break
				}
			}
			select {
			case <-release:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})}
	quick := streamer.Action{Name: "quick", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
			quickDone.Store(true)
			return "quick", nil
		})}
	store := memory.New()
	app, err := streamer.New(streamer.Config{Store: store, Sender: transporttest.NewRecorder(),
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{long, quick}}}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = app.Run(ctx, 8) }) // 8 slots: 2 a tenant by default
	t.Cleanup(func() { cancel(); wg.Wait() })

	flood := streamer.Conn{ID: "c-flood", Principal: &streamer.Principal{Subject: "mallory", Tenant: "big"}}
	for i := range 20 {
		frame := `{"action":"long","id":"l` + string(rune('a'+i)) + `"}`
		require.NoError(t, app.HandleMessage(context.Background(), flood, []byte(frame), false))
	}
	require.Eventually(t, func() bool { return running.Load() == 2 }, 10*time.Second, 5*time.Millisecond,
		"the flooding tenant runs its share")

	other := streamer.Conn{ID: "c-other", Principal: &streamer.Principal{Subject: "alice", Tenant: "small"}}
	require.NoError(t, app.HandleMessage(context.Background(), other, []byte(`{"action":"quick","id":"q1"}`), false))
	require.Eventually(t, func() bool {
		r, err := store.GetRequest(context.Background(), storage.Key{Tenant: "small", Subject: "alice", ID: "q1"})
		return err == nil && r.Status == storage.StatusSucceeded
	}, 10*time.Second, 5*time.Millisecond, "another tenant's job runs while the flood waits")
	require.True(t, quickDone.Load())
	require.LessOrEqual(t, maxRunning.Load(), int64(2), "never more than the tenant's share at once")

	close(release) // the flood drains, two at a time
	require.Eventually(t, func() bool {
		for i := range 20 {
			r, err := store.GetRequest(context.Background(), storage.Key{Tenant: "big", Subject: "mallory", ID: "l" + string(rune('a'+i))})
			if err != nil || r.Status != storage.StatusSucceeded {
				return false
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond)
	require.LessOrEqual(t, maxRunning.Load(), int64(2))
}
