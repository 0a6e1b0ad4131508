package awslocal_test

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/plugins/demo"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// An async request on the AWS path is one trace: the router's admission
// (a Lambda invocation of its own) is its root, and the processor, fed by
// the table's stream and run in an invocation it started itself, continues
// it from the traceparent stored in the request's item: its claim and run
// are children of the admission, and the run's event appends, posts and
// terminal write are children of the run.
func TestTracingOneTraceAcrossTheStream(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	aws, table, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{demo.New()}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		ReapInterval: -1, Tracer: tp,
	})
	ctx, cancel := context.WithTimeout(context.Background(), lambdatest.Wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, info.WebSocketURL+"?token="+url.QueryEscape(lambdatest.Token(t, "tia")), nil) //nolint:bodyclose // coder/websocket closes it
	require.NoError(t, err)
	defer func() { _ = c.CloseNow() }()

	// A client's traceparent is not trusted by default (STREAMER_TRACE_CLIENT).
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(`{"action":"delay","id":"tr-1","payload":{"ms":10,"steps":2},"metadata":{"traceparent":"00-11111111111111111111111111111111-2222222222222222-01"}}`)))
	ms := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	var last int64
	for _, m := range ms {
		last = max(last, m.Seq)
	}

	var spans tracetest.SpanStubs
	require.Eventually(t, func() bool {
		spans = exp.GetSpans()
		return len(named(spans, streamer.SpanRun)) >= 1
	}, lambdatest.Wait, 10*time.Millisecond, "the processor's run span ends")

	require.Len(t, named(spans, streamer.SpanConnect), 1, "$connect")
	admits := named(spans, streamer.SpanAdmit)
	require.Len(t, admits, 1)
	admit := admits[0]
	require.False(t, admit.Parent.IsValid(), "the admission is the root")
	require.NotEqual(t, "11111111111111111111111111111111", admit.SpanContext.TraceID().String())

	// The item carries the admission's trace context.
	store, err := dynamodb.New(dynamodb.Config{Client: aws.DB, Table: table})
	require.NoError(t, err)
	r, err := store.GetRequest(context.Background(), storage.Key{Subject: "tia", ID: "tr-1"})
	require.NoError(t, err)
	require.Equal(t, "00-"+admit.SpanContext.TraceID().String()+"-"+admit.SpanContext.SpanID().String()+"-01", r.TraceParent)

	inTrace := 0
	for _, s := range spans {
		if s.SpanContext.TraceID() == admit.SpanContext.TraceID() {
			inTrace++
		}
	}
	claims := children(t, spans, streamer.SpanClaim, admit)
	require.Len(t, claims, 1)
	runs := children(t, spans, streamer.SpanRun, admit)
	require.Len(t, runs, 1)
	run := runs[0]
	appends := children(t, spans, streamer.SpanAppend, run)
	require.Equal(t, "1", attr(appends[0], "streamer.seq"))
	require.Equal(t, streamer.TypeStarted, attr(appends[0], "streamer.event"), "seq 1 is started")
	finish := children(t, spans, streamer.SpanFinish, run)
	require.Len(t, finish, 1)
	require.Equal(t, strconv.FormatInt(last, 10), attr(finish[0], "streamer.seq"), "the terminal write is the last event")
	require.Equal(t, streamer.TypeComplete, attr(finish[0], "streamer.event"))
	require.Len(t, appends, int(last)-1, "every other event appended under the run")
	posts := children(t, spans, streamer.SpanPost, run)
	require.Len(t, posts, int(last), "each event posted to the one connection")
	require.Equal(t, 1+1+1+len(appends)+len(finish)+len(posts), inTrace, "admit, claim, run, appends, finish and posts: nothing else in the trace")
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

// children returns the spans named name, checking that each is a child of
// parent in its trace.
func children(t *testing.T, spans tracetest.SpanStubs, name string, parent tracetest.SpanStub) []tracetest.SpanStub {
	t.Helper()
	kids := named(spans, name)
	require.NotEmpty(t, kids, "no %s span", name)
	for _, s := range kids {
		require.Equal(t, parent.SpanContext.TraceID(), s.SpanContext.TraceID(), "%s is in the request's trace", name)
		require.Equal(t, parent.SpanContext.SpanID(), s.Parent.SpanID(), "%s is a child of %s", name, parent.Name)
	}
	return kids
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}
