package middleware

import (
	"context"
	"errors"
	"time"

	"github.com/streamer-go/streamer"
)

// Timeout runs the rest of the chain under a context that expires after d.
// When the chain returns an error because that deadline (or an earlier one
// of the caller) passed, the error becomes TIMEOUT, keeping the original as
// its cause; an [*streamer.Error] the chain chose is kept as is.
//
// Timeout does not abandon the handler: it waits for it to return, so the
// handler must honour ctx. A handler that finishes successfully after the
// deadline keeps its result. d <= 0 means no timeout: the middleware passes
// requests through.
func Timeout(d time.Duration) streamer.Middleware {
	return func(next streamer.Handler) streamer.Handler {
		if d <= 0 {
			return next
		}
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			tctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			res, err := next.Serve(tctx, req, rep)
			if err == nil {
				return res, nil
			}
			var se *streamer.Error
			if errors.As(err, &se) {
				return res, err
			}
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(tctx.Err(), context.DeadlineExceeded) {
				return nil, streamer.NewError(streamer.CodeTimeout, "the handler ran past its deadline").WithCause(err)
			}
			return res, err
		})
	}
}
