package lambdaapp_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/plugins/demo"
)

// plugins is the app's list of plugins, such as plugins.All.
func plugins(context.Context, streamer.Env) ([]streamer.Plugin, error) {
	return []streamer.Plugin{demo.New()}, nil
}

// The main package of another Lambda (here, one run on a schedule) that
// starts a request for a user of the deployed Streamer; the user's clients
// follow it with resume, by the id it returns. Its environment holds the
// Lambdas' STREAMER_TABLE and the STREAMER_ENDPOINT of the WebSocket API.
func ExampleNewSubmitter() {
	app, err := lambdaapp.NewSubmitter(context.Background(), os.Getenv, plugins)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	type nightly struct {
		User string `json:"user"`
	}
	handler := func(ctx context.Context, ev nightly) (string, error) {
		day := time.Now().UTC().Format("2006-01-02")
		res, err := app.Submit(ctx, streamer.Principal{Subject: ev.User}, demo.ActionDelay,
			map[string]int{"ms": 60000, "steps": 60},
			streamer.SubmitOptions{
				NotBefore:      time.Now().Add(10 * time.Minute),
				IdempotencyKey: "nightly-" + day, // a retried invocation finds the same request
			})
		if err != nil {
			return "", err // a *streamer.Error: its Code says why
		}
		return res.ID, nil
	}
	_ = handler // lambda.Start(handler)
}

// The submitter reads the Lambdas' configuration, and needs the Management
// API's URL besides: a submitted request has no connection to take it from.
func ExampleNewSubmitter_configuration() {
	vars := map[string]string{"STREAMER_RETENTION": "forever"}
	getenv := func(k string) string { return vars[k] }
	_, err := lambdaapp.NewSubmitter(context.Background(), getenv, plugins)
	fmt.Println(err)
	// Output:
	// lambdaapp: bad configuration of submitter: STREAMER_TABLE is required: the DynamoDB table's name
	// STREAMER_RETENTION="forever": want a duration such as 24h0m0s
}
