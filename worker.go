package streamer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamer-go/streamer/storage"
)

// DefaultConcurrency is how many requests [App.Run] runs at once by default.
const DefaultConcurrency = 64

// sweepEvery is how often Run deletes expired items from stores that need it.
const sweepEvery = 10 * time.Minute

// worker is the embedded runtime's in-process queue.
type worker struct {
	mu      sync.Mutex
	ready   []storage.Key
	wake    chan struct{}
	timers  map[string]*time.Timer
	stopped bool
}

func (w *worker) push(k storage.Key) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.ready = append(w.ready, k)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) pop() (storage.Key, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ready) == 0 {
		return storage.Key{}, false
	}
	k := w.ready[0]
	w.ready = w.ready[1:]
	return k, true
}

func (w *worker) schedule(k storage.Key, at time.Time, now time.Time) {
	d := at.Sub(now)
	if d <= 0 {
		w.push(k)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	id := k.String()
	if t, ok := w.timers[id]; ok {
		t.Stop()
	}
	w.timers[id] = time.AfterFunc(d, func() {
		w.mu.Lock()
		delete(w.timers, id)
		w.mu.Unlock()
		w.push(k)
	})
}

func (w *worker) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
	for id, t := range w.timers {
		t.Stop()
		delete(w.timers, id)
	}
}

// notify hands a queued request to the embedded worker, when one runs. The
// AWS runtime has none: DynamoDB Streams invokes the processor instead.
func (a *App) notify(k storage.Key, at time.Time) {
	a.mu.Lock()
	w := a.worker
	a.mu.Unlock()
	if w != nil {
		w.schedule(k, at, a.now())
	}
}

// Run is the embedded runtime's processor loop: it runs queued requests
// in-process, up to concurrency at once (≤ 0 means [DefaultConcurrency]),
// until ctx is canceled. It first picks up the work a previous run left:
// queued requests are scheduled, and running ones (whose process died) are
// re-queued, so nothing is lost on a crash or restart. Run therefore assumes
// it is the only processor of its store, as with the embedded bolt store,
// which one process opens at a time.
//
// When ctx is canceled, running handlers are stopped and their requests
// re-queued; Run returns once they have all ended.
func (a *App) Run(ctx context.Context, concurrency int) error {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	w := &worker{wake: make(chan struct{}, 1), timers: map[string]*time.Timer{}}
	a.mu.Lock()
	if a.worker != nil {
		a.mu.Unlock()
		return errors.New("streamer: Run is already running")
	}
	a.worker = w
	a.mu.Unlock()
	defer func() {
		w.stop()
		a.mu.Lock()
		a.worker = nil
		a.mu.Unlock()
	}()

	if err := a.recoverWork(ctx, w); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("streamer: pick up unfinished requests: %w", err)
	}

	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	defer wg.Wait()
	sweep := time.NewTicker(sweepEvery)
	defer sweep.Stop()
	for {
		k, ok := w.pop()
		if !ok {
			select {
			case <-ctx.Done():
				return nil
			case <-w.wake:
			case <-sweep.C:
				a.sweep(ctx)
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case sem <- struct{}{}:
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := a.Process(ctx, k)
			var nd *NotDueError
			switch {
			case errors.As(err, &nd):
				w.schedule(k, nd.At, a.now())
			case err != nil:
				a.log.Error().Err(err).Str("request_id", k.ID).Msg("processing failed")
			}
		}()
	}
}

// recoverWork schedules what a previous process left unfinished.
func (a *App) recoverWork(ctx context.Context, w *worker) error {
	l, ok := a.cfg.Store.(storage.Lister)
	if !ok {
		return nil
	}
	reqs, err := l.ListUnfinished(ctx)
	if err != nil {
		return err
	}
	now := a.now()
	for _, r := range reqs {
		switch r.Status {
		case storage.StatusQueued:
			w.schedule(r.Key, r.NotBefore, now)
		case storage.StatusRunning:
			if err := a.cfg.Store.RequeueRequest(ctx, r.Key, r.Attempt, now); err != nil && !errors.Is(err, storage.ErrConflict) {
				return err
			}
			w.push(r.Key)
		case storage.StatusCanceling:
			if err := a.finishCanceled(ctx, r); err != nil {
				return err
			}
		}
	}
	if len(reqs) > 0 {
		a.log.Info().Int("requests", len(reqs)).Msg("picked up unfinished requests")
	}
	return nil
}

func (a *App) sweep(ctx context.Context) {
	s, ok := a.cfg.Store.(storage.Sweeper)
	if !ok {
		return
	}
	if n, err := s.Sweep(ctx, a.now()); err != nil {
		a.log.Warn().Err(err).Msg("sweeping expired items failed")
	} else if n > 0 {
		a.log.Debug().Int("deleted", n).Msg("swept expired items")
	}
}
