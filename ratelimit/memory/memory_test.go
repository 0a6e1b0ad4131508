package memory_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/ratelimit/memory"
	"github.com/streamer-go/streamer/ratelimit/ratelimittest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	ratelimittest.Run(t, ratelimittest.Backend{
		New: func(_ *testing.T, now func() time.Time) ratelimit.Limiter {
			return memory.New(memory.Options{Now: now})
		},
	})
}

func TestMemoryIsBounded(t *testing.T) {
	t.Parallel()
	clock := ratelimittest.NewClock()
	l := memory.New(memory.Options{MaxKeys: 3, Now: clock.Now})
	r := ratelimit.Rule{Rate: 1, Burst: 2}
	ctx := context.Background()
	for _, k := range []string{"a", "b", "c"} {
		d, err := l.Take(ctx, k, r, 1)
		require.NoError(t, err)
		require.True(t, d.Allowed)
	}
	require.Equal(t, 3, l.Len())
	// Two seconds on, every bucket has refilled: dropping one loses nothing.
	clock.Advance(2 * time.Second)
	_, err := l.Take(ctx, "d", r, 1)
	require.NoError(t, err)
	require.Equal(t, 3, l.Len(), "held at MaxKeys")
	require.Zero(t, l.Evicted(), "the bucket dropped had refilled")

	// Buckets still refilling are dropped least recently used first, and counted.
	clock.Advance(2 * time.Second)
	for _, k := range []string{"e", "f", "g"} {
		_, err := l.Take(ctx, k, r, 2)
		require.NoError(t, err)
	}
	require.Equal(t, 3, l.Len())
	_, err = l.Take(ctx, "h", r, 1)
	require.NoError(t, err)
	require.Equal(t, 1, l.Evicted(), "e was dropped while empty")
	d, err := l.Take(ctx, "g", r, 1)
	require.NoError(t, err)
	require.False(t, d.Allowed, "g, used recently, is still held and empty")

	// A flood of distinct keys keeps the bound.
	for i := range 1000 {
		_, err := l.Take(ctx, string(rune('A'+i%26))+time.Duration(i).String(), r, 1)
		require.NoError(t, err)
	}
	require.Equal(t, 3, l.Len())
}
