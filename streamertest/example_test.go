package streamertest_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/streamertest"
)

// CountIn is the payload of the example "count" action.
type CountIn struct {
	To int `json:"to" validate:"required,min=1,max=100"`
}

// CountOut is its result.
type CountOut struct {
	Counted int `json:"counted"`
}

func count(ctx context.Context, in CountIn, rep streamer.Reporter) (CountOut, error) {
	for i := 1; i <= in.To; i++ {
		if err := rep.Report(ctx, streamer.Update{Percentage: float64(100 * i / in.To), Message: fmt.Sprint(i)}); err != nil {
			return CountOut{}, err // canceled or timed out
		}
	}
	if in.To > 50 {
		return CountOut{}, streamer.NewError("TOO_MANY", "count to 50 at most")
	}
	return CountOut{Counted: in.To}, nil
}

// counter is the plugin under test.
func counter() streamer.Plugin {
	return streamer.Plugin{Name: "counter", Actions: []streamer.Action{{
		Name: "count", Handler: streamer.Typed(count),
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
	}}}
}

// An async action runs through the router and the processor; the outcome
// holds its progress events and result as the client received them.
func ExampleRunPlugin() {
	out, err := streamertest.RunPlugin(context.Background(), counter(), "count", CountIn{To: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Mode, "seq", out.Seq)
	for _, u := range out.Progress {
		fmt.Printf("%g%% %s\n", u.Percentage, u.Message)
	}
	res, err := streamertest.DecodeResult[CountOut](out)
	fmt.Println(res.Counted, err)
	// Output:
	// async seq 5
	// 33% 1
	// 66% 2
	// 100% 3
	// 3 <nil>
}

// Run takes one action; WithMode runs it sync instead.
func ExampleRun() {
	action := counter().Actions[0]
	out, err := streamertest.Run(context.Background(), action, CountIn{To: 2}, streamertest.WithMode(streamer.ModeSync))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Mode, len(out.Progress), string(out.Result))
	// Output:
	// sync 2 {"counted":2}
}

// RunHandler takes a bare handler.
func ExampleRunHandler() {
	echo := streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
		return map[string]string{"from": req.Principal.Subject, "trace": req.Metadata["trace"]}, nil
	})
	out, err := streamertest.RunHandler(context.Background(), echo, nil,
		streamertest.WithPrincipal(streamer.Principal{Subject: "ada"}),
		streamertest.WithMetadata(map[string]string{"trace": "t-1"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(out.Result))
	// Output:
	// {"from":"ada","trace":"t-1"}
}

// A payload that fails validation is refused before anything runs, with
// the field errors the client gets.
func ExampleOutcome_FieldErrors() {
	out, err := streamertest.RunPlugin(context.Background(), counter(), "count", CountIn{To: 0})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Code(), out.Mode)
	for _, fe := range out.FieldErrors() {
		fmt.Println(fe.Field, fe.Rule)
	}
	// Output:
	// VALIDATION_ERROR auto
	// to required
}

// A handler's own error code reaches the client as is.
func ExampleOutcome_Code() {
	out, err := streamertest.RunPlugin(context.Background(), counter(), "count", CountIn{To: 60})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Code(), out.Err.Message, len(out.Progress))
	// Output:
	// TOO_MANY count to 50 at most 60
}

// WithCancelAfter has the client cancel once it has received some progress
// events; the request ends CANCELED.
func ExampleWithCancelAfter() {
	out, err := streamertest.RunPlugin(context.Background(), counter(), "count", CountIn{To: 10},
		streamertest.WithCancelAfter(2))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Code(), len(out.Progress))
	// Output:
	// CANCELED 2
}

// WithTimeout bounds the handler; past it, the client gets TIMEOUT.
func ExampleWithTimeout() {
	wait := streamer.Action{Name: "wait", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})}
	out, err := streamertest.Run(context.Background(), wait, nil, streamertest.WithTimeout(10*time.Millisecond))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Code())
	// Output:
	// TIMEOUT
}

// Start returns at once; Cancel sends the client's cancel whenever the test
// wants, here while the handler waits.
func ExampleStart() {
	started := make(chan struct{})
	wait := streamer.Action{Name: "wait", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		})}
	ctx := context.Background()
	run, err := streamertest.Start(ctx, streamer.Plugin{Name: "p", Actions: []streamer.Action{wait}}, "wait", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	<-started
	if err := run.Cancel(ctx); err != nil {
		fmt.Println(err)
	}
	out, err := run.Wait()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Code(), out.Seq)
	// Output:
	// CANCELED 2
}

// A retryable error re-queues the request with backoff; the kit jumps the
// App's clock over the delay, so the retries run at once.
func Example_retry() {
	flaky := streamer.Action{Name: "flaky", Options: streamer.ActionOptions{Mode: streamer.ModeAsync,
		Retry: streamer.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Minute}},
		Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
			if req.Attempt < 3 {
				return nil, streamer.Retryable(errors.New("upstream unavailable"))
			}
			return "ok", nil
		})}
	out, err := streamertest.Run(context.Background(), flaky, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(out.Attempts, string(out.Result))
	// Output:
	// 3 "ok"
}
