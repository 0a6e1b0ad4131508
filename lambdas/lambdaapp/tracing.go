package lambdaapp

import (
	"context"
	"fmt"
	"os"
	"sync"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing modes of STREAMER_TRACING.
const (
	// TracingOff records no span (the default).
	TracingOff = "off"
	// TracingOTLP exports spans with OTLP over HTTP, configured by the
	// standard OTEL_EXPORTER_OTLP_* variables: by default to
	// localhost:4318, the collector of the AWS Distro for OpenTelemetry
	// (ADOT) Lambda layer, which forwards them to X-Ray or elsewhere
	// (docs/tracing.md).
	TracingOTLP = "otlp"
)

// DefaultOTLPEndpoint is where STREAMER_TRACING=otlp sends spans, over
// plain HTTP, when neither OTEL_EXPORTER_OTLP_ENDPOINT nor
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set: the collector of the ADOT
// Lambda layer.
const DefaultOTLPEndpoint = "localhost:4318"

// maxBufferedSpans is how many ended spans an invocation keeps before it
// exports them early; the rest go at the end of the invocation.
const maxBufferedSpans = 512

// newTracerProvider builds the provider of cfg.Tracing: nil when off.
// Spans are exported at the end of each invocation ([Handlers.flush]) or
// when maxBufferedSpans have ended, never by a goroutine of their own, so
// nothing runs while the Lambda is frozen between invocations.
func newTracerProvider(ctx context.Context, cfg Config, getenv func(string) string) (*sdktrace.TracerProvider, error) {
	if cfg.Tracing != TracingOTLP {
		return nil, nil
	}
	var opts []otlptracehttp.Option
	if getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "" {
		// The ADOT layer's collector, on the function's loopback, in
		// plain HTTP (the exporter's own default is HTTPS).
		opts = append(opts, otlptracehttp.WithEndpoint(DefaultOTLPEndpoint), otlptracehttp.WithInsecure())
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("lambdaapp: %s=%s: the OTLP exporter (OTEL_EXPORTER_OTLP_*): %w", EnvTracing, cfg.Tracing, err)
	}
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(&invocationProcessor{exp: exp})), nil
}

// invocationProcessor buffers ended spans and exports them on ForceFlush.
type invocationProcessor struct {
	exp   sdktrace.SpanExporter
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

// OnStart implements sdktrace.SpanProcessor.
func (p *invocationProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd implements sdktrace.SpanProcessor.
func (p *invocationProcessor) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	p.mu.Lock()
	p.spans = append(p.spans, s)
	full := len(p.spans) >= maxBufferedSpans
	p.mu.Unlock()
	if full {
		_ = p.ForceFlush(context.Background())
	}
}

// ForceFlush implements sdktrace.SpanProcessor: it exports the buffered
// spans.
func (p *invocationProcessor) ForceFlush(ctx context.Context) error {
	p.mu.Lock()
	spans := p.spans
	p.spans = nil
	p.mu.Unlock()
	if len(spans) == 0 {
		return nil
	}
	return p.exp.ExportSpans(ctx, spans)
}

// Shutdown implements sdktrace.SpanProcessor.
func (p *invocationProcessor) Shutdown(ctx context.Context) error {
	err := p.ForceFlush(ctx)
	if serr := p.exp.Shutdown(ctx); err == nil {
		err = serr
	}
	return err
}

// flusher is what the handlers flush at the end of each invocation.
type flusher interface {
	ForceFlush(ctx context.Context) error
}

// flush exports the spans of the invocation that ends, when tracing is on.
func (h *Handlers) flush(ctx context.Context) {
	if h.flusher == nil {
		return
	}
	if err := h.flusher.ForceFlush(context.WithoutCancel(ctx)); err != nil {
		h.log.Warn().Err(err).Msg("exporting the invocation's spans failed")
	}
}

// flushed wraps a Lambda handler so that its spans are exported before
// the invocation returns.
func flushed[E, R any](h *Handlers, fn func(context.Context, E) (R, error)) func(context.Context, E) (R, error) {
	if h.flusher == nil {
		return fn
	}
	return func(ctx context.Context, ev E) (R, error) {
		defer h.flush(ctx)
		return fn(ctx, ev)
	}
}

// tracerProvider is the provider of Options.Tracer, or of cfg.Tracing.
func tracerProvider(ctx context.Context, cfg Config, opts Options) (trace.TracerProvider, flusher, error) {
	if opts.Tracer != nil {
		f, _ := opts.Tracer.(flusher)
		return opts.Tracer, f, nil
	}
	tp, err := newTracerProvider(ctx, cfg, os.Getenv)
	if err != nil || tp == nil {
		return nil, nil, err
	}
	return tp, tp, nil
}
