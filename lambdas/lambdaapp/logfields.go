package lambdaapp

import (
	"context"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/rs/zerolog"
)

// Log fields the Lambdas add to every line logged with an invocation's
// context (the lines about a request: streamer's request fields, the
// Logging middleware's, the handlers' own).
const (
	// LogLambdaRequestID is the Lambda invocation's request id
	// (lambdacontext.LambdaContext.AwsRequestID).
	LogLambdaRequestID = "lambda_request_id"
	// LogColdStart is true on the lines of the first invocation of an
	// instance of the function, false after.
	LogColdStart = "cold_start"
)

// coldKey holds, in an invocation's context, whether it is its
// instance's first.
type coldKey struct{}

// invocation marks ctx as an invocation of h's function: cold when it is
// the first of this instance. A context marked already (Handle calling
// Run) is returned as it is.
func (h *Handlers) invocation(ctx context.Context) context.Context {
	if _, ok := ctx.Value(coldKey{}).(bool); ok {
		return ctx
	}
	return context.WithValue(ctx, coldKey{}, h.invoked.CompareAndSwap(false, true))
}

// lambdaHook adds lambda_request_id and cold_start to events that carry
// an invocation's context (zerolog's Event.Ctx, or a logger's
// Context.Ctx).
type lambdaHook struct{}

// Run implements zerolog.Hook.
func (lambdaHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	ctx := e.GetCtx()
	if ctx == nil {
		return
	}
	if lc, ok := lambdacontext.FromContext(ctx); ok && lc.AwsRequestID != "" {
		e.Str(LogLambdaRequestID, lc.AwsRequestID)
	}
	if cold, ok := ctx.Value(coldKey{}).(bool); ok {
		e.Bool(LogColdStart, cold)
	}
}
