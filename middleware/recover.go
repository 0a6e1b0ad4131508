package middleware

import (
	"context"
	"fmt"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
)

// Recover turns a panic in the rest of the chain into INTERNAL_ERROR with
// the generic message "internal error". The panic value and stack are
// logged at error level with request_id, action and stage; neither is ever
// sent to the client. The zero logger logs nothing.
//
// The router and processor recover panics too; Recover is for logging them
// with your logger, and for placing recovery inside middleware that must
// see the error (declare it after Logging, for one).
func Recover(logger zerolog.Logger) streamer.Middleware {
	return func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (res any, err error) {
			defer func() {
				if p := recover(); p != nil {
					logger.Error().
						Str("request_id", req.ID).
						Str("action", req.Action).
						Stringer("stage", req.Stage).
						Str("panic", fmt.Sprint(p)).
						Bytes("stack", debug.Stack()).
						Msg("handler panicked")
					res, err = nil, streamer.NewError(streamer.CodeInternal, "internal error")
				}
			}()
			return next.Serve(ctx, req, rep)
		})
	}
}
