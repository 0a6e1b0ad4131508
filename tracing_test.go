package streamer_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
)

// traced runs the test App with a tracer that records to an in-memory
// exporter, synchronously (each span is exported when it ends).
func traced(t *testing.T, trust bool) (*testBundle, *tracetest.InMemoryExporter) {
	t.Helper()
	return tracedWith(t, trust, false)
}

func tracedWith(t *testing.T, trust, noRun bool) (*testBundle, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b := setup(t, setupOpts{noRun: noRun, cfg: func(c *streamer.Config) {
		c.Tracer = tp
		c.TrustClientTrace = trust
		c.Authenticator = streamer.AuthenticatorFunc(func(context.Context, string) (streamer.Principal, error) {
			return streamer.Principal{Subject: "alice", Tenant: "t1"}, nil
		})
	}})
	return b, exp
}

// waitSpans polls until n spans named name have ended, and returns every
// span ended by then.
func waitSpans(t *testing.T, exp *tracetest.InMemoryExporter, name string, n int) tracetest.SpanStubs {
	t.Helper()
	var spans tracetest.SpanStubs
	require.Eventually(t, func() bool {
		spans = exp.GetSpans()
		return len(named(spans, name)) >= n
	}, wait, 5*time.Millisecond, "%d %s spans; got %v", n, name, spanNames(spans))
	return spans
}

func named(spans tracetest.SpanStubs, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

func spanNames(spans tracetest.SpanStubs) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name
	}
	return out
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// requireChildren checks that every span named name is a child of parent.
func requireChildren(t *testing.T, spans tracetest.SpanStubs, name string, parent tracetest.SpanStub) []tracetest.SpanStub {
	t.Helper()
	kids := named(spans, name)
	require.NotEmpty(t, kids, "no %s span", name)
	for _, s := range kids {
		require.Equal(t, parent.SpanContext.TraceID(), s.SpanContext.TraceID(), "%s is in the request's trace", name)
		require.Equal(t, parent.SpanContext.SpanID(), s.Parent.SpanID(), "%s is a child of %s", name, parent.Name)
	}
	return kids
}

func TestTracingAsyncRequestIsOneTrace(t *testing.T) {
	t.Parallel()
	b, exp := traced(t, false)
	b.send(t, `{"action":"steps","id":"tr1","payload":{"steps":2},"metadata":{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}}`)
	ms := b.waitTerminal(t, "tr1")
	require.Equal(t, streamer.TypeComplete, ms[len(ms)-1].Type)
	spans := waitSpans(t, exp, streamer.SpanRun, 1)

	admits := named(spans, streamer.SpanAdmit)
	require.Len(t, admits, 1)
	admit := admits[0]
	require.False(t, admit.Parent.IsValid(), "the admission is the root: the client's traceparent is not trusted by default")
	require.NotEqual(t, "11111111111111111111111111111111", admit.SpanContext.TraceID().String())
	require.Equal(t, "tr1", attr(admit, "streamer.request_id"))

	// The stored request carries the admission's trace context.
	stored, err := b.store.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "tr1"})
	require.NoError(t, err)
	require.Equal(t, "00-"+admit.SpanContext.TraceID().String()+"-"+admit.SpanContext.SpanID().String()+"-01", stored.TraceParent)

	for _, s := range spans {
		require.Equal(t, admit.SpanContext.TraceID(), s.SpanContext.TraceID(), "%s is in the one trace", s.Name)
	}
	claim := requireChildren(t, spans, streamer.SpanClaim, admit)
	require.Len(t, claim, 1)
	runs := requireChildren(t, spans, streamer.SpanRun, admit)
	require.Len(t, runs, 1)
	run := runs[0]
	require.False(t, claim[0].EndTime.After(run.StartTime), "the claim comes before the run")

	// started, two progress events: each appended and posted under the run.
	appends := requireChildren(t, spans, streamer.SpanAppend, run)
	var events []string
	for _, s := range appends {
		events = append(events, attr(s, "streamer.seq")+":"+attr(s, "streamer.event"))
	}
	require.Equal(t, []string{"1:started", "2:progress", "3:progress"}, events)
	finish := requireChildren(t, spans, streamer.SpanFinish, run)
	require.Len(t, finish, 1)
	require.Equal(t, "4", attr(finish[0], "streamer.seq"))
	require.Equal(t, "complete", attr(finish[0], "streamer.event"))
	// The run's four events posted to the one connection. The worker may
	// also be handed the request twice (admitted while Run lists the
	// unfinished requests): the second pass finds it finished and sends
	// the terminal event again (docs/protocol.md allows it), in the same
	// trace, under its own span.
	var posts []tracetest.SpanStub
	for _, p := range named(spans, streamer.SpanPost) {
		require.Equal(t, admit.SpanContext.TraceID(), p.SpanContext.TraceID(), "a post is in the request's trace")
		if p.Parent.SpanID() == run.SpanContext.SpanID() {
			posts = append(posts, p)
		}
	}
	require.Len(t, posts, 4, "four events posted to the one connection under the run")
	for _, p := range posts {
		require.Equal(t, "conn-1", attr(p, "streamer.connection_id"))
	}
	require.Empty(t, named(spans, streamer.SpanRetry))
}

