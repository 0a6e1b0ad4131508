package streamer_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/ratelimit"
	rlmemory "github.com/streamer-go/streamer/ratelimit/memory"
	"github.com/streamer-go/streamer/storage/memory"
)

// stoppedClockLimiter is an in-memory limiter whose clock stands still,
// so the examples' retry_after_ms are exact.
func stoppedClockLimiter() *rlmemory.Limiter {
	t := time.Unix(1_700_000_000, 0)
	return rlmemory.New(rlmemory.Options{Now: func() time.Time { return t }})
}

// The App's rate limit covers every frame a client sends: actions take
// from one bucket, reserved actions such as status and ping from another
// of the same rule. Past the burst, a frame is answered RATE_LIMITED with
// retry_after_ms, before the store is read; a status refusal names the
// request asked about, as every status answer does.
func ExampleConfig_rateLimit() {
	app, err := streamer.New(streamer.Config{
		Store: memory.New(), Sender: printSender,
		// One token an hour, two at once: per principal (the default key).
		RateLimit: streamer.RateLimit{Rule: ratelimit.Rule{Rate: 1, Per: time.Hour, Burst: 2}},
		Limiter:   stoppedClockLimiter(), // nil: in memory, on the real clock
	})
	if err != nil {
		panic(err)
	}
	conn := streamer.Conn{ID: "conn-1", Principal: &streamer.Principal{Subject: "alice"}}
	for _, frame := range []string{
		`{"action":"ping","id":"p1"}`,
		`{"action":"status","payload":{"request_id":"r1"}}`,
		`{"action":"status","payload":{"request_id":"r1"}}`,
	} {
		_ = app.HandleMessage(context.Background(), conn, []byte(frame), false)
	}
	// Output:
	// → conn-1: {"type":"pong","request_id":"p1"}
	// → conn-1: {"type":"error","request_id":"r1","error":{"code":"NOT_FOUND","message":"no request r1"}}
	// → conn-1: {"type":"error","request_id":"r1","error":{"code":"RATE_LIMITED","message":"too many requests; retry later","details":{"retry_after_ms":3600000},"retryable":true}}
}

// An action declares its own rate limit: here two calls an hour for the
// whole action, whoever calls it (RateKeyGlobal). The refusal comes before
// the payload is validated or the handler runs.
func ExampleActionOptions_rateLimit() {
	geocode := streamer.Action{
		Name: "geocode",
		Options: streamer.ActionOptions{
			Mode:      streamer.ModeSync,
			RateLimit: streamer.RateLimit{Rule: ratelimit.Rule{Rate: 2, Per: time.Hour}, Key: streamer.RateKeyGlobal},
		},
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
			return "somewhere", nil
		}),
	}
	app, err := streamer.New(streamer.Config{Store: memory.New(), Sender: printSender, Limiter: stoppedClockLimiter(),
		Plugins: []streamer.Plugin{{Name: "maps", Actions: []streamer.Action{geocode}}}})
	if err != nil {
		panic(err)
	}
	alice := streamer.Conn{ID: "alice-1", Principal: &streamer.Principal{Subject: "alice"}}
	bob := streamer.Conn{ID: "bob-1", Principal: &streamer.Principal{Subject: "bob"}}
	_ = app.HandleMessage(context.Background(), alice, []byte(`{"action":"geocode","id":"g1"}`), false)
	_ = app.HandleMessage(context.Background(), bob, []byte(`{"action":"geocode","id":"g2"}`), false)
	_ = app.HandleMessage(context.Background(), bob, []byte(`{"action":"geocode","id":"g3"}`), false)
	// Output:
	// → alice-1: {"type":"response","request_id":"g1","success":true,"data":"somewhere"}
	// → bob-1: {"type":"response","request_id":"g2","success":true,"data":"somewhere"}
	// → bob-1: {"type":"error","request_id":"g3","error":{"code":"RATE_LIMITED","message":"too many requests; retry later","details":{"retry_after_ms":1800000},"retryable":true}}
}

// An action's Concurrency bounds how many of its requests the embedded
// worker runs at once, whichever tenants sent them; the others wait
// queued and start as runs end.
func ExampleActionOptions_concurrency() {
	var running, most atomic.Int64
	var wg sync.WaitGroup
	release := make(chan struct{})
	render := streamer.Action{
		Name:    "render",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Concurrency: 2},
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
			defer wg.Done()
			n := running.Add(1)
			defer running.Add(-1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			<-release
			return "rendered", nil
		}),
	}
	app, err := streamer.New(streamer.Config{Store: memory.New(), Sender: printSender,
		Plugins: []streamer.Plugin{{Name: "video", Actions: []streamer.Action{render}}}})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { defer close(ran); _ = app.Run(ctx, 16) }()
	for i, tenant := range []string{"a", "a", "b", "b", "c", "c"} {
		wg.Add(1)
		p := streamer.Principal{Subject: "user", Tenant: tenant}
		if _, err := app.Submit(ctx, p, "render", nil, streamer.SubmitOptions{IdempotencyKey: fmt.Sprint("r", i)}); err != nil {
			panic(err)
		}
	}
	for running.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	fmt.Println("running:", running.Load(), "of 6")
	close(release)
	wg.Wait()
	stop()
	<-ran
	fmt.Println("most at once:", most.Load())
	// Output:
	// running: 2 of 6
	// most at once: 2
}
