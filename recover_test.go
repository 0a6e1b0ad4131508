package streamer_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
)

// panickyStore injects faults into a real store: its next ClaimRequest or
// GetRequest calls panic, as bbolt does on a damaged page. It embeds the
// memory store itself, so that the App sees its other interfaces too.
type panickyStore struct {
	*memory.Store
	claims atomic.Int32 // how many ClaimRequest calls panic
	gets   atomic.Int32 // how many GetRequest calls panic
}

func (s *panickyStore) ClaimRequest(ctx context.Context, k storage.Key, c storage.Claim) (storage.Request, error) {
	if s.claims.Add(-1) >= 0 {
		panic("invalid page type: 0: 4")
	}
	return s.Store.ClaimRequest(ctx, k, c)
}

func (s *panickyStore) GetRequest(ctx context.Context, k storage.Key) (storage.Request, error) {
	if s.gets.Add(-1) >= 0 {
		panic("invalid page type: 0: 4")
	}
	return s.Store.GetRequest(ctx, k)
}

// TestStorePanicsAreRecovered: a store that panics while the embedded
// worker processes a request does not end the process (the test binary):
// the request is tried again and completes. One that panics while a frame
// is handled is answered INTERNAL_ERROR, and the connection goes on.
func TestStorePanicsAreRecovered(t *testing.T) {
	t.Parallel()
	var ps *panickyStore
	b := setup(t, setupOpts{cfg: func(c *streamer.Config) {
		ps = &panickyStore{Store: c.Store.(*memory.Store)}
		ps.claims.Store(2)
		c.Store = ps
	}})
	b.send(t, `{"action":"steps","id":"p1","payload":{"steps":2}}`)
	ms := b.waitTerminal(t, "p1")
	last := ms[len(ms)-1]
	require.Equal(t, streamer.TypeComplete, last.Type, "the worker recovered and tried again: %+v", last)
	require.Negative(t, ps.claims.Load(), "the claims panicked")

	ps.gets.Store(1)
	b.send(t, `{"action":"status","id":"s1","payload":{"request_id":"p1"}}`)
	reply := b.waitType(t, streamer.TypeError, "s1")
	require.Equal(t, streamer.CodeInternal, reply.Error.Code)
	require.Equal(t, "internal error", reply.Error.Message, "no internals leaked")

	b.send(t, `{"action":"ping","id":"after"}`)
	b.waitType(t, streamer.TypePong, "after")
	b.send(t, `{"action":"status","id":"s2","payload":{"request_id":"p1"}}`)
	require.Equal(t, "succeeded", b.waitType(t, streamer.TypeStatus, "p1").Status, "nothing stored was altered")
}
