package streamer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamer-go/streamer/storage"
)

// DefaultConcurrency is how many requests [App.Run] runs at once by
// default. Most handlers of long requests wait on I/O, and a waiting run
// costs a few KiB (BenchmarkWaitingJobs), so the default is high; the
// per-key limit ([Config.KeyConcurrency]) keeps one tenant from taking
// them all.
const DefaultConcurrency = 10000

// DefaultKeyConcurrency is the most requests of one concurrency key (a
// tenant, or a subject without one) that run at once by default: on the
// embedded worker, the smaller of it and a quarter of Run's concurrency;
// on AWS, STREAMER_KEY_CONCURRENCY's default.
const DefaultKeyConcurrency = 100

// retryAfterError is how long the worker waits before it processes again a
// request whose processing failed with an error (the store failed).
const retryAfterError = time.Second

// sweepEvery is how often Run deletes expired items from stores that need it.
const sweepEvery = 10 * time.Minute

// worker is the embedded runtime's in-process queue. It is fair across
// concurrency keys (tenants): ready requests wait in one lane per key, the
// lanes take turns (round-robin), and a lane runs at most perKey requests
// at once, so one tenant's flood of long jobs cannot hold every slot.
//
// An action may also limit how many of its requests run at once, whatever
// their lane (ActionOptions.Concurrency). A lane keeps its ready requests
// in one queue per action, so a request whose action is at its limit
// waits without holding up the lane's requests of other actions; a lane
// passed over for that keeps its place in the turns, and the first lane in
// turn with a request of the action runs it when a run of the action ends.
type worker struct {
	mu      sync.Mutex
	lanes   map[string]*lane
	turns   []string            // the lanes with ready requests, in turn order
	perKey  int                 // running requests per lane; ≤ 0: no limit
	inReady map[storage.Key]int // how many times each key waits in a lane
	wake    chan struct{}
	timers  map[string]*time.Timer
	stopped bool

	// limits is each action's ActionOptions.Concurrency (positive ones
	// only); running counts the running requests of those actions.
	limits  map[string]int
	running map[string]int
	// actions is the action of each request the worker holds (ready, on a
	// timer, or running), for re-queues that name only the key (a retry's
	// notify); held counts the holds on the key, so the entry goes with
	// the last.
	actions map[storage.Key]string
	held    map[storage.Key]int
	seq     uint64 // orders the ready requests of a lane across its queues
}

// lane is one concurrency key's ready requests, by action, and its
// running count.
type lane struct {
	queues  map[string]*queue // by action; an action's queue is dropped when empty
	ready   int               // requests in the queues
	running int
	queued  bool // in turns
}

// queue is a lane's ready requests of one action, oldest first.
type queue struct {
	items []item
}

// item is a ready request.
type item struct {
	key    storage.Key
	action string // "" when unknown: no action limit applies
	seq    uint64
}

// concurrencyKey is the key the embedded worker shares its slots by: the
// request's tenant, or its subject when the principal has no tenant.
func concurrencyKey(k storage.Key) string {
	if k.Tenant != "" {
		return "t:" + k.Tenant
	}
	return "s:" + k.Subject
}

// actionConcurrency is the concurrency key and limit of action's runs:
// "a:" and the action's name, and its ActionOptions.Concurrency (0, no
// limit, for an action without one or not registered). The embedded
// worker counts the action's runs by it, across every lane; a processor
// that shares the count across processes (the AWS one) is to claim
// against the same key and limit.
func (a *App) actionConcurrency(action string) (string, int) {
	rt, ok := a.routes[action]
	if !ok || rt.action.Options.Concurrency <= 0 {
		return "", 0
	}
	return "a:" + action, rt.action.Options.Concurrency
}

// actionLimits lists the positive ActionOptions.Concurrency of the
// registered actions, for the worker.
func (a *App) actionLimits() map[string]int {
	out := map[string]int{}
	for name := range a.routes {
		if _, n := a.actionConcurrency(name); n > 0 {
			out[name] = n
		}
	}
	return out
}

func newWorker(perKey int, limits map[string]int) *worker {
	return &worker{
		wake: make(chan struct{}, 1), timers: map[string]*time.Timer{}, inReady: map[storage.Key]int{},
		lanes: map[string]*lane{}, perKey: perKey, limits: limits, running: map[string]int{},
		actions: map[storage.Key]string{}, held: map[storage.Key]int{},
	}
}

