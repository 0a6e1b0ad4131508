package storagetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
)

// The cases of [storage.ConnectionCounter], run when the store implements
// it. Each counts the connections of principals unique to the subtest.
func connectionCounterCases() []testCase {
	return []testCase{
		{"Cap", testCountCap},
		{"DeleteFrees", testCountDeleteFrees},
		{"Replace", testCountReplace},
		{"DeleteUnknown", testCountDeleteUnknown},
		{"Expired", testCountExpired},
		{"PrincipalEncoding", testCountPrincipalEncoding},
		{"Concurrent", testCountConcurrent},
		{"BadLimit", testCountBadLimit},
	}
}

func (e *env) counter(t *testing.T) storage.ConnectionCounter {
	t.Helper()
	c, ok := e.s.(storage.ConnectionCounter)
	if !ok {
		t.Skip("store does not implement storage.ConnectionCounter")
	}
	return c
}

// principalConn is a connection of the principal (e.p+tenant, subject).
func (e *env) principalConn(id, tenant, subject string) storage.Connection {
	c := e.connection(e.conn(id))
	c.Tenant, c.Subject = e.p+tenant, subject
	return c
}

func (e *env) requireOpen(t *testing.T, cc storage.ConnectionCounter, tenant, subject string, want int) {
	t.Helper()
	n, err := cc.OpenConnections(e.ctx, e.p+tenant, subject)
	require.NoError(t, err)
	require.Equal(t, want, n, "open connections of %s/%s", tenant, subject)
}

func testCountCap(t *testing.T, e *env) {
	cc := e.counter(t)
	e.requireOpen(t, cc, "t", "alice", 0)
	for _, id := range []string{"a1", "a2", "a3"} {
		require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn(id, "t", "alice"), 3))
	}
	e.requireOpen(t, cc, "t", "alice", 3)
	over := e.principalConn("a4", "t", "alice")
	err := cc.PutConnectionCounted(e.ctx, over, 3)
	require.ErrorIs(t, err, storage.ErrTooManyConnections)
	_, err = e.s.GetConnection(e.ctx, over.ID)
	require.ErrorIs(t, err, storage.ErrNotFound, "a refused connection is not stored")
	e.requireOpen(t, cc, "t", "alice", 3)

	// Another principal, and the same subject in another tenant, have
	// their own counts.
	require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn("b1", "t", "bob"), 3))
	require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn("x1", "u", "alice"), 3))
	e.requireOpen(t, cc, "t", "bob", 1)
	e.requireOpen(t, cc, "u", "alice", 1)

	// A higher limit admits more.
	require.NoError(t, cc.PutConnectionCounted(e.ctx, over, 4))
	e.requireOpen(t, cc, "t", "alice", 4)
	got, err := e.s.GetConnection(e.ctx, over.ID)
	require.NoError(t, err)
	requireConn(t, over, got)
}

func testCountDeleteFrees(t *testing.T, e *env) {
	cc := e.counter(t)
	for _, id := range []string{"a1", "a2"} {
		require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn(id, "t", "alice"), 2))
	}
	require.ErrorIs(t, cc.PutConnectionCounted(e.ctx, e.principalConn("a3", "t", "alice"), 2), storage.ErrTooManyConnections)
	require.NoError(t, e.s.DeleteConnection(e.ctx, e.conn("a1")))
	e.requireOpen(t, cc, "t", "alice", 1)
	// A second delete of the same connection frees nothing more.
	require.NoError(t, e.s.DeleteConnection(e.ctx, e.conn("a1")))
	e.requireOpen(t, cc, "t", "alice", 1)
	require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn("a3", "t", "alice"), 2))
	e.requireOpen(t, cc, "t", "alice", 2)

	// Deleting a connection with subscriptions frees its place too.
	k := e.key("sub")
	require.NoError(t, e.s.Subscribe(e.ctx, k, e.conn("a3"), e.later()))
	require.NoError(t, e.s.DeleteConnection(e.ctx, e.conn("a3")))
	e.requireOpen(t, cc, "t", "alice", 1)
	subs, err := e.s.Subscriptions(e.ctx, e.conn("a3"))
	require.NoError(t, err)
	require.Empty(t, subs)
}

func testCountReplace(t *testing.T, e *env) {
	cc := e.counter(t)
	c := e.principalConn("a1", "t", "alice")
	require.NoError(t, cc.PutConnectionCounted(e.ctx, c, 1))
	c.Endpoint = "https://other.example/dev"
	require.NoError(t, cc.PutConnectionCounted(e.ctx, c, 1), "storing a counted connection again is not a new one")
	e.requireOpen(t, cc, "t", "alice", 1)
	got, err := e.s.GetConnection(e.ctx, c.ID)
	require.NoError(t, err)
	requireConn(t, c, got)
	require.NoError(t, e.s.DeleteConnection(e.ctx, c.ID))
	e.requireOpen(t, cc, "t", "alice", 0)
}

func testCountDeleteUnknown(t *testing.T, e *env) {
	cc := e.counter(t)
	require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn("a1", "t", "alice"), 5))
	require.NoError(t, e.s.DeleteConnection(e.ctx, e.conn("never")))
	e.requireOpen(t, cc, "t", "alice", 1)
}

func testCountExpired(t *testing.T, e *env) {
	cc := e.counter(t)
	for _, id := range []string{"a1", "a2"} {
		c := e.principalConn(id, "t", "alice")
		c.ExpiresAt = e.at(-time.Minute)
		require.NoError(t, cc.PutConnectionCounted(e.ctx, c, 2))
	}
	// Both have expired: they no longer count, so the cap of 2 admits two
	// more, and no third.
	require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn("a3", "t", "alice"), 2))
	require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn("a4", "t", "alice"), 2))
	require.ErrorIs(t, cc.PutConnectionCounted(e.ctx, e.principalConn("a5", "t", "alice"), 2), storage.ErrTooManyConnections)
	e.requireOpen(t, cc, "t", "alice", 2)
}

func testCountPrincipalEncoding(t *testing.T, e *env) {
	cc := e.counter(t)
	// ("<p>a|b", "c") and ("<p>a", "b|c") are two principals.
	require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn("x", "a|b", "c"), 1))
	require.NoError(t, cc.PutConnectionCounted(e.ctx, e.principalConn("y", "a", "b|c"), 1))
	e.requireOpen(t, cc, "a|b", "c", 1)
	e.requireOpen(t, cc, "a", "b|c", 1)
}

func testCountConcurrent(t *testing.T, e *env) {
	cc := e.counter(t)
	const n, limit = 8, 3
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = cc.PutConnectionCounted(e.ctx, e.principalConn("c"+itoa(int64(i)), "t", "alice"), limit)
		})
	}
	wg.Wait()
	admitted := 0
	for _, err := range errs {
		if err == nil {
			admitted++
			continue
		}
		require.ErrorIs(t, err, storage.ErrTooManyConnections)
	}
	require.Equal(t, limit, admitted, "concurrent puts admit exactly the limit")
	e.requireOpen(t, cc, "t", "alice", limit)
}

func testCountBadLimit(t *testing.T, e *env) {
	cc := e.counter(t)
	err := cc.PutConnectionCounted(e.ctx, e.principalConn("a1", "t", "alice"), 0)
	require.Error(t, err)
	require.False(t, errors.Is(err, storage.ErrTooManyConnections), "a limit below 1 is a bad call, not a refusal")
	_, err = e.s.GetConnection(e.ctx, e.conn("a1"))
	require.ErrorIs(t, err, storage.ErrNotFound)
}
