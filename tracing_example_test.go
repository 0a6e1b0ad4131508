package streamer_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
)

// Config.Tracer turns tracing on: here an SDK provider that records to
// memory (a real one exports, with OTLP say). An async request is one
// trace: its admission, then the processor's claim and run, the run's
// event appends, posts and terminal write.
func ExampleConfig_tracer() {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	app, err := streamer.New(streamer.Config{
		Store: memory.New(), Sender: discard{}, Tracer: tp,
		Plugins: []streamer.Plugin{{Name: "example", Actions: []streamer.Action{{
			Name: "report", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
				return "done", nil
			}),
		}}}},
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	conn := streamer.Conn{ID: "c1", Principal: &streamer.Principal{Subject: "alice"}}
	_ = app.HandleMessage(ctx, conn, []byte(`{"action":"report","id":"r1"}`), false)
	// The processor: App.Run's worker, or the processor Lambda.
	_ = app.Process(ctx, storage.Key{Subject: "alice", ID: "r1"})

	spans := exp.GetSpans()
	root := spans[0].SpanContext.TraceID()
	for _, s := range spans { // in the order they ended
		fmt.Println(s.Name, s.SpanContext.TraceID() == root)
	}
	// Output:
	// streamer.admit true
	// streamer.claim true
	// streamer.append true
	// streamer.post true
	// streamer.post true
	// streamer.finish true
	// streamer.run true
}