// holdLocked records that the worker holds k once more, of action (""
// keeps the action known of k), and returns k's action. w.mu is held.
func (w *worker) holdLocked(k storage.Key, action string) string {
	if action == "" {
		action = w.actions[k]
	} else {
		w.actions[k] = action
	}
	w.held[k]++
	return action
}

// releaseLocked drops one hold on k. w.mu is held.
func (w *worker) releaseLocked(k storage.Key) {
	if w.held[k]--; w.held[k] <= 0 {
		delete(w.held, k)
		delete(w.actions, k)
	}
}

// known reports whether the worker knows k's action.
func (w *worker) known(k storage.Key) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.actions[k] != ""
}

// push queues k, a request of action ("" when the caller does not know
// it: the action known of k, if any), as ready.
func (w *worker) push(k storage.Key, action string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	w.pushLocked(k, w.holdLocked(k, action))
}

// pushLocked queues k of action, already held, as ready. w.mu is held.
func (w *worker) pushLocked(k storage.Key, action string) {
	id := concurrencyKey(k)
	l := w.lanes[id]
	if l == nil {
		l = &lane{queues: map[string]*queue{}}
		w.lanes[id] = l
	}
	q := l.queues[action]
	if q == nil {
		q = &queue{}
		l.queues[action] = q
	}
	w.seq++
	q.items = append(q.items, item{key: k, action: action, seq: w.seq})
	l.ready++
	if !l.queued {
		l.queued = true
		w.turns = append(w.turns, id)
	}
	w.inReady[k]++
	w.signal()
}

// signal wakes the loop; w.mu is held.
func (w *worker) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// runnable reports whether a request of action may start now; w.mu is
// held.
func (w *worker) runnable(action string) bool {
	n, ok := w.limits[action]
	return !ok || w.running[action] < n
}

// pop takes the oldest ready request that may start of the first lane in
// turn that is below its running limit and holds one (a request whose
// action is at its ActionOptions.Concurrency may not), counts it running
// in its lane and its action, and moves the lane to the back of the
// turns. It returns the request and its lane's id for done.
func (w *worker) pop() (item, string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, id := range w.turns {
		l := w.lanes[id]
		if w.perKey > 0 && l.running >= w.perKey {
			continue
		}
		var q *queue
		for action, c := range l.queues {
			if w.runnable(action) && (q == nil || c.items[0].seq < q.items[0].seq) {
				q = c
			}
		}
		if q == nil {
			continue // every ready request waits for its action: keep the turn
		}
		it := q.items[0]
		q.items[0] = item{}
		q.items = q.items[1:]
		if len(q.items) == 0 {
			delete(l.queues, it.action) // let a long burst's array go
		}
		l.ready--
		l.running++
		if _, ok := w.limits[it.action]; ok {
			w.running[it.action]++
		}
		w.turns = append(w.turns[:i:i], w.turns[i+1:]...)
		if l.ready > 0 {
			w.turns = append(w.turns, id)
		} else {
			l.queued = false
		}
		if w.inReady[it.key]--; w.inReady[it.key] <= 0 {
			delete(w.inReady, it.key)
		}
		return it, id, true
	}
	return item{}, "", false
}

// done ends a request popped from lane id, freeing its place in the lane
// and its action.
func (w *worker) done(it item, id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.lanes[id]
	l.running--
	if l.running == 0 && !l.queued {
		delete(w.lanes, id) // memory stays bounded by the active keys
	}
	if _, ok := w.limits[it.action]; ok {
		if w.running[it.action]--; w.running[it.action] <= 0 {
			delete(w.running, it.action)
		}
	}
	w.releaseLocked(it.key)
	w.signal()
}

// has reports whether k waits in the ready queue or on a timer.
func (w *worker) has(k storage.Key) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, timed := w.timers[k.String()]
	return w.inReady[k] > 0 || timed
}

