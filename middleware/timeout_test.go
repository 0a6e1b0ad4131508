package middleware_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
)

func TestTimeout(t *testing.T) {
	t.Parallel()
	h := middleware.Timeout(20 * time.Millisecond)(streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}))
	res, err := h.Serve(context.Background(), &streamer.Request{Stage: streamer.StageSync}, streamer.Discard)
	assert.Nil(t, res)
	var se *streamer.Error
	require.ErrorAs(t, err, &se)
	assert.Equal(t, streamer.CodeTimeout, se.Code)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "the cause is kept for the logs")
}

func TestTimeoutWrappedDeadline(t *testing.T) {
	t.Parallel()
	// A handler that returns its own error once the deadline passed.
	h := middleware.Timeout(time.Millisecond)(streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
		<-ctx.Done()
		return nil, errors.New("query aborted")
	}))
	_, err := h.Serve(context.Background(), &streamer.Request{}, streamer.Discard)
	assert.Equal(t, streamer.CodeTimeout, streamer.CodeOf(err))
}

func TestTimeoutKeepsOtherResults(t *testing.T) {
	t.Parallel()
	var deadline time.Time
	ok := middleware.Timeout(time.Hour)(streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
		deadline, _ = ctx.Deadline()
		return 42, nil
	}))
	res, err := ok.Serve(context.Background(), &streamer.Request{}, streamer.Discard)
	require.NoError(t, err)
	assert.Equal(t, 42, res)
	assert.WithinDuration(t, time.Now().Add(time.Hour), deadline, time.Minute)

	coded := middleware.Timeout(time.Hour)(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
		return nil, streamer.NewError(streamer.CodeNotFound, "no")
	}))
	_, err = coded.Serve(context.Background(), &streamer.Request{}, streamer.Discard)
	assert.Equal(t, streamer.CodeNotFound, streamer.CodeOf(err))

	plain := errors.New("plain")
	failing := middleware.Timeout(time.Hour)(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
		return nil, plain
	}))
	_, err = failing.Serve(context.Background(), &streamer.Request{}, streamer.Discard)
	assert.ErrorIs(t, err, plain)
	assert.Equal(t, streamer.CodeInternal, streamer.CodeOf(err))
}

func TestTimeoutDisabled(t *testing.T) {
	t.Parallel()
	h := middleware.Timeout(0)(streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
		_, has := ctx.Deadline()
		return has, nil
	}))
	res, err := h.Serve(context.Background(), &streamer.Request{}, streamer.Discard)
	require.NoError(t, err)
	assert.Equal(t, false, res)
}
