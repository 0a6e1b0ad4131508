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

// An action's Concurrency bounds its runs across every tenant, on top of
// the per-tenant lanes, without holding up other work: a tenant whose
// oldest request waits for the action still runs its other actions, as do
// other tenants, and a waiting request starts as soon as a run of the
// action ends.
func TestActionConcurrencyAcrossTenants(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var running, maxRunning, started atomic.Int64
	heavy := streamer.Action{Name: "heavy", Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Concurrency: 2},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			started.Add(1)
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
			return "quick", nil
		})}
	store := memory.New()
	app, err := streamer.New(streamer.Config{Store: store, Sender: transporttest.NewRecorder(), KeyConcurrency: -1,
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{heavy, quick}}}})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = app.Run(ctx, 8) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	send := func(p *streamer.Principal, action, id string) {
		t.Helper()
		conn := streamer.Conn{ID: "c-" + p.Subject, Principal: p}
		require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(`{"action":"`+action+`","id":"`+id+`"}`), false))
	}
	succeeded := func(p *streamer.Principal, id string) bool {
		r, err := store.GetRequest(context.Background(), storage.Key{Tenant: p.Tenant, Subject: p.Subject, ID: id})
		return err == nil && r.Status == storage.StatusSucceeded
	}
	big := &streamer.Principal{Subject: "mallory", Tenant: "big"}
	small := &streamer.Principal{Subject: "alice", Tenant: "small"}
	heavies := map[*streamer.Principal][]string{big: {"h1", "h2", "h3", "h4"}, small: {"h5", "h6"}}
	for _, id := range heavies[big] {
		send(big, "heavy", id)
	}
	require.Eventually(t, func() bool { return running.Load() == 2 }, 10*time.Second, 5*time.Millisecond)
	send(big, "quick", "q1") // behind big's waiting heavies, in big's lane
	for _, id := range heavies[small] {
		send(small, "heavy", id)
	}
	send(small, "quick", "q2")
	require.Eventually(t, func() bool { return succeeded(big, "q1") && succeeded(small, "q2") }, 10*time.Second, 5*time.Millisecond,
		"a lane whose heavy requests wait runs its quick one, and so does another tenant's")
	require.Equal(t, int64(2), started.Load(), "the other heavies wait: 8 slots and no tenant limit, but Concurrency 2")

	// Each run that ends lets exactly one waiting heavy start, until all ran.
	for n := int64(3); n <= 6; n++ {
		release <- struct{}{}
		require.Eventually(t, func() bool { return started.Load() == n }, 10*time.Second, 5*time.Millisecond,
			"a waiting heavy starts when a run of the action ends")
	}
	close(release)
	require.Eventually(t, func() bool {
		for p, ids := range heavies {
			for _, id := range ids {
				if !succeeded(p, id) {
					return false
				}
			}
		}
		return true
	}, 30*time.Second, 10*time.Millisecond)
	require.LessOrEqual(t, maxRunning.Load(), int64(2), "never more than the action's Concurrency at once")
}
