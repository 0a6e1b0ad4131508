package progress_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/progress"
	"github.com/streamer-go/streamer/progress/progresstest"
)

type recorder struct {
	mu  sync.Mutex
	got []int
}

func (r *recorder) emit(v int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, v)
	return nil
}

func (r *recorder) values() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.got...)
}

func setup(t *testing.T) (*progresstest.Clock, *recorder, *progress.Coalescer[int]) {
	t.Helper()
	clk := progresstest.New(time.Unix(1000, 0))
	rec := &recorder{}
	c := progress.NewCoalescer(100*time.Millisecond, clk, rec.emit)
	t.Cleanup(c.Close)
	return clk, rec, c
}

func TestFirstUpdateEmitsAtOnce(t *testing.T) {
	t.Parallel()
	_, rec, c := setup(t)
	require.NoError(t, c.Add(1))
	require.Equal(t, []int{1}, rec.values())
}

func TestBurstKeepsTrailingUpdate(t *testing.T) {
	t.Parallel()
	clk, rec, c := setup(t)
	for i := 1; i <= 50; i++ {
		require.NoError(t, c.Add(i))
	}
	require.Equal(t, []int{1}, rec.values(), "updates within the interval wait")
	clk.Advance(99 * time.Millisecond)
	require.Equal(t, []int{1}, rec.values())
	clk.Advance(time.Millisecond)
	require.Equal(t, []int{1, 50}, rec.values(), "the trailing update is emitted when the interval ends")
	require.Zero(t, clk.Pending())
}

func TestAtMostOnePerInterval(t *testing.T) {
	t.Parallel()
	clk, rec, c := setup(t)
	// 1000 updates over one second, one every millisecond.
	for i := 1; i <= 1000; i++ {
		require.NoError(t, c.Add(i))
		clk.Advance(time.Millisecond)
	}
	require.NoError(t, c.Flush())
	got := rec.values()
	require.LessOrEqual(t, len(got), 11, "at most 10 a second plus the first")
	require.GreaterOrEqual(t, len(got), 10)
	require.Equal(t, 1000, got[len(got)-1], "the latest update is never lost")
	for i := 1; i < len(got); i++ {
		require.Greater(t, got[i], got[i-1], "order is kept")
	}
}

func TestSpacedUpdatesAllEmitted(t *testing.T) {
	t.Parallel()
	clk, rec, c := setup(t)
	for i := 1; i <= 5; i++ {
		require.NoError(t, c.Add(i))
		clk.Advance(150 * time.Millisecond)
	}
	require.Equal(t, []int{1, 2, 3, 4, 5}, rec.values())
}

func TestFlushEmitsPendingAndCloseDrops(t *testing.T) {
	t.Parallel()
	clk, rec, c := setup(t)
	require.NoError(t, c.Add(1))
	require.NoError(t, c.Add(2))
	require.NoError(t, c.Flush())
	require.Equal(t, []int{1, 2}, rec.values())
	require.NoError(t, c.Flush(), "flush with nothing pending is a no-op")
	require.Equal(t, []int{1, 2}, rec.values())
	require.NoError(t, c.Add(3))
	c.Close()
	clk.Advance(time.Second)
	require.Equal(t, []int{1, 2}, rec.values(), "close drops the pending update")
	require.NoError(t, c.Add(4))
	require.Equal(t, []int{1, 2}, rec.values(), "nothing is emitted after close")
}

func TestEmitErrorStopsCoalescer(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	calls := 0
	c := progress.NewCoalescer(0, nil, func(int) error { calls++; return boom })
	defer c.Close()
	require.ErrorIs(t, c.Add(1), boom)
	require.ErrorIs(t, c.Add(2), boom)
	require.Equal(t, 1, calls)
}

func TestZeroIntervalEmitsEverything(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c := progress.NewCoalescer(0, nil, rec.emit)
	defer c.Close()
	for i := range 5 {
		require.NoError(t, c.Add(i))
	}
	require.Equal(t, []int{0, 1, 2, 3, 4}, rec.values())
}

func TestRealClockConcurrent(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	c := progress.NewCoalescer(time.Millisecond, nil, rec.emit)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				_ = c.Add(g*1000 + i)
			}
		}()
	}
	wg.Wait()
	require.NoError(t, c.Flush())
	c.Close()
	require.NotEmpty(t, rec.values())
}

func BenchmarkCoalescerAdd(b *testing.B) {
	var n int
	c := progress.NewCoalescer(100*time.Millisecond, nil, func(int) error { n++; return nil })
	defer c.Close()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_ = c.Add(i)
	}
	b.ReportMetric(float64(n), "emits")
}

