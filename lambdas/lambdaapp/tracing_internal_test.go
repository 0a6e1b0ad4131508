package lambdaapp

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Spans wait for the end of the invocation (ForceFlush), with no
// goroutine of their own, unless an invocation ends very many.
func TestInvocationProcessorExportsOnFlush(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(&invocationProcessor{exp: exp}))
	tr := tp.Tracer("test")
	_, sp := tr.Start(context.Background(), "one")
	sp.End()
	require.Empty(t, exp.GetSpans(), "nothing is exported before the flush")
	require.NoError(t, tp.ForceFlush(context.Background()))
	require.Len(t, exp.GetSpans(), 1)

	exp.Reset()
	for range maxBufferedSpans {
		_, sp := tr.Start(context.Background(), "many")
		sp.End()
	}
	require.Len(t, exp.GetSpans(), maxBufferedSpans, "a full buffer is exported at once")
	require.NoError(t, tp.Shutdown(context.Background()))
}

func TestHandlerFlushesEachInvocation(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(&invocationProcessor{exp: exp}))
	h := &Handlers{flusher: tp}
	fn := flushed(h, func(ctx context.Context, _ int) (int, error) {
		_, sp := tp.Tracer("test").Start(ctx, "invocation")
		sp.End()
		require.Empty(t, exp.GetSpans())
		return 1, nil
	})
	_, err := fn(context.Background(), 0)
	require.NoError(t, err)
	require.Len(t, exp.GetSpans(), 1, "exported before the invocation returned")
}

func TestTracingOTLPBuildsWithoutNetwork(t *testing.T) {
	t.Parallel()
	for _, env := range []map[string]string{{}, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}} {
		tp, err := newTracerProvider(context.Background(), Config{Tracing: TracingOTLP}, func(k string) string { return env[k] })
		require.NoError(t, err)
		require.NotNil(t, tp)
		require.NoError(t, tp.Shutdown(context.Background()))
	}
	off, err := newTracerProvider(context.Background(), Config{Tracing: TracingOff}, func(string) string { return "" })
	require.NoError(t, err)
	require.Nil(t, off)
}
