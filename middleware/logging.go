package middleware

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
)

// Logging writes one line per request that passes through it, after the
// rest of the chain returns, with the attributes request_id, action, stage,
// principal, attempt, duration_ms and, on failure, code, retryable (when
// set) and error. The principal is [streamer.PrincipalHash] of the
// request's: the subject and tenant themselves are never logged. The
// event carries the request's context, for the logger's hooks (the
// Lambdas' adds lambda_request_id and cold_start). Successes log at info level, failures at
// warn. The message is "request"; everything else is attributes. The zero
// logger logs nothing.
//
// The code is what the client will see: the code of an [*streamer.Error],
// TIMEOUT or CANCELED when the context says so, and otherwise
// INTERNAL_ERROR (PROCESSING_FAILED at [streamer.StageProcess]). The error
// text is logged for operators and may hold internals; it is never sent.
func Logging(logger zerolog.Logger) streamer.Middleware {
	return func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			start := time.Now()
			res, err := next.Serve(ctx, req, rep)
			elapsed := time.Since(start)
			ev := logger.Info()
			if err != nil {
				ev = logger.Warn()
			}
			if ev == nil {
				return res, err
			}
			ev = ev.Ctx(ctx).
				Str(streamer.LogRequestID, req.ID).
				Str(streamer.LogAction, req.Action).
				Stringer(streamer.LogStage, req.Stage).
				Str(streamer.LogPrincipal, streamer.PrincipalHash(&req.Principal)).
				Int(streamer.LogAttempt, req.Attempt).
				Float64("duration_ms", float64(elapsed.Microseconds())/1000)
			if err != nil {
				ev = ev.Str("code", codeOf(ctx, req, err)).Err(err)
				var se *streamer.Error
				if errors.As(err, &se) && se.Retryable {
					ev = ev.Bool("retryable", true)
				}
			}
			ev.Msg("request")
			return res, err
		})
	}
}

// codeOf mirrors how the router maps a handler error to a wire code.
func codeOf(ctx context.Context, req *streamer.Request, err error) string {
	var se *streamer.Error
	switch {
	case errors.As(err, &se):
		return se.Code
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		return streamer.CodeTimeout
	case errors.Is(context.Cause(ctx), streamer.ErrCanceled):
		return streamer.CodeCanceled
	case req.Stage == streamer.StageProcess:
		return streamer.CodeProcessingFailed
	default:
		return streamer.CodeInternal
	}
}
