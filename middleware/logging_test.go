package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
)

func logLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(buf)
	for dec.More() {
		var m map[string]any
		require.NoError(t, dec.Decode(&m))
		out = append(out, m)
	}
	return out
}

func TestLogging(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var fail error
	h := middleware.Logging(zerolog.New(&buf))(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
		return "ok", fail
	}))
	req := &streamer.Request{
		ID: "r-7", Action: "report", Stage: streamer.StageProcess, Attempt: 2,
		Principal: streamer.Principal{Subject: "alice", Tenant: "acme"},
	}

	res, err := h.Serve(context.Background(), req, streamer.Discard)
	require.NoError(t, err)
	assert.Equal(t, "ok", res)

	fail = streamer.Retryable(streamer.NewError("QUOTA", "over quota"))
	_, err = h.Serve(context.Background(), req, streamer.Discard)
	require.Error(t, err)

	fail = errors.New("disk on fire")
	_, err = h.Serve(context.Background(), req, streamer.Discard)
	require.Error(t, err)

	lines := logLines(t, &buf)
	require.Len(t, lines, 3)
	for _, l := range lines {
		assert.Equal(t, "r-7", l["request_id"])
		assert.Equal(t, "report", l["action"])
		assert.Equal(t, "process", l["stage"])
		assert.Equal(t, streamer.PrincipalHash(&req.Principal), l["principal"])
		assert.Len(t, l["principal"], 16)
		assert.NotContains(t, l, "sub")
		assert.NotContains(t, l, "tenant")
		assert.InDelta(t, 2, l["attempt"], 0)
		assert.Contains(t, l, "duration_ms")
		assert.Equal(t, "request", l["message"])
	}
	assert.Equal(t, "info", lines[0]["level"])
	assert.NotContains(t, lines[0], "code")

	assert.Equal(t, "warn", lines[1]["level"])
	assert.Equal(t, "QUOTA", lines[1]["code"])
	assert.Equal(t, true, lines[1]["retryable"])

	assert.Equal(t, "warn", lines[2]["level"])
	assert.Equal(t, streamer.CodeProcessingFailed, lines[2]["code"])
	assert.Equal(t, "disk on fire", lines[2]["error"])
	assert.NotContains(t, buf.String(), "alice", "the subject is never logged")
	assert.NotContains(t, buf.String(), "acme", "nor the tenant")
}

func TestLoggingTimeoutCode(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := middleware.Logging(zerolog.New(&buf))(streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
		return nil, context.DeadlineExceeded
	}))
	_, err := h.Serve(context.Background(), &streamer.Request{ID: "r", Stage: streamer.StageSync}, streamer.Discard)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	lines := logLines(t, &buf)
	require.Len(t, lines, 1)
	assert.Equal(t, streamer.CodeTimeout, lines[0]["code"])
	assert.NotContains(t, lines[0], "tenant", "no tenant attribute")
}
