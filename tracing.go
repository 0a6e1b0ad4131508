package streamer

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamer-go/streamer/storage"
)

// TracerName is the instrumentation scope of the spans Streamer records
// (see Config.Tracer and docs/tracing.md).
const TracerName = "github.com/streamer-go/streamer"

// Span names. An async request is one trace: SpanAdmit is its root (or a
// child of the client's traceparent, see Config.TrustClientTrace), and the
// processor's spans (SpanClaim, SpanRun and SpanRetry, and SpanAppend,
// SpanPost and SpanFinish below SpanRun) are its children, however many
// processes and Lambda invocations the request crosses: the admission's
// trace context is stored with the request (storage.Request.TraceParent).
const (
	// SpanConnect is $connect: the token's check and the stored connection.
	SpanConnect = "streamer.connect"
	// SpanSync is one sync request: its middleware, checks and handler.
	SpanSync = "streamer.sync"
	// SpanAdmit is the admission of an async request: its middleware,
	// checks and the stored request.
	SpanAdmit = "streamer.admit"
	// SpanClaim is a processor's claim of a queued request.
	SpanClaim = "streamer.claim"
	// SpanRun is one run of a claimed request: its handler, its events and
	// how the run ends (a terminal event, a retry or a hand-back).
	SpanRun = "streamer.run"
	// SpanAppend is the store of one non-terminal event.
	SpanAppend = "streamer.append"
	// SpanPost is the send of one event to one connection.
	SpanPost = "streamer.post"
	// SpanRetry is a failed attempt re-queued to run again.
	SpanRetry = "streamer.retry"
	// SpanFinish is the store of the terminal event.
	SpanFinish = "streamer.finish"
)

// tracing is the App's tracer, nil when tracing is off. Every helper
// below returns at once (allocating nothing) when it is nil.
type tracing struct {
	tracer      trace.Tracer
	trustClient bool
}

func newTracing(cfg *Config) *tracing {
	if cfg.Tracer == nil {
		return nil
	}
	return &tracing{tracer: cfg.Tracer.Tracer(TracerName), trustClient: cfg.TrustClientTrace}
}

// startSpan starts a span named name under ctx's span, or returns ctx and
// a nil span when tracing is off.
func (a *App) startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	if a.tracing == nil {
		return ctx, nil
	}
	return a.tracing.tracer.Start(ctx, name)
}

// startClientSpan is startSpan for a client's frame: its parent is the
// frame's metadata traceparent when Config.TrustClientTrace allows it.
func (a *App) startClientSpan(ctx context.Context, name string, metadata map[string]string) (context.Context, trace.Span) {
	if a.tracing == nil {
		return ctx, nil
	}
	if a.tracing.trustClient && metadata["traceparent"] != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(metadata))
	}
	return a.tracing.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindServer))
}

// endSpan ends sp (nil: tracing is off), marking it failed with err.
func endSpan(sp trace.Span, err error) {
	if sp == nil {
		return
	}
	if err != nil {
		sp.RecordError(err)
		sp.SetStatus(codes.Error, err.Error())
	}
	sp.End()
}

// spanAttrs sets the request's attributes on sp (nil: off).
func spanAttrs(sp trace.Span, id, action string) {
	if sp == nil || !sp.IsRecording() {
		return
	}
	sp.SetAttributes(attribute.String("streamer.request_id", id), attribute.String("streamer.action", action))
}

// traceParent is the W3C traceparent of ctx's span, "" when tracing is
// off or ctx has no valid span.
func (a *App) traceParent(ctx context.Context) string {
	if a.tracing == nil {
		return ""
	}
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// startProcess records the claim of r, which started at claimed, and
// starts the run's span, both children of the admission's stored trace
// context. It returns ctx and rctx carrying the run's span, which the
// caller ends; a nil span when tracing is off.
func (a *App) startProcess(ctx, rctx context.Context, r storage.Request, claimed time.Time) (context.Context, context.Context, trace.Span) {
	if a.tracing == nil {
		return ctx, rctx, nil
	}
	parent := a.continueTrace(ctx, r)
	_, claim := a.tracing.tracer.Start(parent, SpanClaim, trace.WithTimestamp(claimed))
	spanAttrs(claim, r.Key.ID, r.Action)
	if claim.IsRecording() {
		claim.SetAttributes(attribute.Int("streamer.attempt", r.Attempt))
	}
	claim.End()
	_, run := a.tracing.tracer.Start(parent, SpanRun, trace.WithSpanKind(trace.SpanKindConsumer))
	spanAttrs(run, r.Key.ID, r.Action)
	return trace.ContextWithSpan(ctx, run), trace.ContextWithSpan(rctx, run), run
}

// continueTrace returns ctx under r's stored trace context, so that the
// spans of a write outside a run (a terminal event sent again, a cancel
// of a request no processor runs) join the request's trace; ctx as it is
// when tracing is off or r has none.
func (a *App) continueTrace(ctx context.Context, r storage.Request) context.Context {
	if a.tracing == nil || r.TraceParent == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": r.TraceParent})
}

// spanEvent sets an event's seq and type on sp (nil: off).
func spanEvent(sp trace.Span, seq int64, typ string) {
	if sp == nil || !sp.IsRecording() {
		return
	}
	sp.SetAttributes(attribute.Int64("streamer.seq", seq), attribute.String("streamer.event", typ))
}

// spanConn sets the connection id on sp (nil: off).
func spanConn(sp trace.Span, connID string) {
	if sp == nil || !sp.IsRecording() {
		return
	}
	sp.SetAttributes(attribute.String("streamer.connection_id", connID))
}

// spanStart is the real time a span that is started later began at; zero
// when tracing is off.
func (a *App) spanStart() time.Time {
	if a.tracing == nil {
		return time.Time{}
	}
	return time.Now()
}
