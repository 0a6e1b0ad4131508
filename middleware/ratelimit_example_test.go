package middleware_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/ratelimit/memory"
)

// A global limit of 2 requests at once, then one a second, per principal.
// On Lambda, use ratelimit/dynamodb as the Limiter.
func ExampleRateLimit() {
	limit := middleware.RateLimit(middleware.RateLimitOptions{
		Limiter: memory.New(memory.Options{}),
		Rule:    ratelimit.Rule{Rate: 1, Burst: 2},
		Key:     middleware.ByPrincipal,
	})
	// In an app: streamer.Config{Middleware: []streamer.Middleware{limit}}.
	h := streamer.Chain(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
		return "ok", nil
	}), limit)
	alice := streamer.Principal{Subject: "alice"}
	for range 3 {
		res, err := h.Serve(context.Background(), &streamer.Request{Action: "echo", Principal: alice, Stage: streamer.StageSync}, streamer.Discard)
		var se *streamer.Error
		if errors.As(err, &se) {
			fmt.Println(se.Code, se.Details, se.Retryable)
			continue
		}
		fmt.Println(res)
	}
	// Output:
	// ok
	// ok
	// RATE_LIMITED {1000} true
}
