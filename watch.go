package streamer

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/streamer-go/streamer/storage"
)

// watcher renews a run's lease and, when CancelPoll is set, notices
// cancels made by other processes, on timers: a run that waits holds no
// goroutine for it. When the lease cannot be renewed before it runs out
// (the store is unreachable), it stops the handler: past its lease
// another processor may take the request over.
type watcher struct {
	st   *runState
	hctx context.Context

	mu         sync.Mutex
	stopped    bool
	renew      *time.Timer
	poll       *time.Timer
	leaseUntil time.Time
	busy       sync.WaitGroup // timer callbacks in flight
}

// startWatch arms the run's timers; stop disarms them and waits for a
// callback in flight, so nothing of the watch outlives the run.
func (st *runState) startWatch(hctx context.Context) *watcher {
	a := st.app
	w := &watcher{st: st, hctx: hctx, leaseUntil: st.req.LeaseUntil}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.renew = time.AfterFunc(a.cfg.Lease/3, w.renewLease)
	if a.cfg.CancelPoll > 0 {
		w.poll = time.AfterFunc(a.cfg.CancelPoll, w.pollCancel)
	}
	return w
}

func (w *watcher) stop() {
	w.mu.Lock()
	w.stopped = true
	w.renew.Stop()
	if w.poll != nil {
		w.poll.Stop()
	}
	w.mu.Unlock()
	w.busy.Wait()
}

// enter starts a callback: false when the watch stopped or the handler
// ended (nothing more to watch).
func (w *watcher) enter() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.hctx.Err() != nil {
		return false
	}
	w.busy.Add(1)
	return true
}

// rearm resets t to fire after d, unless the watch stopped.
func (w *watcher) rearm(t *time.Timer, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		t.Reset(d)
	}
}

// recoverStore stops the run when the store panicked (a damaged page)
// rather than the process; the run is continued.
func (w *watcher) recoverStore() {
	if p := recover(); p != nil {
		w.st.rlog().Error().Str("panic", fmt.Sprint(p)).
			Bytes("stack", debug.Stack()).Msg("renewing the lease panicked; stopping the handler")
		w.st.cancel(errStorage)
	}
}

func (w *watcher) renewLease() {
	if !w.enter() {
		return
	}
	defer w.busy.Done()
	defer w.recoverStore()
	st := w.st
	a := st.app
	until := a.now().Add(a.cfg.Lease)
	err := a.cfg.Store.ExtendLease(st.opsCtx, st.key, st.req.Attempt, until)
	retry := min(time.Second, max(a.cfg.Lease/20, time.Millisecond))
	switch {
	case err == nil:
		w.leaseUntil = until
		w.rearm(w.renew, a.cfg.Lease/3)
	case errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound):
		st.cancel(errLost)
	case !a.now().Add(retry).Before(w.leaseUntil):
		st.rlog().Error().Err(err).Msg("the lease could not be renewed before it ran out; stopping the handler")
		st.cancel(errLeaseUnrenewed)
	default:
		st.rlog().Warn().Err(err).Msg("renewing the lease failed; retrying")
		w.rearm(w.renew, retry)
	}
}

func (w *watcher) pollCancel() {
	if !w.enter() {
		return
	}
	defer w.busy.Done()
	defer w.recoverStore()
	st := w.st
	cur, err := st.app.cfg.Store.GetRequest(st.opsCtx, st.key)
	if err == nil && cur.Status == storage.StatusCanceling {
		st.cancel(ErrCanceled)
		return
	}
	w.rearm(w.poll, st.app.cfg.CancelPoll)
}
