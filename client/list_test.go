package client_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

type listResult struct {
	page client.ListPage
	err  error
}

func startList(ctx context.Context, c *client.Client, opts client.ListOptions) <-chan listResult {
	out := make(chan listResult, 1)
	go func() {
		p, err := c.List(ctx, opts)
		out <- listResult{p, err}
	}()
	return out
}

func TestList(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	ctx := context.Background()

	res := startList(ctx, b.client, client.ListOptions{Statuses: []string{"running", "queued"}, Limit: 2, Cursor: "abc"})
	f := b.conn.next(t)
	assert.Equal(t, streamer.ActionList, f.Action)
	require.NotEmpty(t, f.ID, "the reply is matched by the frame's id")
	assert.JSONEq(t, `{"status":["running","queued"],"limit":2,"cursor":"abc"}`, string(f.Payload))
	// A list reply for another id is not it.
	b.conn.send(t, streamer.Message{Type: streamer.TypeList, RequestID: "someone-else", Requests: []streamer.RequestSummary{{RequestID: "x"}}})
	b.conn.send(t, streamer.Message{Type: streamer.TypeList, RequestID: f.ID, Cursor: "next", Requests: []streamer.RequestSummary{
		{RequestID: "r2", Action: "report", Status: "running", Seq: 3, Percentage: 42.5, Message: "rows", CreatedAt: 1_700_000_000_000, UpdatedAt: 1_700_000_001_000},
		{RequestID: "r1", Action: "report", Status: "queued"},
	}})
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, client.ListPage{Cursor: "next", Requests: []client.ListedRequest{
		{RequestID: "r2", Action: "report", Status: "running", Seq: 3, Percentage: 42.5, Message: "rows",
			CreatedAt: time.UnixMilli(1_700_000_000_000), UpdatedAt: time.UnixMilli(1_700_000_001_000)},
		{RequestID: "r1", Action: "report", Status: "queued"},
	}}, r.page)
	assert.True(t, r.page.Requests[0].Live())

	// No options: an empty payload object; the last page has no cursor.
	res = startList(ctx, b.client, client.ListOptions{})
	f = b.conn.next(t)
	assert.JSONEq(t, `{}`, string(f.Payload))
	b.conn.send(t, streamer.Message{Type: streamer.TypeList, RequestID: f.ID})
	r = wait(t, res)
	require.NoError(t, r.err)
	assert.Empty(t, r.page.Requests)
	assert.Empty(t, r.page.Cursor)

	// An error carrying the id fails the call with its code.
	res = startList(ctx, b.client, client.ListOptions{Cursor: "bad"})
	f = b.conn.next(t)
	b.conn.send(t, errorMsg(f.ID, 0, streamer.CodeValidation))
	assert.Equal(t, streamer.CodeValidation, client.CodeOf(wait(t, res).err))
}

func TestListResentAfterReconnect(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := startList(context.Background(), b.client, client.ListOptions{Limit: 5})
	first := b.conn.next(t)
	b.conn.drop()
	conn2 := b.fs.accept(t)
	again := conn2.next(t)
	assert.Equal(t, first, again, "the same frame, the same id")
	conn2.send(t, streamer.Message{Type: streamer.TypeList, RequestID: again.ID, Requests: []streamer.RequestSummary{{RequestID: "r", Status: "succeeded"}}})
	r := wait(t, res)
	require.NoError(t, r.err)
	require.Len(t, r.page.Requests, 1)
	assert.False(t, r.page.Requests[0].Live())
}

func TestListInvalidLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	for _, limit := range []int{-1, client.MaxListLimit + 1} {
		_, err := b.client.List(context.Background(), client.ListOptions{Limit: limit})
		require.ErrorIs(t, err, client.ErrInvalidArgument)
	}
	_, err := b.client.Request(context.Background(), "list", json.RawMessage(`{}`))
	require.ErrorIs(t, err, client.ErrInvalidArgument, "list is reserved")
}

func TestListCanceledContext(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	res := startList(ctx, b.client, client.ListOptions{})
	f := b.conn.next(t)
	cancel()
	require.ErrorIs(t, wait(t, res).err, context.Canceled)
	// The late reply is dropped, and the next call gets its own.
	b.conn.send(t, streamer.Message{Type: streamer.TypeList, RequestID: f.ID})
	res = startList(context.Background(), b.client, client.ListOptions{Limit: 1})
	f2 := b.conn.next(t)
	require.NotEqual(t, f.ID, f2.ID)
	b.conn.send(t, streamer.Message{Type: streamer.TypeList, RequestID: f2.ID, Requests: []streamer.RequestSummary{{RequestID: "mine"}}})
	r := wait(t, res)
	require.NoError(t, r.err)
	require.Equal(t, "mine", r.page.Requests[0].RequestID)
}