func TestTracingRetriesStayInTheTrace(t *testing.T) {
	t.Parallel()
	b, exp := traced(t, false)
	b.send(t, `{"action":"flaky","id":"tr2"}`)
	b.waitTerminal(t, "tr2")
	spans := waitSpans(t, exp, streamer.SpanRun, 3)
	admits := named(spans, streamer.SpanAdmit)
	require.Len(t, admits, 1)
	require.Len(t, requireChildren(t, spans, streamer.SpanClaim, admits[0]), 3, "one claim per attempt")
	runs := requireChildren(t, spans, streamer.SpanRun, admits[0])
	require.Len(t, runs, 3)
	var retries, finishes int
	for _, run := range runs {
		for _, s := range spans {
			if s.Parent.SpanID() != run.SpanContext.SpanID() {
				continue
			}
			switch s.Name {
			case streamer.SpanRetry:
				retries++
				require.Equal(t, streamer.CodeProcessingFailed, attr(s, "streamer.event"))
			case streamer.SpanFinish:
				finishes++
			}
		}
	}
	require.Equal(t, 2, retries, "two failed attempts retried, each under its run")
	require.Equal(t, 1, finishes)
}

// A request canceled while queued ends without a run: its terminal write
// and post still join its trace, under the admission.
func TestTracingCancelQueuedJoinsTheTrace(t *testing.T) {
	t.Parallel()
	b, exp := tracedWith(t, false, true)
	b.send(t, `{"action":"steps","id":"tr6","payload":{"steps":1}}`)
	b.send(t, `{"action":"cancel","payload":{"request_id":"tr6"}}`)
	b.waitTerminal(t, "tr6")
	spans := waitSpans(t, exp, streamer.SpanFinish, 1)
	admit := named(spans, streamer.SpanAdmit)[0]
	finish := requireChildren(t, spans, streamer.SpanFinish, admit)
	require.Equal(t, "error", attr(finish[0], "streamer.event"))
	requireChildren(t, spans, streamer.SpanPost, admit)
	require.Empty(t, named(spans, streamer.SpanRun))
}

func TestTracingClientTraceparent(t *testing.T) {
	t.Parallel()
	const client = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	b, exp := traced(t, true)
	b.send(t, `{"action":"steps","id":"tr3","payload":{"steps":1},"metadata":{"traceparent":"`+client+`"}}`)
	b.waitTerminal(t, "tr3")
	spans := waitSpans(t, exp, streamer.SpanRun, 1)
	admit := named(spans, streamer.SpanAdmit)[0]
	require.Equal(t, "0af7651916cd43dd8448eb211c80319c", admit.SpanContext.TraceID().String(), "trusted: the client's trace id")
	require.Equal(t, "b7ad6b7169203331", admit.Parent.SpanID().String())
	require.True(t, admit.Parent.IsRemote())
	for _, s := range spans {
		require.Equal(t, admit.SpanContext.TraceID(), s.SpanContext.TraceID(), s.Name)
	}

	// A malformed traceparent starts a trace of the server's own.
	b.send(t, `{"action":"echo","id":"tr4","payload":1,"metadata":{"traceparent":"00-zz-b7ad6b7169203331-01"}}`)
	spans = waitSpans(t, exp, streamer.SpanSync, 1)
	sync := named(spans, streamer.SpanSync)[0]
	require.False(t, sync.Parent.IsValid())
	require.Equal(t, "tr4", attr(sync, "streamer.request_id"))
}

