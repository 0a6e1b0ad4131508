package ratelimit_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/ratelimit"
)

func TestParseRule(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]ratelimit.Rule{
		"10/s,burst=20":   {Rate: 10, Per: time.Second, Burst: 20},
		"10/s":            {Rate: 10, Per: time.Second, Burst: 10},
		" 100/m ":         {Rate: 100, Per: time.Minute, Burst: 100},
		"0.5/s":           {Rate: 0.5, Per: time.Second, Burst: 1},
		"5/h,burst=1":     {Rate: 5, Per: time.Hour, Burst: 1},
		"3/10s, burst= 4": {Rate: 3, Per: 10 * time.Second, Burst: 4},
	} {
		got, err := ratelimit.ParseRule(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
		again, err := ratelimit.ParseRule(got.String())
		require.NoError(t, err, got.String())
		require.Equal(t, got, again, "String round-trips")
	}
	for _, in := range []string{"", "10", "x/s", "10/d", "0/s", "-1/s", "10/s,burst=0", "10/s,cap=3", "10/0s", "Inf/s", "NaN/s"} {
		_, err := ratelimit.ParseRule(in)
		require.ErrorIs(t, err, ratelimit.ErrInvalidRule, in)
	}
}

func TestTakeArithmetic(t *testing.T) {
	t.Parallel()
	r, err := ratelimit.Rule{Rate: 4, Burst: 2}.Normalize()
	require.NoError(t, err)
	t0 := time.Unix(1000, 0)
	s, d := r.Take(ratelimit.State{}, t0, 2)
	require.True(t, d.Allowed)
	require.Equal(t, ratelimit.State{Tokens: 0, Updated: t0}, s)
	s2, d := r.Take(s, t0.Add(100*time.Millisecond), 1)
	require.False(t, d.Allowed)
	require.Equal(t, s, s2, "a refusal changes nothing")
	require.Equal(t, 150*time.Millisecond, d.RetryAfter, "0.4 tokens held, 0.6 more at 4/s")
	require.Equal(t, 500*time.Millisecond, r.FillTime())
}
