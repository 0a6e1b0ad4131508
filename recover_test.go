package streamer_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

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

// leasePanicStore panics in its next ExtendLease calls.
type leasePanicStore struct {
	*memory.Store
	extends atomic.Int32
}

func (s *leasePanicStore) ExtendLease(ctx context.Context, k storage.Key, attempt int, until time.Time) error {
	if s.extends.Add(-1) >= 0 {
		panic("invalid page type: 0: 4")
	}
	return s.Store.ExtendLease(ctx, k, attempt, until)
}

// A store that panics while a run renews its lease stops that run, which
// is continued, instead of ending the process.
func TestLeaseRenewalPanicIsRecovered(t *testing.T) {
	t.Parallel()
	var ps *leasePanicStore
	slowish := streamer.Action{Name: "slowish", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			select {
			case <-time.After(400 * time.Millisecond): // past a renewal
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})}
	b := setup(t, setupOpts{extra: []streamer.Action{slowish}, cfg: func(c *streamer.Config) {
		ps = &leasePanicStore{Store: c.Store.(*memory.Store)}
		ps.extends.Store(1)
		c.Store = ps
		c.Lease = 300 * time.Millisecond // renewed every 100 ms
	}})
	b.send(t, `{"action":"slowish","id":"lp1"}`)
	ms := b.waitTerminal(t, "lp1")
	require.Equal(t, streamer.TypeComplete, ms[len(ms)-1].Type, "%+v", ms[len(ms)-1])
	require.Negative(t, ps.extends.Load(), "the renewal panicked")
	r, err := ps.GetRequest(context.Background(), storage.Key{Tenant: "t1", Subject: "alice", ID: "lp1"})
	require.NoError(t, err)
	require.Positive(t, r.Continuations, "the stopped run was continued")
}
