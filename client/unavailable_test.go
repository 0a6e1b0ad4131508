package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

func unavailableMsg(id string, details string) streamer.Message {
	return streamer.Message{Type: streamer.TypeError, RequestID: id, Error: &streamer.ErrorBody{
		Code: streamer.CodeUnavailable, Message: "retry later", Details: json.RawMessage(details), Retryable: true,
	}}
}

func TestUnavailableIsTypedAndNotRetriedByTheClient(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := start(b.client, context.Background(), "report", nil, client.WithID("u-1"))
	f := b.conn.next(t)
	require.Equal(t, "u-1", f.ID)
	b.conn.send(t, unavailableMsg("u-1", `{"retry_after_ms":0}`))
	r := wait(t, res)

	require.True(t, client.IsUnavailable(r.err))
	require.True(t, client.IsUnavailable(fmt.Errorf("wrapped: %w", r.err)))
	var se *client.Error
	require.ErrorAs(t, r.err, &se)
	assert.Equal(t, "u-1", se.RequestID)
	assert.True(t, se.Retryable)
	d, ok := se.RetryAfter()
	assert.True(t, ok)
	assert.Zero(t, d)

	// The client did not send the request again by itself: the next frame
	// is the caller's ping.
	pinged := make(chan error, 1)
	go func() { pinged <- b.client.Ping(context.Background()) }()
	next := b.conn.next(t)
	require.Equal(t, streamer.ActionPing, next.Action, "the client re-sent %+v on its own", next)
	b.conn.send(t, streamer.Message{Type: streamer.TypePong, Timestamp: 1})
	require.NoError(t, wait(t, pinged))

	// The caller retries with the same id, and the request goes through.
	res = start(b.client, context.Background(), "report", nil, client.WithID("u-1"))
	require.Equal(t, "u-1", b.conn.next(t).ID)
	b.conn.send(t, streamer.Message{Type: streamer.TypeResponse, RequestID: "u-1", Success: true, Data: json.RawMessage(`1`)})
	r = wait(t, res)
	require.NoError(t, r.err)
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		details string
		want    time.Duration
		ok      bool
	}{
		{`{"retry_after_ms":1000}`, time.Second, true},
		{`{"retry_after_ms":2.5}`, 2500 * time.Microsecond, true},
		{`{"retry_after_ms":-1}`, 0, false},
		{`{"retry_after_ms":"soon"}`, 0, false},
		{`{}`, 0, false},
		{`[1]`, 0, false},
		{``, 0, false},
	} {
		e := &client.Error{Code: streamer.CodeUnavailable, Details: json.RawMessage(tc.details)}
		d, ok := e.RetryAfter()
		assert.Equal(t, tc.ok, ok, tc.details)
		assert.Equal(t, tc.want, d, tc.details)
	}
	assert.False(t, client.IsUnavailable(errors.New("other")))
	assert.False(t, client.IsUnavailable(&client.Error{Code: streamer.CodeInternal}))
}