func TestTracingConnectAndSync(t *testing.T) {
	t.Parallel()
	b, exp := traced(t, false)
	_, err := b.app.HandleConnect(context.Background(), "conn-2", "", "token")
	require.NoError(t, err)
	b.send(t, `{"action":"echo","id":"tr5","payload":1}`)
	spans := waitSpans(t, exp, streamer.SpanSync, 1)
	conn := named(spans, streamer.SpanConnect)
	require.Len(t, conn, 1)
	require.Equal(t, "conn-2", attr(conn[0], "streamer.connection_id"))
	sync := named(spans, streamer.SpanSync)[0]
	require.NotEqual(t, conn[0].SpanContext.TraceID(), sync.SpanContext.TraceID(), "a frame is not part of its connection's trace")
	require.Empty(t, named(spans, streamer.SpanAdmit), "a sync request is not admitted")
}

func TestTracingOffStoresNoTraceContext(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})
	// A span of the caller's is not recorded, nor stored: tracing is off.
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, sp := tp.Tracer("test").Start(context.Background(), "caller")
	defer sp.End()
	require.True(t, trace.SpanContextFromContext(ctx).IsValid())
	_, err := b.app.Submit(ctx, streamer.Principal{Subject: "alice", Tenant: "t1"}, "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{IdempotencyKey: "off1"})
	require.NoError(t, err)
	got, err := b.store.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "off1"})
	require.NoError(t, err)
	require.Empty(t, got.TraceParent)
}

func TestTracingSubmitIsAChildOfTheCaller(t *testing.T) {
	t.Parallel()
	b, exp := traced(t, false)
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	ctx, sp := tp.Tracer("test").Start(context.Background(), "caller")
	defer sp.End()
	_, err := b.app.Submit(ctx, streamer.Principal{Subject: "alice", Tenant: "t1"}, "steps", map[string]int{"steps": 1}, streamer.SubmitOptions{IdempotencyKey: "sub1"})
	require.NoError(t, err)
	spans := waitSpans(t, exp, streamer.SpanRun, 1)
	admit := named(spans, streamer.SpanAdmit)[0]
	require.Equal(t, sp.SpanContext().SpanID(), admit.Parent.SpanID())
	got, err := b.store.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "sub1"})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(got.TraceParent, "00-"+sp.SpanContext().TraceID().String()+"-"))
}

// BenchmarkDispatchSyncTraced is BenchmarkDispatchSync with tracing on,
// every span sampled and dropped (no exporter): the cost of the spans.
func BenchmarkDispatchSyncTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	app, err := streamer.New(streamer.Config{
		Store: memory.New(), Sender: discard{}, Tracer: tp,
		Plugins: []streamer.Plugin{{Name: "bench", Actions: []streamer.Action{{
			Name: "echo", Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			Handler: streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
				return req.Payload, nil
			}),
		}}}},
	})
	require.NoError(b, err)
	conn := streamer.Conn{ID: "c", Principal: &streamer.Principal{Subject: "bench"}}
	frame := []byte(`{"action":"echo","id":"req-1","payload":{"message":"hello","n":42}}`)
	b.ReportAllocs()
	for b.Loop() {
		if err := app.HandleMessage(context.Background(), conn, frame, false); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAsyncRequestTraced is BenchmarkAsyncRequest with tracing on,
// every span sampled and dropped (no exporter).
func BenchmarkAsyncRequestTraced(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	defer func() { _ = tp.Shutdown(context.Background()) }()
	cfg := benchAsyncConfig()
	cfg.Tracer = tp
	benchAsync(b, cfg)
}
