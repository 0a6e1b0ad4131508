// Package ratelimittest is the conformance suite every [ratelimit.Limiter]
// backend passes, as storage/storagetest is for stores. A backend's test
// calls [Run]:
//
//	func TestConformance(t *testing.T) {
//		ratelimittest.Run(t, ratelimittest.Backend{
//			New: func(t *testing.T, now func() time.Time) ratelimit.Limiter {
//				return memory.New(memory.Options{Now: now})
//			},
//		})
//	}
//
// The suite drives the bucket arithmetic with a manual clock, so its
// assertions are exact and do not depend on how fast the machine is. Every
// subtest uses keys of its own random prefix, so a backend shared between
// tests (one DynamoDB table) passes too.
package ratelimittest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/ratelimit"
)

// Backend describes the limiter under test.
type Backend struct {
	// New returns a limiter that reads the time from now.
	New func(t *testing.T, now func() time.Time) ratelimit.Limiter
	// Shared reports that limiters returned by separate New calls share
	// their buckets (as DynamoDB limiters on one table do, like Lambda
	// instances). The concurrency tests then give each client a limiter
	// of its own; otherwise the clients share one.
	Shared bool
}

// Clients is how many concurrent clients the concurrency tests run.
const Clients = 8

// Clock is a manual clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock stopped at the current time, truncated to the
// millisecond.
func NewClock() *Clock { return &Clock{now: time.Now().Truncate(time.Millisecond)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Key returns a key unique to this run, so tests on a shared backend never
// meet each other's buckets.
func Key(t testing.TB, name string) string {
	t.Helper()
	var b [8]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return "rltest-" + hex.EncodeToString(b[:]) + "-" + name
}

// Run runs the suite.
func Run(t *testing.T, b Backend) {
	t.Helper()
	t.Run("NewBucketIsFull", func(t *testing.T) { t.Parallel(); testNewBucketIsFull(t, b) })
	t.Run("Refill", func(t *testing.T) { t.Parallel(); testRefill(t, b) })
	t.Run("RefusalTakesNothing", func(t *testing.T) { t.Parallel(); testRefusalTakesNothing(t, b) })
	t.Run("KeysAreIndependent", func(t *testing.T) { t.Parallel(); testKeysAreIndependent(t, b) })
	t.Run("InvalidArguments", func(t *testing.T) { t.Parallel(); testInvalid(t, b) })
	t.Run("ClockGoingBack", func(t *testing.T) { t.Parallel(); testClockGoingBack(t, b) })
	t.Run("ConcurrentClientsAdmitExactlyTheBucket", func(t *testing.T) { t.Parallel(); testConcurrentExact(t, b) })
	t.Run("ConcurrentClientsStayWithinTheBound", func(t *testing.T) { t.Parallel(); testConcurrentBound(t, b) })
}

func take(t *testing.T, l ratelimit.Limiter, key string, r ratelimit.Rule, n int) ratelimit.Decision {
	t.Helper()
	d, err := l.Take(context.Background(), key, r, n)
	require.NoError(t, err)
	return d
}

func testNewBucketIsFull(t *testing.T, b Backend) {
	clock := NewClock()
	l := b.New(t, clock.Now)
	key := Key(t, "full")
	r := ratelimit.Rule{Rate: 2, Burst: 5}
	for i := range 5 {
		d := take(t, l, key, r, 1)
		require.True(t, d.Allowed, "take %d of a full bucket of 5", i+1)
		require.Equal(t, 4-i, d.Remaining)
		require.Zero(t, d.RetryAfter)
	}
	d := take(t, l, key, r, 1)
	require.False(t, d.Allowed, "the sixth take of a bucket of 5 at one instant")
	require.Equal(t, 500*time.Millisecond, d.RetryAfter, "one token at 2/s")
	require.Zero(t, d.Remaining)
}

func testRefill(t *testing.T, b Backend) {
	clock := NewClock()
	l := b.New(t, clock.Now)
	key := Key(t, "refill")
	r := ratelimit.Rule{Rate: 2, Burst: 4}
	for range 4 {
		require.True(t, take(t, l, key, r, 1).Allowed)
	}
	require.False(t, take(t, l, key, r, 1).Allowed)
	clock.Advance(250 * time.Millisecond)
	d := take(t, l, key, r, 1)
	require.False(t, d.Allowed, "half a token after 250ms at 2/s")
	require.Equal(t, 250*time.Millisecond, d.RetryAfter)
	clock.Advance(250 * time.Millisecond)
	require.True(t, take(t, l, key, r, 1).Allowed, "one token after 500ms at 2/s")
	require.False(t, take(t, l, key, r, 1).Allowed)

	// A long pause refills to the burst, never above it.
	clock.Advance(time.Hour)
	for range 4 {
		require.True(t, take(t, l, key, r, 1).Allowed)
	}
	require.False(t, take(t, l, key, r, 1).Allowed, "the bucket holds at most its burst")

	// Per scales the rate: 3 a minute is one every 20s.
	key = Key(t, "per-minute")
	r = ratelimit.Rule{Rate: 3, Per: time.Minute, Burst: 1}
	require.True(t, take(t, l, key, r, 1).Allowed)
	d = take(t, l, key, r, 1)
	require.False(t, d.Allowed)
	require.Equal(t, 20*time.Second, d.RetryAfter)
	clock.Advance(20 * time.Second)
	require.True(t, take(t, l, key, r, 1).Allowed)
}

func testRefusalTakesNothing(t *testing.T, b Backend) {
	clock := NewClock()
	l := b.New(t, clock.Now)
	key := Key(t, "refusal")
	r := ratelimit.Rule{Rate: 1, Burst: 5}
	require.True(t, take(t, l, key, r, 3).Allowed)
	d := take(t, l, key, r, 3)
	require.False(t, d.Allowed, "3 of the 2 left")
	require.Equal(t, 2, d.Remaining)
	require.Equal(t, time.Second, d.RetryAfter, "one more token at 1/s")
	d = take(t, l, key, r, 2)
	require.True(t, d.Allowed, "the refused take took nothing")
	require.Zero(t, d.Remaining)
}

func testKeysAreIndependent(t *testing.T, b Backend) {
	clock := NewClock()
	l := b.New(t, clock.Now)
	k1, k2 := Key(t, "a"), Key(t, "b")
	r := ratelimit.Rule{Rate: 1, Burst: 1}
	require.True(t, take(t, l, k1, r, 1).Allowed)
	require.False(t, take(t, l, k1, r, 1).Allowed)
	require.True(t, take(t, l, k2, r, 1).Allowed, "another key has its own bucket")
}

func testInvalid(t *testing.T, b Backend) {
	clock := NewClock()
	l := b.New(t, clock.Now)
	ctx := context.Background()
	key := Key(t, "invalid")
	ok := ratelimit.Rule{Rate: 1, Burst: 2}
	for _, r := range []ratelimit.Rule{{}, {Rate: -1}, {Rate: 1, Per: -time.Second}, {Rate: 1, Burst: -1}} {
		_, err := l.Take(ctx, key, r, 1)
		require.ErrorIs(t, err, ratelimit.ErrInvalidRule, "%+v", r)
	}
	for _, n := range []int{0, -1, 3} {
		_, err := l.Take(ctx, key, ok, n)
		require.ErrorIs(t, err, ratelimit.ErrInvalidTake, "n=%d", n)
	}
	_, err := l.Take(ctx, "", ok, 1)
	require.ErrorIs(t, err, ratelimit.ErrInvalidTake)
	require.True(t, take(t, l, key, ok, 2).Allowed, "the invalid takes took nothing")
}

// testClockGoingBack: a process whose clock is behind the last writer's
// refills nothing, and the bucket never gains tokens from it.
func testClockGoingBack(t *testing.T, b Backend) {
	clock := NewClock()
	l := b.New(t, clock.Now)
	key := Key(t, "back")
	r := ratelimit.Rule{Rate: 1, Burst: 2}
	require.True(t, take(t, l, key, r, 2).Allowed)
	back := &Clock{now: clock.Now().Add(-time.Hour)}
	lb := b.New(t, back.Now)
	if !b.Shared {
		lb = l
		clock.mu.Lock()
		clock.now = back.now
		clock.mu.Unlock()
	}
	require.False(t, take(t, lb, key, r, 1).Allowed, "an earlier clock refills nothing")
}

// run has Clients clients take one token each, each rounds times, and
// returns how many takes were admitted.
func run(t *testing.T, b Backend, shared ratelimit.Limiter, now func() time.Time, key string, r ratelimit.Rule, rounds int) int64 {
	t.Helper()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range Clients {
		l := shared
		if b.Shared {
			l = b.New(t, now)
		}
		wg.Go(func() {
			for range rounds {
				d, err := l.Take(context.Background(), key, r, 1)
				if !assert.NoError(t, err) {
					return
				}
				if d.Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return admitted.Load()
}

// testConcurrentExact: with the clock stopped, Clients clients racing
// for a bucket of 10 get exactly 10 tokens between them, and exactly the
// refill after the clock moves.
func testConcurrentExact(t *testing.T, b Backend) {
	clock := NewClock()
	key := Key(t, "exact")
	r := ratelimit.Rule{Rate: 1, Burst: 10}
	shared := b.New(t, clock.Now)
	require.EqualValues(t, 10, run(t, b, shared, clock.Now, key, r, 5), "admitted of a full bucket of 10, clock stopped")
	clock.Advance(3 * time.Second)
	require.EqualValues(t, 3, run(t, b, shared, clock.Now, key, r, 3), "admitted after 3s at 1/s")
}

// testConcurrentBound: on the real clock, Clients clients taking as fast
// as they can are admitted at most Burst + Rate × elapsed, and at least
// Burst (the bucket starts full and a refusal means it emptied).
func testConcurrentBound(t *testing.T, b Backend) {
	key := Key(t, "bound")
	r := ratelimit.Rule{Rate: 20, Burst: 10}
	start := time.Now()
	admitted := run(t, b, b.New(t, time.Now), time.Now, key, r, 40)
	elapsed := time.Since(start)
	bound := float64(r.Burst) + r.Rate*elapsed.Seconds()
	t.Logf("%d clients, %d takes in %s: %d admitted, bound %.1f", Clients, Clients*40, elapsed, admitted, bound)
	require.LessOrEqual(t, float64(admitted), bound+1e-6, "admitted within burst + rate × elapsed")
	require.GreaterOrEqual(t, admitted, int64(r.Burst), "a full bucket admits its burst")
}
