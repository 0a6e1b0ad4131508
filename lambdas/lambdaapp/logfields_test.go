package lambdaapp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/plugins/demo"
)

// The router's lines about a request carry the request's fields (a hash
// for the principal, never the subject), the Lambda request id and
// whether the invocation was its instance's first.
func TestRouterLogsLambdaFields(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	var out lockedBuf
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Router, env(map[string]string{
		"STREAMER_TABLE": s.table, "STREAMER_ENDPOINT": s.gw.URL, "STREAMER_LOG_LEVEL": "info",
	}))
	require.NoError(t, err)
	log := zerolog.New(&out).Level(cfg.LogLevel)
	router, err := lambdaapp.New(context.Background(), cfg, []streamer.Plugin{demo.New()}, lambdaapp.Options{Logger: &log, MetricsOutput: &lockedBuf{}})
	require.NoError(t, err)
	c, id := s.open(t, "erin-the-subject")
	for _, rid := range []string{"lambda-req-1", "lambda-req-2"} {
		ev := wsEvent(id, "MESSAGE", "$default")
		ev.Body = `{"action":"echo","id":"e-` + rid + `","payload":1}`
		ctx := lambdacontext.NewContext(context.Background(), &lambdacontext.LambdaContext{AwsRequestID: rid})
		resp, err := router.Route(ctx, ev)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, streamer.TypeResponse, lambdatest.Read(t, c).Type)
	}
	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		if m["message"] == "request" {
			lines = append(lines, m)
		}
	}
	require.Len(t, lines, 2, "one line per request (middleware.Logging): %s", out.String())
	for i, l := range lines {
		rid := []string{"lambda-req-1", "lambda-req-2"}[i]
		require.Equal(t, rid, l["lambda_request_id"])
		require.Equal(t, i == 0, l["cold_start"], "only the instance's first invocation is cold")
		require.Equal(t, "e-"+rid, l["request_id"])
		require.Equal(t, "echo", l["action"])
		require.Equal(t, "sync", l["stage"])
		require.Equal(t, streamer.PrincipalHash(&streamer.Principal{Subject: "erin-the-subject"}), l["principal"])
		require.Contains(t, l, "attempt")
	}
	require.NotContains(t, out.String(), "erin-the-subject", "the subject is never logged")
}
