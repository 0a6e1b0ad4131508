package middleware_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
)

func TestRecover(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := middleware.Recover(zerolog.New(&buf))(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
		panic("secret database password")
	}))

	res, err := h.Serve(context.Background(), &streamer.Request{ID: "r-1", Action: "boom", Stage: streamer.StageSync}, streamer.Discard)
	assert.Nil(t, res)
	var se *streamer.Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, streamer.CodeInternal, se.Code)
	assert.Equal(t, "internal error", se.Message)
	assert.NotContains(t, err.Error(), "secret", "the panic value never reaches the client")
	assert.Nil(t, se.Details)

	var line map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &line), buf.String())
	assert.Equal(t, "error", line["level"])
	assert.Equal(t, "r-1", line["request_id"])
	assert.Equal(t, "boom", line["action"])
	assert.Equal(t, "sync", line["stage"])
	assert.Equal(t, "secret database password", line["panic"])
	stack, _ := line["stack"].(string)
	assert.Contains(t, stack, "goroutine")
	assert.Contains(t, stack, "recover_test.go", "the stack reaches the panicking handler")
}

func TestRecoverPassesThrough(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	h := middleware.Recover(zerolog.New(&buf))(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
		return nil, streamer.NewError(streamer.CodeNotFound, "gone")
	}))
	_, err := h.Serve(context.Background(), &streamer.Request{}, streamer.Discard)
	assert.Equal(t, streamer.CodeNotFound, streamer.CodeOf(err))
	assert.Zero(t, buf.Len())
}