func TestFlushWith(t *testing.T) {
	clock := progresstest.New(time.Unix(1000, 0))
	var got []int
	c := progress.NewCoalescer(time.Second, clock, func(v int) error { got = append(got, v); return nil })
	require.NoError(t, c.Add(1)) // emitted at once
	require.NoError(t, c.Add(2)) // pending
	var seen []int
	require.NoError(t, c.FlushWith(func(v int, has bool) error {
		require.True(t, has)
		seen = append(seen, v)
		return nil
	}))
	require.Equal(t, []int{2}, seen, "fn got the pending update")
	require.Equal(t, []int{1}, got, "and emit did not")
	clock.Advance(2 * time.Second)
	require.Equal(t, []int{1}, got, "the timer of the taken update does not fire")

	require.NoError(t, c.FlushWith(func(v int, has bool) error {
		require.False(t, has, "nothing pending")
		return nil
	}))
	fail := errors.New("boom")
	require.NoError(t, c.Add(3)) // interval passed: emitted
	require.ErrorIs(t, c.FlushWith(func(int, bool) error { return fail }), fail)
	require.NoError(t, c.Add(4), "an error without a pending update is not kept")
	require.ErrorIs(t, c.FlushWith(func(int, bool) error { return fail }), fail)
	require.ErrorIs(t, c.Add(6), fail, "an error with a pending update is kept")
	c.Close()
}

// Dropped counts the updates that were accepted and never emitted:
// replaced within the interval, or pending at Close.
func TestDroppedCountsCoalescedUpdates(t *testing.T) {
	t.Parallel()
	clk, rec, c := setup(t)
	for i := 1; i <= 5; i++ {
		require.NoError(t, c.Add(i))
	}
	require.Equal(t, int64(3), c.Dropped(), "2, 3 and 4 were replaced")
	clk.Advance(100 * time.Millisecond)
	require.Equal(t, []int{1, 5}, rec.values())
	clk.Advance(100 * time.Millisecond)
	require.NoError(t, c.Add(6))
	require.NoError(t, c.Add(7))
	c.Close()
	require.Equal(t, []int{1, 5, 6}, rec.values())
	require.Equal(t, int64(4), c.Dropped(), "7 was pending at Close")
	require.NoError(t, c.Add(8))
	require.Equal(t, int64(4), c.Dropped(), "updates refused after Close are not counted")
}

// lateClock is a clock whose timers the test runs itself, as late as it
// likes: a busy machine's timers.
type lateClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*lateTimer
}

type lateTimer struct {
	c     *lateClock
	f     func()
	fired bool
}

// Stop reports whether the timer was stopped before it ran.
func (t *lateTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	if t.fired {
		return false
	}
	t.fired = true
	return true
}

func (c *lateClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *lateClock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func (c *lateClock) AfterFunc(_ time.Duration, f func()) progress.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &lateTimer{c: c, f: f}
	c.timers = append(c.timers, t)
	return t
}

// fireAll runs the timers not stopped.
func (c *lateClock) fireAll() {
	c.mu.Lock()
	var fs []func()
	for _, t := range c.timers {
		if !t.fired {
			t.fired = true
			fs = append(fs, t.f)
		}
	}
	c.timers = nil
	c.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

// A timer that fires late does not push the next interval back: a steady
// reporter's next update, one interval after the late one was due, is
// emitted at once instead of waiting for a timer of its own.
func TestLateTimerDoesNotDelayTheNextUpdate(t *testing.T) {
	t.Parallel()
	start := time.Unix(1000, 0)
	clk := &lateClock{now: start}
	rec := &recorder{}
	c := progress.NewCoalescer(100*time.Millisecond, clk, rec.emit)
	defer c.Close()
	require.NoError(t, c.Add(1))
	clk.set(start.Add(99 * time.Millisecond))
	require.NoError(t, c.Add(2)) // held: due at 100 ms
	clk.set(start.Add(130 * time.Millisecond))
	clk.fireAll() // 30 ms late
	require.Equal(t, []int{1, 2}, rec.values())
	clk.set(start.Add(200 * time.Millisecond))
	require.NoError(t, c.Add(3))
	require.Equal(t, []int{1, 2, 3}, rec.values(), "an interval after 2 was due: emitted at once")
	clk.set(start.Add(250 * time.Millisecond))
	require.NoError(t, c.Add(4))
	require.Equal(t, []int{1, 2, 3}, rec.values(), "within the interval after 3: held")
}
