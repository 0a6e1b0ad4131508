package client_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/client"
)

type actionsResult struct {
	list []client.Action
	err  error
}

func startActions(ctx context.Context, c *client.Client) <-chan actionsResult {
	out := make(chan actionsResult, 1)
	go func() {
		l, err := c.Actions(ctx)
		out <- actionsResult{l, err}
	}()
	return out
}

func TestActions(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	ctx := context.Background()

	res := startActions(ctx, b.client)
	f := b.conn.next(t)
	assert.Equal(t, streamer.ActionActions, f.Action)
	require.NotEmpty(t, f.ID, "the reply is matched by the frame's id")
	// A status reply for another id and a stray actions reply are not it.
	b.conn.send(t, streamer.Message{Type: streamer.TypeActions, RequestID: "someone-else"})
	b.conn.send(t, streamer.Message{Type: streamer.TypeActions, RequestID: f.ID, Actions: []streamer.ActionInfo{
		{Name: "delay", Mode: "async"}, {Name: "echo", Mode: "sync", Scopes: []string{"a"}},
	}})
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, []client.Action{{Name: "delay", Mode: "async"}, {Name: "echo", Mode: "sync", Scopes: []string{"a"}}}, r.list)

	// An error carrying the id fails the call with its code.
	res = startActions(ctx, b.client)
	f = b.conn.next(t)
	b.conn.send(t, errorMsg(f.ID, 0, streamer.CodeUnavailable))
	assert.Equal(t, streamer.CodeUnavailable, client.CodeOf(wait(t, res).err))

	// An empty list is not an error.
	res = startActions(ctx, b.client)
	f = b.conn.next(t)
	b.conn.send(t, streamer.Message{Type: streamer.TypeActions, RequestID: f.ID})
	r = wait(t, res)
	require.NoError(t, r.err)
	assert.Empty(t, r.list)
}

func TestActionsResentAfterReconnect(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	res := startActions(context.Background(), b.client)
	first := b.conn.next(t)
	b.conn.drop()
	conn2 := b.fs.accept(t)
	again := conn2.next(t)
	assert.Equal(t, first, again, "the same frame, the same id")
	conn2.send(t, streamer.Message{Type: streamer.TypeActions, RequestID: again.ID, Actions: []streamer.ActionInfo{{Name: "x", Mode: "auto"}}})
	r := wait(t, res)
	require.NoError(t, r.err)
	assert.Equal(t, []client.Action{{Name: "x", Mode: "auto"}}, r.list)
}

func TestActionsIsReservedForRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, client.Options{})
	_, err := b.client.Request(context.Background(), "actions", nil)
	require.ErrorIs(t, err, client.ErrInvalidArgument)
}
