package streamer

import (
	"context"

	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
)

// A lane whose oldest request's action is at its Concurrency runs its
// other actions meanwhile, keeps its turn while it waits, and gets the
// action's next free slot before a lane that queued later.
func TestWorkerActionConcurrency(t *testing.T) {
	t.Parallel()
	w := newWorker(0, map[string]int{"x": 1})
	key := func(tenant, id string) storage.Key { return storage.Key{Tenant: tenant, Subject: "s", ID: id} }
	w.push(key("a", "x1"), "x")
	w.push(key("a", "x2"), "x")
	w.push(key("a", "y1"), "y")
	w.push(key("b", "x3"), "x")
	w.push(key("c", "x4"), "x")

	pop := func() (item, string) {
		t.Helper()
		it, lane, ok := w.pop()
		require.True(t, ok)
		return it, lane
	}
	x1, la := pop()
	require.Equal(t, "x1", x1.key.ID)
	y1, la2 := pop()
	require.Equal(t, "y1", y1.key.ID, "lanes b and c wait for x; lane a runs its y")
	_, _, ok := w.pop()
	require.False(t, ok, "every ready request waits for x")

	w.done(x1, la)
	x3, lb := pop()
	require.Equal(t, "x3", x3.key.ID, "lane b kept its turn while it waited")
	w.done(y1, la2)
	_, _, ok = w.pop()
	require.False(t, ok, "x is still at its limit")
	w.done(x3, lb)
	x4, lc := pop()
	require.Equal(t, "x4", x4.key.ID, "lane c, waiting since before lane a's turn came back")
	w.done(x4, lc)
	x2, la3 := pop()
	require.Equal(t, "x2", x2.key.ID)
	w.done(x2, la3)
	_, _, ok = w.pop()
	require.False(t, ok)
	require.Empty(t, w.lanes, "lanes go when they have no work")
	require.Empty(t, w.running)
	require.Empty(t, w.actions, "nor does the worker remember finished requests")
	require.Empty(t, w.held)
}

// A re-queue that names only the key (a retry's notify) keeps the action
// the worker knows of the request, so its limit still applies.
func TestWorkerRequeueKeepsAction(t *testing.T) {
	t.Parallel()
	w := newWorker(0, map[string]int{"x": 1})
	k1 := storage.Key{Subject: "s", ID: "1"}
	k2 := storage.Key{Subject: "s", ID: "2"}
	w.push(k1, "x")
	it, lane, ok := w.pop()
	require.True(t, ok)
	w.push(k2, "") // known to no one: no limit
	w.push(k1, "") // re-queued while it runs, by key only
	it2, lane2, ok := w.pop()
	require.True(t, ok)
	require.Equal(t, k2, it2.key)
	_, _, ok = w.pop()
	require.False(t, ok, "k1 is an x, and x is at its limit")
	w.done(it, lane)
	it3, lane3, ok := w.pop()
	require.True(t, ok)
	require.Equal(t, item{key: k1, action: "x", seq: it3.seq}, it3)
	w.done(it2, lane2)
	w.done(it3, lane3)
	require.Empty(t, w.actions)
}

func TestActionConcurrencyKey(t *testing.T) {
	t.Parallel()
	h := HandlerFunc(func(_ context.Context, _ *Request, _ Reporter) (any, error) { return nil, nil })
	app, err := New(Config{Store: memory.New(), Sender: nopSender{}, Plugins: []Plugin{{Name: "p", Actions: []Action{
		{Name: "heavy", Handler: h, Options: ActionOptions{Concurrency: 3}},
		{Name: "light", Handler: h},
	}}}})
	require.NoError(t, err)
	k, n := app.actionConcurrency("heavy")
	require.Equal(t, "a:heavy", k)
	require.Equal(t, 3, n)
	k, n = app.actionConcurrency("light")
	require.Empty(t, k)
	require.Zero(t, n)
	require.Equal(t, map[string]int{"heavy": 3}, app.actionLimits())
}

type nopSender struct{}

func (nopSender) Send(context.Context, string, string, []byte) error { return nil }
