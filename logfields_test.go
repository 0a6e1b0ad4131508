package streamer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) lines(t *testing.T) []map[string]any {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(s.b.Bytes()))
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

// Lines about a request carry request_id, action, principal (a hash),
// stage and attempt: the handler's own, through zerolog.Ctx, and
// middleware.Logging's. The subject and tenant appear nowhere.
func TestRequestLogFields(t *testing.T) {
	t.Parallel()
	var buf syncBuf
	log := zerolog.New(&buf).Level(zerolog.DebugLevel)
	logged := streamer.Action{Name: "logged", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
			zerolog.Ctx(ctx).Info().Msg("in the handler")
			return nil, streamer.NewError("BOOM", "failed")
		})}
	b := setup(t, setupOpts{noRun: true, extra: []streamer.Action{logged}, cfg: func(c *streamer.Config) {
		c.Logger = log
		c.Middleware = []streamer.Middleware{middleware.Logging(log)}
	}})
	b.send(t, `{"action":"logged","id":"lg1"}`)
	require.NoError(t, b.app.Process(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "lg1"}))
	b.waitTerminal(t, "lg1")
	// The framework's own lines about a request have the fields too: a
	// panicking handler, in the processor.
	b.send(t, `{"action":"panic","id":"pn1"}`)
	require.NoError(t, b.app.Process(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "pn1"}))
	b.waitTerminal(t, "pn1")

	want := streamer.PrincipalHash(b.conn.Principal)
	stages := map[string]int{}
	handler := 0
	for _, l := range buf.lines(t) {
		if l["request_id"] == "pn1" || (l["message"] != "request" && l["message"] != "in the handler") {
			continue
		}
		require.Equal(t, "lg1", l["request_id"], l)
		require.Equal(t, "logged", l["action"], l)
		require.Equal(t, want, l["principal"], l)
		require.Contains(t, l, "attempt", l)
		stages[l["stage"].(string)]++
		if l["message"] == "in the handler" {
			handler++
			require.InDelta(t, 1, l["attempt"], 0)
			require.Equal(t, "process", l["stage"])
		}
	}
	require.Equal(t, 1, handler)
	panicked := 0
	for _, l := range buf.lines(t) {
		if l["request_id"] != "pn1" {
			continue
		}
		require.Equal(t, "panic", l["action"], l)
		require.Equal(t, want, l["principal"], l)
		require.Contains(t, l, "stage", l)
		require.Contains(t, l, "attempt", l)
		if l["message"] == "handler panicked" {
			panicked++
		}
	}
	require.Equal(t, 1, panicked)
	require.Equal(t, map[string]int{"admit": 1, "process": 2}, stages, "admission and run lines of the middleware, and the handler's")
	raw := func() string { buf.mu.Lock(); defer buf.mu.Unlock(); return buf.b.String() }()
	require.NotContains(t, raw, "alice", "the subject is never logged")
	require.NotContains(t, raw, `"t1"`, "nor the tenant")
}

func TestPrincipalHash(t *testing.T) {
	t.Parallel()
	a := streamer.PrincipalHash(&streamer.Principal{Tenant: "ab", Subject: "c"})
	require.Len(t, a, 16)
	require.NotEqual(t, a, streamer.PrincipalHash(&streamer.Principal{Tenant: "a", Subject: "bc"}), "the tenant and subject are kept apart")
	require.Equal(t, a, streamer.PrincipalHash(&streamer.Principal{Tenant: "ab", Subject: "c", Scopes: []string{"x"}}), "only tenant and subject count")
}
