package streamer_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// waiters runs jobs handlers that wait until released: the shape of jobs
// that mostly wait on I/O.
type waiters struct {
	started atomic.Int64
	release chan struct{}
	app     *streamer.App
	done    chan error
	cancel  context.CancelFunc
}

// startWaiters serves an App on the memory store with the embedded
// worker at its default concurrency.
func startWaiters(tb testing.TB, cfg func(*streamer.Config)) *waiters {
	tb.Helper()
	w := &waiters{release: make(chan struct{}), done: make(chan error, 1)}
	wait := streamer.Action{Name: "wait", Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, _ *streamer.Request, _ streamer.Reporter) (any, error) {
			w.started.Add(1)
			select {
			case <-w.release:
				return "done", nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})}
	c := streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder(), Plugins: []streamer.Plugin{{Name: "w", Actions: []streamer.Action{wait}}}}
	if cfg != nil {
		cfg(&c)
	}
	app, err := streamer.New(c)
	require.NoError(tb, err)
	w.app = app
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { w.done <- app.Run(ctx, 0) }()
	return w
}

// submit submits n jobs spread over tenants, from a few goroutines.
func (w *waiters) submit(tb testing.TB, n, tenants int) {
	tb.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := g; i < n; i += 8 {
				p := streamer.Principal{Subject: fmt.Sprintf("u%d", i), Tenant: fmt.Sprintf("t%d", i%tenants)}
				if _, err := w.app.Submit(context.Background(), p, "wait", nil, streamer.SubmitOptions{IdempotencyKey: fmt.Sprintf("j%d", i)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(tb, err)
	}
}

// waitStarted polls until n handlers run, or fails after d.
func (w *waiters) waitStarted(tb testing.TB, n int64, d time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for w.started.Load() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d of %d jobs running after %v", w.started.Load(), n, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *waiters) stop(tb testing.TB) {
	tb.Helper()
	close(w.release)
	w.cancel()
	require.NoError(tb, <-w.done)
}

// TestManyWaitingJobsRunAtOnce: with the default concurrency and key
// limit, manyJobs jobs that wait, over 100 tenants, all run at once:
// none waits for another to end.
func TestManyWaitingJobsRunAtOnce(t *testing.T) {
	w := startWaiters(t, nil)
	w.submit(t, manyJobs, 100)
	w.waitStarted(t, manyJobs, 5*time.Minute)
	w.stop(t)
}

// BenchmarkWaitingJobs measures the memory of 10,000 running jobs that
// wait (heap and stacks, after a GC, per job).
func BenchmarkWaitingJobs(b *testing.B) {
	const n = 10000
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		w := startWaiters(b, nil)
		w.submit(b, n, 100)
		w.waitStarted(b, n, 5*time.Minute)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64((after.HeapInuse+after.StackInuse)-(before.HeapInuse+before.StackInuse))/n, "B/job")
		b.ReportMetric(float64(runtime.NumGoroutine())/n, "goroutines/job")
		w.stop(b)
	}
}
