package ops_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/ops"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport"
)

// An operator lists the failed requests of the last hour, inspects one,
// and retries it as a new request.
func ExampleOps() {
	store := memory.New()
	plugin := streamer.Plugin{Name: "reports", Actions: []streamer.Action{{
		Name:    "report",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
			return nil, errors.New("the database is down")
		}),
	}}}
	nop := transport.SenderFunc(func(context.Context, string, string, []byte) error { return nil })
	app, err := streamer.New(streamer.Config{Store: store, Sender: nop, Plugins: []streamer.Plugin{plugin}})
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() { _ = app.Run(ctx, 0) }()
	alice := streamer.Principal{Subject: "alice", Tenant: "acme"}
	if _, err := app.Submit(ctx, alice, "report", nil, streamer.SubmitOptions{IdempotencyKey: "r1"}); err != nil {
		panic(err)
	}
	k := storage.Key{Tenant: "acme", Subject: "alice", ID: "r1"}
	for r, _ := store.GetRequest(ctx, k); r.Status != storage.StatusFailed; r, _ = store.GetRequest(ctx, k) {
		time.Sleep(5 * time.Millisecond)
	}

	o := ops.New(store, app)
	page, _ := o.List(ctx, ops.Query{Status: "failed", Within: time.Hour})
	for _, r := range page.Requests {
		fmt.Println(r.Key, r.Action, r.Status, r.Error.Code)
	}
	d, _ := o.Inspect(ctx, k)
	last := d.Events[len(d.Events)-1]
	fmt.Println("attempts:", d.Request.Attempt, "last event:", last.Type)
	res, err := o.Retry(ctx, k)
	fmt.Println("retry:", res.ID, res.Status, err)
	// Output:
	// acme|alice|r1 report failed PROCESSING_FAILED
	// attempts: 1 last event: error
	// retry: r1:retry-1 queued <nil>
}

// A failure-queue message of a job names its request.
func ExampleParseFailure() {
	body := `{"version":"1.0","requestContext":{"condition":"RetriesExhausted","approximateInvokeCount":3},` +
		`"requestPayload":{"streamer_job":{"key":"acme|alice|r1"}},"responsePayload":{"errorMessage":"boom"}}`
	f, err := ops.ParseFailure([]byte(body))
	fmt.Println(f.Key.ID, f.Condition, f.Attempts, f.Error, err)
	// Output: r1 RetriesExhausted 3 boom <nil>
}

func ExampleRetryID() {
	fmt.Println(ops.RetryID("r1"), ops.RetryID("r1:retry-1"))
	// Output: r1:retry-1 r1:retry-2
}