// schedule queues k, a request of action ("" when unknown: the action
// known of k), to be ready at at.
func (w *worker) schedule(k storage.Key, action string, at time.Time, now time.Time) {
	d := at.Sub(now)
	if d <= 0 {
		w.push(k, action)
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	id := k.String()
	if t, ok := w.timers[id]; ok && t.Stop() {
		w.releaseLocked(k) // the timer's hold
	}
	action = w.holdLocked(k, action)
	w.timers[id] = time.AfterFunc(d, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.timers, id)
		if w.stopped {
			return
		}
		w.pushLocked(k, action) // the timer's hold passes to the queue
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
// Callers that know the request's action use notifyAction.
func (a *App) notify(k storage.Key, at time.Time) { a.notifyAction(k, "", at) }

// notifyAction is notify for a request of action. When action is "" and
// the worker does not hold the request (a re-queue by a Process call the
// worker did not start), the action is read from the store, so the
// action's Concurrency still applies.
func (a *App) notifyAction(k storage.Key, action string, at time.Time) {
	a.mu.Lock()
	w := a.worker
	a.mu.Unlock()
	if w == nil {
		return
	}
	if action == "" && len(w.limits) > 0 && !w.known(k) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := a.cfg.Store.GetRequest(ctx, k)
		cancel()
		if err == nil {
			action = r.Action
		} else {
			a.log.Debug().Err(err).Str("request_id", k.ID).Msg("queued without its action")
		}
	}
	w.schedule(k, action, at, a.now())
}

// Run is the embedded runtime's processor loop: it runs queued requests
// in-process, up to concurrency at once (≤ 0 means [DefaultConcurrency]),
// until ctx is canceled. It first picks up the work a previous run left:
// queued requests are scheduled, and running ones (whose process died) are
// taken over, counting a stall, and re-queued, so nothing is lost on a crash
// or restart, and a request that crashes the process every time ends after
// Config.MaxStalls restarts. Run therefore assumes
// it is the only processor of its store, as with the embedded bolt store,
// which one process opens at a time.
//
// When ctx is canceled, running handlers are stopped and their requests
// re-queued; Run returns once they have all ended.
func (a *App) Run(ctx context.Context, concurrency int) error {
	if concurrency <= 0 {
		concurrency = DefaultConcurrency
	}
	perKey := a.cfg.KeyConcurrency
	if perKey == 0 {
		perKey = min(DefaultKeyConcurrency, max(1, concurrency/4))
	}
	w := newWorker(perKey, a.actionLimits())
	a.mu.Lock()
	if a.worker != nil {
		a.mu.Unlock()
		return errors.New("streamer: Run is already running")
	}
	a.worker = w
	a.mu.Unlock()
	defer func() {
		w.stop()
		a.stopPending()
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
	var reap <-chan time.Time
	if a.cfg.ReapInterval > 0 {
		t := time.NewTicker(a.cfg.ReapInterval)
		defer t.Stop()
		reap = t.C
	}
	for {
		select {
		case <-sweep.C:
			a.sweep(ctx)
		case <-reap:
			if _, err := a.Reap(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn().Err(err).Msg("reaping stalled requests failed")
			}
		default:
		}
		// A slot first, then the next request in turn that may use it.
		select {
		case <-ctx.Done():
			return nil
		case sem <- struct{}{}:
		}
		it, laneID, ok := w.pop()
		if !ok {
			<-sem
			select {
			case <-ctx.Done():
				return nil
			case <-w.wake:
			case <-sweep.C:
				a.sweep(ctx)
			case <-reap:
				if _, err := a.Reap(ctx); err != nil && ctx.Err() == nil {
					a.log.Warn().Err(err).Msg("reaping stalled requests failed")
				}
			}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer w.done(it, laneID)
			k := it.key
			err := a.processRecovered(ctx, k)
			var nd *NotDueError
			switch {
			case errors.As(err, &nd):
				w.schedule(k, it.action, nd.At, a.now())
			case err != nil && ctx.Err() == nil:
				// Most likely the store failed: try again shortly. A run
				// that still holds its lease is then due when the lease
				// ends, and the reaper is the backstop.
				a.log.Error().Err(err).Str("request_id", k.ID).Msg("processing failed; trying again")
				w.schedule(k, it.action, a.now().Add(retryAfterError), a.now())
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
	// Counting starts before the listing, and admissions wait for its
	// end, so that none is measured against a count that lacks the
	// requests listed.
	a.beginPending()
	reqs, err := l.ListUnfinished(ctx)
	if err != nil {
		return err
	}
	a.startPending(reqs)
	now := a.now()
	for _, r := range reqs {
		switch r.Status {
		case storage.StatusQueued:
			w.schedule(r.Key, r.Action, r.NotBefore, now)
		case storage.StatusRunning:
			// The process that ran it died (Run is its store's only
			// processor), so its lease is void: take the request over at
			// once, which fences the dead run off and counts a stall, and
			// hand it back to the queue. A request that keeps crashing
			// the process is ended once it stalled more than MaxStalls
			// times, instead of crashing every restart.
			at := now
			if !at.After(r.LeaseUntil) {
				at = r.LeaseUntil.Add(time.Millisecond)
			}
			c, err := a.cfg.Store.ClaimRequest(ctx, r.Key, storage.Claim{Now: at, LeaseUntil: at})
			if err == nil {
				// Handed back to continue, from its checkpoint.
				err = a.cfg.Store.ContinueRequest(ctx, r.Key, c.Attempt, now)
			}
			if err != nil && !errors.Is(err, storage.ErrConflict) && !errors.Is(err, storage.ErrNotFound) {
				return err
			}
			w.push(r.Key, r.Action)
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

// reapBatch is how many due requests one [App.Reap] handles at most.
const reapBatch = 100

// Reap finds live requests that have stalled: queued for longer than
// Config.StallTimeout past their NotBefore, or running or canceling with a
// lease that passed that long ago. It hands each one to a processor again,
// or ends it when it cannot run:
//
//   - With [App.Run] running (the embedded runtime), a stalled request that
//     the worker does not hold is queued on the worker, whose claim takes it
//     over.
//   - Otherwise (the AWS runtime, where a scheduled Lambda calls Reap), Reap
//     claims the request itself, which fences out any processor still
//     writing to it and counts a stall, then re-queues it, which the
//     processor's stream delivers again.
//
// A canceling request is finished canceled, and one that stalled more than
// Config.MaxStalls times is ended with PROCESSING_FAILED, so no request is
// left running forever. Reap handles at most 100 requests a call and
// reports how many it handed back or ended. The store must implement
// [storage.DueLister].
func (a *App) Reap(ctx context.Context) (int, error) {
	l, ok := a.cfg.Store.(storage.DueLister)
	if !ok {
		return 0, fmt.Errorf("streamer: reap: the store (%T) cannot list due requests (storage.DueLister)", a.cfg.Store)
	}
	reqs, err := l.ListDue(ctx, a.now().Add(-a.cfg.StallTimeout), reapBatch)
	if err != nil {
		return 0, fmt.Errorf("streamer: reap: list due requests: %w", err)
	}
	n := 0
	var errs []error
	for _, r := range reqs {
		done, err := a.reapOne(ctx, r)
		if err != nil {
			errs = append(errs, err)
		}
		if done {
			n++
		}
	}
	if n > 0 {
		a.log.Warn().Int("requests", n).Msg("reaped stalled requests")
	}
	if wk, ok := a.cfg.Store.(storage.Waker); ok {
		woken, err := wk.WakeWaiting(ctx, a.now())
		if err != nil {
			errs = append(errs, fmt.Errorf("streamer: reap: wake parked requests: %w", err))
		}
		if woken > 0 {
			a.log.Warn().Int("requests", woken).Msg("woke parked requests whose wake was lost")
		}
	}
	return n, errors.Join(errs...)
}

// reapOne hands one stalled request back to a processor, or ends it.
func (a *App) reapOne(ctx context.Context, r storage.Request) (bool, error) {
	a.mu.Lock()
	w := a.worker
	local := len(a.local[r.Key.String()]) > 0
	a.mu.Unlock()
	if local {
		// A run in this process holds it; if its lease cannot be
		// renewed it stops by itself.
		return false, nil
	}
	if w != nil {
		if w.has(r.Key) {
			return false, nil // waiting its turn
		}
		w.push(r.Key, r.Action)
		return true, nil
	}
	now := a.now()
	c, err := a.cfg.Store.ClaimRequest(ctx, r.Key, storage.Claim{Now: now, LeaseUntil: now.Add(a.cfg.Lease), Stalled: true})
	switch {
	case errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrWaiting):
		return false, nil // picked up or finished meanwhile, or parked for a slot of its key
	case err != nil:
		return false, fmt.Errorf("streamer: reap %s: claim: %w", r.Key.ID, err)
	}
	ops := context.WithoutCancel(ctx)
	st, err := a.newRunState(ops, c)
	if err != nil {
		// The claim's lease runs out and the next reap tries again.
		return false, fmt.Errorf("streamer: reap %s: %w", r.Key.ID, err)
	}
	switch {
	case c.Status == storage.StatusCanceling:
		err = st.finishCanceled()
	case c.Stalls > a.cfg.MaxStalls:
		err = st.finishError(stalledError(c.Stalls))
	default:
		err = st.continueLater(now)
	}
	if err != nil {
		return false, fmt.Errorf("streamer: reap %s: %w", r.Key.ID, err)
	}
	return true, nil
}
