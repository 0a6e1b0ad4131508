package streamer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/progress"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/transport"
)

// NotDueError is returned by [App.Process] for a request that cannot run
// yet: a queued one whose retry delay has not passed, or one claimed by
// another processor (which may have died) whose lease has not expired.
// Process it again at At.
type NotDueError struct {
	At time.Time
	// Held is set when another processor holds the request: At is when
	// its lease ends, which a live processor keeps moving.
	Held bool
}

func (e *NotDueError) Error() string {
	return "streamer: request not due until " + e.At.UTC().Format(time.RFC3339Nano)
}

// StopMargin is how long before the deadline of the context given to
// [App.Process] (a Lambda's deadline) the processor stops the handler and
// hands the request back to be continued (from its checkpoint, see
// [Checkpoint]), so the work is picked up again instead of lost. With less
// than ten times StopMargin left when the run starts, a tenth of what is
// left is used instead.
const StopMargin = 3 * time.Second

// maxStoredResult is the largest result kept with the request itself for
// status replies; larger ones are only in the event log.
const maxStoredResult = 64 << 10

var (
	errStopped      = errors.New("streamer: processor stopping")
	errLost         = errors.New("streamer: request taken over or finished elsewhere")
	errStorage      = errors.New("streamer: storage failed while running")
	errTimeoutCause = errors.New("streamer: handler timeout")
	errMaxDuration  = errors.New("streamer: request past its MaxDuration")
	// errLeaseUnrenewed stops a handler whose lease ran out because the
	// store could not be reached to renew it.
	errLeaseUnrenewed = errors.New("streamer: lease could not be renewed")
)

// Process is the processor: it claims a queued request, runs its handler with
// a reporter that stores and sends progress events, and stores exactly one
// terminal event. A request that is not queued (a duplicate delivery, or
// already claimed) is skipped with a nil error; one whose retry delay has not
// passed returns a [*NotDueError]. A delivery of a request that finished
// less than Config.StallTimeout ago sends its terminal event again, so a
// terminal event whose first send was lost (its processor crashed right
// after storing it, or the write committed but reported an error) still
// reaches its subscribers; clients drop the duplicate seq.
//
// Retryable failures re-queue the request with backoff and return nil. When
// ctx is canceled, or its deadline is within [StopMargin], the handler is
// stopped and the request re-queued to be run again. Process returns after
// the handler and everything it started have ended.
func (a *App) Process(ctx context.Context, key storage.Key) error {
	// Registered before the claim, so a cancel that arrives between the
	// claim and the handler's start still reaches this run.
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lr := a.track(key, cancel)
	defer a.untrack(key, lr)

	now, claimAt := a.now(), a.spanStart()
	r, err := a.cfg.Store.ClaimRequest(ctx, key, storage.Claim{Now: now, LeaseUntil: now.Add(a.cfg.Lease)})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil
	case errors.Is(err, storage.ErrWaiting):
		// Its key runs as many requests as allowed; the store parked it,
		// and the run that frees a slot wakes it.
		a.log.Debug().Str("request_id", key.ID).Msg("parked: its key is at its concurrency limit")
		return nil
	case errors.Is(err, storage.ErrConflict):
		cur, gerr := a.cfg.Store.GetRequest(ctx, key)
		switch {
		case errors.Is(gerr, storage.ErrNotFound):
			return nil
		case gerr != nil:
			return fmt.Errorf("streamer: read request %s after a lost claim: %w", key.ID, gerr)
		case cur.Status.Final():
			if now.Sub(cur.UpdatedAt) < a.cfg.StallTimeout {
				return a.resendTerminal(ctx, cur)
			}
			return nil
		case cur.Status == storage.StatusQueued && cur.NotBefore.After(now):
			return &NotDueError{At: cur.NotBefore}
		case a.runningHere(key):
			return nil // a duplicate delivery of a run in this process
		case cur.Status != storage.StatusQueued && cur.LeaseUntil.After(now):
			// Claimed by a processor that may have died: its lease says
			// when the request may be taken over. Delivered again then, it
			// runs, so a crash loses nothing.
			return &NotDueError{At: cur.LeaseUntil.Add(time.Millisecond), Held: true}
		}
		return nil
	case err != nil:
		return fmt.Errorf("streamer: claim %s: %w", key.ID, err)
	}
	ctx, rctx, sp := a.startProcess(ctx, rctx, r, claimAt)
	err = a.run(ctx, rctx, r)
	endSpan(sp, err)
	return err
}

// localRun is one Process call in flight in this App.
type localRun struct {
	cancel context.CancelCauseFunc
}

func (a *App) track(key storage.Key, cancel context.CancelCauseFunc) *localRun {
	lr := &localRun{cancel: cancel}
	id := key.String()
	a.mu.Lock()
	a.local[id] = append(a.local[id], lr)
	a.mu.Unlock()
	return lr
}

func (a *App) untrack(key storage.Key, lr *localRun) {
	id := key.String()
	a.mu.Lock()
	defer a.mu.Unlock()
	runs := a.local[id]
	for i, r := range runs {
		if r == lr {
			runs = append(runs[:i], runs[i+1:]...)
			break
		}
	}
	if len(runs) == 0 {
		delete(a.local, id)
		return
	}
	a.local[id] = runs
}

// runningHere reports whether another Process call of this App holds key:
// counted from before its claim, so a duplicate delivery that loses the
// claim race never mistakes a live local run for a dead processor's.
func (a *App) runningHere(key storage.Key) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.local[key.String()]) > 1
}

// cancelLocal cancels every Process call of this App that holds key, and
// reports whether there was one. A call that has not claimed yet claims a
// canceling request and finishes it canceled.
func (a *App) cancelLocal(key storage.Key) bool {
	a.mu.Lock()
	runs := a.local[key.String()]
	for _, r := range runs {
		r.cancel(ErrCanceled)
	}
	a.mu.Unlock()
	return len(runs) > 0
}

// runState is one run of one request.
type runState struct {
	app      *App
	key      storage.Key
	req      storage.Request
	opsCtx   context.Context // for storage and sends; outlives the handler's ctx
	cancel   context.CancelCauseFunc
	mu       sync.Mutex // guards seq, pct, msg, lost and the subscriber cache
	seq      int64
	pct      float64
	msg      string
	lost     bool
	subs     []string
	subsAt   time.Time
	haveSubs bool
	// subsVer is the request's SubsVersion that subs reflects; AppendEvent
	// refuses a stale one, which is how a new subscriber is noticed
	// without reading the subscribers for every event.
	subsVer int64
	dropped map[string]bool
	// endpoints caches the transport endpoints of subscribers, read for a
	// request that has none of its own (one submitted by a backend, with
	// no connection).
	endpoints map[string]string
	// senderUntil is when the token of the connection that sent the
	// request expires (zero: never); past it, events are no longer sent
	// to that connection (its subscribers' own subscriptions end with
	// their tokens).
	senderUntil time.Time
	// runStart is when this run claimed the request (zero when it is
	// not a run, or its end was measured); progressed is set at its
	// first stored progress event. For the metrics (metrics.go).
	runStart   time.Time
	progressed bool
}

func (a *App) newRunState(ctx context.Context, r storage.Request) (*runState, error) {
	last, err := a.lastEvent(ctx, r.Key)
	if err != nil {
		return nil, err
	}
	return &runState{
		app: a, key: r.Key, req: r, opsCtx: ctx,
		seq: last.Seq, pct: last.Percentage, msg: last.Message, subsVer: r.SubsVersion,
	}, nil
}

// run runs a claimed request. ctx is Process's; rctx is derived from it and
// canceled with ErrCanceled by an in-process cancel.
func (a *App) run(ctx, rctx context.Context, r storage.Request) error {
	ops := context.WithoutCancel(ctx)
	st, err := a.newRunState(ops, r)
	if err != nil {
		// Nothing ran: hand the request back at once rather than leaving
		// it to its lease.
		st = &runState{app: a, key: r.Key, req: r, opsCtx: ops}
		if rerr := st.continueLater(a.now().Add(time.Second)); rerr != nil {
			st.rlog().Warn().Err(rerr).Msg("re-queueing after a failed start failed")
		}
		return err
	}
	a.mClaimed(st, a.now())
	if r.Status == storage.StatusCanceling {
		return st.finishCanceled()
	}
	if r.Stalls > a.cfg.MaxStalls {
		return st.finishError(stalledError(r.Stalls))
	}
	if r.Continuations > a.cfg.MaxContinuations {
		return st.finishError(continuationsError(r.Continuations))
	}
	rt, ok := a.routes[r.Action]
	if !ok {
		return st.finishError(&ErrorBody{Code: CodeProcessingFailed, Message: fmt.Sprintf("no handler is registered for action %q", r.Action)})
	}
	// The request's running time in all, across continuations and
	// retries, is bounded by the action's MaxDuration.
	maxDur := cmp.Or(rt.action.Options.MaxDuration, a.cfg.Retention)
	started := r.StartedAt
	if started.IsZero() {
		started = r.CreatedAt
	}
	left := started.Add(maxDur).Sub(a.now())
	if left <= 0 {
		return st.finishError(maxDurationError(maxDur))
	}
	var p Principal
	if err := json.Unmarshal(r.Principal, &p); err != nil {
		return st.finishError(&ErrorBody{Code: CodeInternal, Message: "internal error"})
	}
	st.senderUntil = a.TokenDeadline(&p)
	req := &Request{
		ID: r.Key.ID, Action: r.Action, Payload: r.Payload, Metadata: r.Metadata,
		Principal: p, ConnectionID: r.ConnectionID, Stage: StageProcess, Attempt: attemptNumber(r),
		Checkpoint: r.Checkpoint,
	}

	hctx, cancel := context.WithCancelCause(rctx)
	defer cancel(nil)
	st.cancel = cancel
	timeout := a.timeout(rt, ModeAsync)
	// A run never outlives its request's retention: past it the request
	// is gone, so the handler stops in time to report TIMEOUT.
	if left := r.ExpiresAt.Sub(a.now()) - a.cfg.Lease; !r.ExpiresAt.IsZero() && left < timeout {
		timeout = max(left, 0)
	}
	hctx, cancelT := context.WithTimeoutCause(hctx, timeout, errTimeoutCause)
	defer cancelT()
	if left < timeout {
		var cancelM context.CancelFunc
		hctx, cancelM = context.WithTimeoutCause(hctx, left, errMaxDuration)
		defer cancelM()
	}
	if dl, ok := ctx.Deadline(); ok {
		margin := min(StopMargin, time.Until(dl)/10)
		var cancelD context.CancelFunc
		hctx, cancelD = context.WithDeadlineCause(hctx, dl.Add(-margin), errStopped)
		defer cancelD()
	}

	w := st.startWatch(hctx)

	rep := st.newReporter()
	var res any
	var herr error
	// The run's lifecycle event comes first: a failed write stops the run
	// (through st.cancel) before the handler starts.
	if hctx.Err() == nil && st.lifecycle(req.Attempt) == nil && hctx.Err() == nil {
		res, herr = a.serve(hctx, rt.chain, req, rep)
	}
	rep.close()
	w.stop()

	cause := context.Cause(hctx)
	if hctx.Err() == nil {
		cause = nil
	}
	st.mu.Lock()
	lost := st.lost
	st.mu.Unlock()
	switch {
	case lost || errors.Is(cause, errLost):
		st.mRunEnd(outcomeLost)
		return nil
	case errors.Is(cause, ErrCanceled):
		return st.finishCanceled()
	case ctx.Err() != nil || errors.Is(cause, errStopped) || errors.Is(cause, errStorage) || errors.Is(cause, errLeaseUnrenewed):
		// Stopped before it could finish: the next run continues.
		return st.continueLater(a.now())
	case errors.Is(cause, errEventQuota):
		return st.finishError(a.eventQuotaError())
	case errors.Is(cause, errMaxDuration):
		return st.finishError(maxDurationError(maxDur))
	case errors.Is(cause, errTimeoutCause):
		return st.finishError(&ErrorBody{Code: CodeTimeout, Message: "the handler ran past its deadline"})
	case herr == nil:
		return st.finishResult(res)
	}
	body := a.handlerError(hctx, req, herr, CodeProcessingFailed)
	if body.Retryable && req.Attempt < rt.action.Options.Retry.maxAttempts() {
		next := a.now().Add(rt.action.Options.Retry.backoff(req.Attempt))
		_, sp := a.startSpan(ctx, SpanRetry)
		spanEvent(sp, int64(req.Attempt), body.Code)
		err := st.retry(req.Attempt, next, body)
		endSpan(sp, err)
		return err
	}
	return st.finishError(body)
}

// attemptNumber is the number of r's current attempt: 1, plus one for each
// retry after a failure. Claims that continue a stopped run (counted in
// Continuations) or take over a dead one (counted in Stalls) keep the
// number. The reaper's and a restart's rescue of a dead run claims twice
// (a fencing claim, handed back with ContinueRequest, then the run's), and
// counts one stall and one continuation.
func attemptNumber(r storage.Request) int {
	return max(1, r.Attempt-r.Continuations-r.Stalls)
}

// continuationsError is the terminal error of a request continued more
// times than Config.MaxContinuations allows.
func continuationsError(n int) *ErrorBody {
	return &ErrorBody{
		Code:    CodeTimeout,
		Message: fmt.Sprintf("the request was continued %d times without finishing, more than Config.MaxContinuations allows", n),
	}
}

// maxDurationError is the terminal error of a request that ran past its
// action's MaxDuration.
func maxDurationError(d time.Duration) *ErrorBody {
	return &ErrorBody{
		Code:    CodeTimeout,
		Message: fmt.Sprintf("the request ran past its MaxDuration (%s) in all, across its runs", d),
	}
}

// stalledError is the terminal error of a request that stopped too often
// without finishing.
func stalledError(stalls int) *ErrorBody {
	return &ErrorBody{
		Code:    CodeProcessingFailed,
		Message: fmt.Sprintf("the request stopped %d times without finishing (its processor crashed or lost its lease)", stalls),
	}
}

// resendTerminal sends a finished request's terminal event to its
// subscribers again.
func (a *App) resendTerminal(ctx context.Context, r storage.Request) error {
	ctx = a.continueTrace(ctx, r)
	st := &runState{app: a, key: r.Key, req: r, opsCtx: ctx}
	ev, err := a.cfg.Store.LastEvent(ctx, r.Key)
	if err != nil || !ev.Terminal() {
		return nil //nolint:nilerr // nothing to resend: a resume replays the log
	}
	st.fanout(ev.Data, true)
	return nil
}

func (p RetryPolicy) maxAttempts() int {
	if p.MaxAttempts <= 0 {
		return 3
	}
	return p.MaxAttempts
}

// backoff is the delay after the given (1-based) attempt failed.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	initial, maxB, mult, jitter := p.InitialBackoff, p.MaxBackoff, p.Multiplier, p.Jitter
	if initial <= 0 {
		initial = time.Second
	}
	if maxB <= 0 {
		maxB = time.Minute
	}
	if mult <= 0 {
		mult = 2
	}
	if jitter == 0 {
		jitter = 0.2
	}
	d := float64(initial) * math.Pow(mult, float64(max(attempt-1, 0)))
	d = math.Min(d, float64(maxB))
	if jitter > 0 {
		jitter = math.Min(jitter, 1)
		d = d*(1-jitter) + d*jitter*rand.Float64()
	}
	return time.Duration(d)
}

// retry stores the retrying event of a failed attempt and re-queues the
// request to run again at next.
func (st *runState) retry(attempt int, next time.Time, body *ErrorBody) error {
	if err := st.retrying(attempt, next, body); errors.Is(err, errLost) {
		st.mRunEnd(outcomeLost)
		return nil
	}
	st.app.metrics.Add(metrics.Retries, metrics.Dims{Action: st.app.actionDim(st.req.Action), Code: body.Code}, 1)
	st.mRunEnd(outcomeRetry)
	return st.requeue(next)
}

func (st *runState) requeue(at time.Time) error {
	return st.handBack(at, st.app.cfg.Store.RequeueRequest)
}

// continueLater hands a request whose run stopped before it could finish
// back to be continued from its checkpoint, counting a continuation, or
// ends it with TIMEOUT when it was continued Config.MaxContinuations times
// already.
func (st *runState) continueLater(at time.Time) error {
	if st.req.Continuations >= st.app.cfg.MaxContinuations {
		return st.finishError(continuationsError(st.req.Continuations + 1))
	}
	st.app.metrics.Add(metrics.Continuations, metrics.Dims{Action: st.app.actionDim(st.req.Action)}, 1)
	st.mRunEnd(outcomeContinued)
	return st.handBack(at, st.app.cfg.Store.ContinueRequest)
}

// handBack re-queues the request with write (RequeueRequest or
// ContinueRequest), to be claimed again at at.
func (st *runState) handBack(at time.Time, write func(context.Context, storage.Key, int, time.Time) error) error {
	err := write(st.opsCtx, st.key, st.req.Attempt, at)
	switch {
	case errors.Is(err, storage.ErrConflict):
		// Canceled meanwhile, or taken over: re-read and settle.
		cur, gerr := st.app.cfg.Store.GetRequest(st.opsCtx, st.key)
		if gerr == nil && cur.Status == storage.StatusCanceling {
			return st.finishCanceled()
		}
		return nil
	case err != nil:
		return fmt.Errorf("streamer: requeue %s: %w", st.key.ID, err)
	}
	st.app.notify(st.key, at)
	return nil
}

// eventReporter is the async Reporter: it coalesces updates, stores each
// emitted one as a progress event and sends it to the subscribers.
type eventReporter struct {
	st  *runState
	co  *progress.Coalescer[Update]
	mu  sync.Mutex
	max float64
}

func (st *runState) newReporter() *eventReporter {
	r := &eventReporter{st: st, max: st.pct}
	r.co = progress.NewCoalescer(st.app.cfg.CoalesceInterval, st.app.cfg.Clock, st.emitProgress)
	return r
}

// Report implements [Reporter].
func (r *eventReporter) Report(ctx context.Context, u Update) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	u.Percentage = clampPercentage(u.Percentage, r.max)
	r.max = u.Percentage
	r.mu.Unlock()
	return r.co.Add(u)
}

func (r *eventReporter) close() {
	_ = r.co.Flush()
	r.co.Close()
	r.st.mCoalesced(r.co.Dropped())
}

// clampPercentage keeps p within [last, 100]; NaN counts as last.
func clampPercentage(p, last float64) float64 {
	if math.IsNaN(p) || p < last {
		p = last
	}
	if p > 100 {
		p = 100
	}
	if p < 0 {
		p = 0
	}
	return p
}

func (st *runState) emitProgress(u Update) error { return st.emitProgressWith(u, nil) }

// emitProgressWith stores u as a progress event, with checkpoint (when
// non-nil) saved in the same write, and sends it.
func (st *runState) emitProgressWith(u Update, checkpoint json.RawMessage) error {
	a := st.app
	if err := st.eventQuota(); err != nil {
		return err
	}
	st.mu.Lock()
	if st.lost {
		st.mu.Unlock()
		return errLost
	}
	seq := st.seq + 1
	// Stored percentages never decrease, whatever order concurrent
	// Reports reached the coalescer in.
	u.Percentage = max(u.Percentage, st.pct)
	st.mu.Unlock()
	now := a.now()
	m := Message{
		Type: TypeProgress, RequestID: st.key.ID, Seq: seq, Percentage: u.Percentage,
		Message: u.Message, Metadata: u.Metadata, Timestamp: now.UnixMilli(),
	}
	data := m.AppendJSON(make([]byte, 0, 160))
	ev := storage.Event{
		Seq: seq, Type: TypeProgress, Percentage: u.Percentage, Message: u.Message,
		Data: data, CreatedAt: now, ExpiresAt: st.req.ExpiresAt, Checkpoint: checkpoint,
	}
	if err := st.append(ev); err != nil {
		return err
	}
	st.mProgressStored()
	st.fanout(data, false)
	return nil
}

// eventQuota stops the run when the next event would pass
// Config.MaxEvents, leaving room for the terminal event.
func (st *runState) eventQuota() error {
	limit := st.app.cfg.MaxEvents
	st.mu.Lock()
	full := limit > 0 && st.seq >= int64(limit)-1
	st.mu.Unlock()
	if !full {
		return nil
	}
	if st.cancel != nil {
		st.cancel(errEventQuota)
	}
	return errEventQuota
}

// saveCheckpoint stores a checkpoint with no event. A conflict means the
// run was superseded: it is lost and stops.
func (st *runState) saveCheckpoint(state json.RawMessage) error {
	st.mu.Lock()
	lost := st.lost
	st.mu.Unlock()
	if lost {
		return errLost
	}
	err := st.app.cfg.Store.SaveCheckpoint(st.opsCtx, st.key, st.req.Attempt, state)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound):
		st.mu.Lock()
		st.lost = true
		st.mu.Unlock()
		if st.cancel != nil {
			st.cancel(errLost)
		}
		return errLost
	}
	return fmt.Errorf("streamer: save the checkpoint of %s: %w", st.key.ID, err)
}

// lifecycle stores and sends the event that opens a run: started, or
// continued when the run resumes from a checkpoint.
func (st *runState) lifecycle(attempt int) error {
	m := Message{Type: TypeStarted, Attempt: attempt}
	if st.req.Checkpoint != nil {
		m.Type, m.Continuations = TypeContinued, st.req.Continuations
	}
	return st.lifecycleEvent(&m)
}

// retrying stores and sends the retrying event of a failed attempt that
// runs again at next.
func (st *runState) retrying(attempt int, next time.Time, body *ErrorBody) error {
	return st.lifecycleEvent(&Message{Type: TypeRetrying, Attempt: attempt, NextAt: next.UnixMilli(), Error: body})
}

// lifecycleEvent stores m, a lifecycle event, as the next event (with the
// request's current percentage and message, so the last event still tells
// its progress) and sends it.
func (st *runState) lifecycleEvent(m *Message) error {
	if err := st.eventQuota(); err != nil {
		return err
	}
	now := st.app.now()
	st.mu.Lock()
	m.Seq, m.Percentage, m.Message = st.seq+1, st.pct, st.msg
	st.mu.Unlock()
	m.RequestID, m.Timestamp = st.key.ID, now.UnixMilli()
	data := m.AppendJSON(make([]byte, 0, 160))
	ev := storage.Event{
		Seq: m.Seq, Type: m.Type, Percentage: m.Percentage, Message: m.Message,
		Data: data, CreatedAt: now, ExpiresAt: st.req.ExpiresAt,
	}
	if err := st.append(ev); err != nil {
		return err
	}
	st.fanout(data, false)
	return nil
}

// append stores a non-terminal event and advances seq. A conflict means
// another writer finished the request: the run is lost and stops.
func (st *runState) append(ev storage.Event) error {
	_, sp := st.app.startSpan(st.opsCtx, SpanAppend)
	spanEvent(sp, ev.Seq, ev.Type)
	err := st.appendEvent(ev)
	endSpan(sp, err)
	return err
}

func (st *runState) appendEvent(ev storage.Event) error {
	st.mu.Lock()
	ver := st.subsVer
	st.mu.Unlock()
	err := st.app.cfg.Store.AppendEvent(st.opsCtx, st.key, st.req.Attempt, ev, ver)
	for range 8 {
		var changed *storage.SubscribersChangedError
		if !errors.As(err, &changed) {
			break
		}
		// A connection subscribed since: read the subscribers with the
		// version, then append for them.
		st.mu.Lock()
		st.subsVer, st.haveSubs = changed.Version, false
		st.mu.Unlock()
		st.subscribers(true)
		err = st.app.cfg.Store.AppendEvent(st.opsCtx, st.key, st.req.Attempt, ev, changed.Version)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case err == nil:
		st.seq, st.pct, st.msg = ev.Seq, ev.Percentage, ev.Message
		return nil
	case errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound):
		st.lost = true
		if st.cancel != nil {
			st.cancel(errLost)
		}
		return errLost
	default:
		st.rlog().Error().Err(err).Msg("storing an event failed; the request will be re-queued")
		if st.cancel != nil {
			st.cancel(errStorage)
		}
		return fmt.Errorf("streamer: append event %d of %s: %w", ev.Seq, st.key.ID, err)
	}
}

// subscribers returns the connections to send to: the sender of the
// request, unless gone, and the stored subscribers. They are read when the
// run starts, when AppendEvent reports a new subscriber, when fresh is set
// (the terminal event), and every SubscriberRefresh if that is positive.
func (st *runState) subscribers(fresh bool) []string {
	a := st.app
	st.mu.Lock()
	defer st.mu.Unlock()
	now := a.now()
	refresh := a.cfg.SubscriberRefresh > 0 && now.Sub(st.subsAt) >= a.cfg.SubscriberRefresh
	if fresh || !st.haveSubs || refresh {
		subs, err := a.cfg.Store.Subscribers(st.opsCtx, st.key)
		if err != nil {
			st.rlog().Warn().Err(err).Msg("reading subscribers failed")
		} else {
			st.subs, st.subsAt, st.haveSubs = subs, now, true
		}
	}
	out := make([]string, 0, len(st.subs)+1)
	senderLive := st.senderUntil.IsZero() || now.Before(st.senderUntil)
	if st.req.ConnectionID != "" && !st.dropped[st.req.ConnectionID] && senderLive {
		out = append(out, st.req.ConnectionID)
	}
	for _, s := range st.subs {
		if s != st.req.ConnectionID && !st.dropped[s] {
			out = append(out, s)
		}
	}
	return out
}

// connEndpoint returns the transport endpoint stored with connection id,
// read once per run; "" when it has none or cannot be read.
func (st *runState) connEndpoint(id string) string {
	st.mu.Lock()
	ep, ok := st.endpoints[id]
	st.mu.Unlock()
	if ok {
		return ep
	}
	if c, err := st.app.cfg.Store.GetConnection(st.opsCtx, id); err == nil {
		ep = c.Endpoint
	}
	st.mu.Lock()
	if st.endpoints == nil {
		st.endpoints = map[string]string{}
	}
	st.endpoints[id] = ep
	st.mu.Unlock()
	return ep
}

// fanout sends an event to every subscriber. Connections that are gone are
// dropped with their subscriptions; the event stays stored for a resume.
func (st *runState) fanout(data []byte, terminal bool) {
	a := st.app
	for _, id := range st.subscribers(terminal) {
		endpoint := st.req.Endpoint
		if endpoint == "" {
			endpoint = st.connEndpoint(id)
		}
		_, sp := a.startSpan(st.opsCtx, SpanPost)
		spanConn(sp, id)
		err := a.cfg.Sender.Send(st.opsCtx, endpoint, id, data)
		endSpan(sp, err)
		switch {
		case err == nil:
			a.mPost(outcomeOK)
		case errors.Is(err, transport.ErrGone):
			a.mPost(outcomeGone)
			st.mu.Lock()
			if st.dropped == nil {
				st.dropped = map[string]bool{}
			}
			st.dropped[id] = true
			st.mu.Unlock()
			if derr := a.cfg.Store.DeleteConnection(st.opsCtx, id); derr != nil {
				st.rlog().Warn().Err(derr).Str("connection_id", id).Msg("dropping a gone connection failed")
			}
		default:
			a.mPost(outcomeError)
			st.rlog().Warn().Err(err).Str("connection_id", id).Msg("sending an event failed")
		}
	}
}

// finishResult stores the result, in chunks when it is too large for one
// message, and the terminal complete event.
func (st *runState) finishResult(res any) error {
	a := st.app
	data, err := marshalResult(res)
	if err != nil {
		st.rlog().Error().Err(err).Msg("result is not JSON")
		return st.finishError(&ErrorBody{Code: CodeInternal, Message: "internal error"})
	}
	if qerr := a.checkResultSize(data); qerr != nil {
		return st.finishError(Body(qerr, CodeQuotaExceeded))
	}
	now := a.now()
	st.mu.Lock()
	seq := st.seq + 1
	st.mu.Unlock()
	m := Message{Type: TypeComplete, RequestID: st.key.ID, Seq: seq, Result: data, Timestamp: now.UnixMilli()}
	enc := m.AppendJSON(make([]byte, 0, len(data)+128))
	chunks := 0
	if len(enc) > MaxMessageSize {
		parts := splitResult(string(data), chunkBudget(st.key.ID))
		for i, part := range parts {
			cm := chunkMessage(st.key.ID, seq, i, len(parts), part)
			cdata := cm.AppendJSON(make([]byte, 0, len(part)+256))
			ev := storage.Event{
				Seq: seq, Type: TypeResultChunk, Percentage: st.pct, Message: st.msg,
				Data: cdata, CreatedAt: now, ExpiresAt: st.req.ExpiresAt,
			}
			if err := st.append(ev); err != nil {
				if errors.Is(err, errLost) {
					return nil
				}
				return st.requeue(a.now())
			}
			st.fanout(cdata, false)
			seq++
		}
		chunks = len(parts)
		m = Message{Type: TypeComplete, RequestID: st.key.ID, Seq: seq, Chunks: chunks, Timestamp: now.UnixMilli()}
		enc = m.AppendJSON(nil)
	}
	stored := data
	if len(stored) > maxStoredResult {
		stored = nil
	}
	return st.finish(storage.Finish{
		Attempt: st.req.Attempt,
		Event:   storage.Event{Seq: seq, Type: TypeComplete, Percentage: 100, Message: st.msg, Data: enc, CreatedAt: now, ExpiresAt: st.req.ExpiresAt},
		Status:  storage.StatusSucceeded, Result: stored, ResultChunks: chunks, Now: now,
	})
}

// finishError stores the terminal error event.
func (st *runState) finishError(body *ErrorBody) error {
	now := st.app.now()
	st.mu.Lock()
	seq := st.seq + 1
	st.mu.Unlock()
	m := Message{Type: TypeError, RequestID: st.key.ID, Seq: seq, Error: body, Timestamp: now.UnixMilli()}
	status := storage.StatusFailed
	if body.Code == CodeCanceled {
		status = storage.StatusCanceled
	}
	return st.finish(storage.Finish{
		Attempt: st.req.Attempt,
		Event:   storage.Event{Seq: seq, Type: TypeError, Percentage: st.pct, Message: st.msg, Data: m.AppendJSON(nil), CreatedAt: now, ExpiresAt: st.req.ExpiresAt},
		Status:  status, Error: body, Now: now,
	})
}

func (st *runState) finish(f storage.Finish) error {
	_, sp := st.app.startSpan(st.opsCtx, SpanFinish)
	spanEvent(sp, f.Event.Seq, f.Event.Type)
	err := st.finishWrite(f)
	endSpan(sp, err)
	return err
}

func (st *runState) finishWrite(f storage.Finish) error {
	a := st.app
	err := a.cfg.Store.FinishRequest(st.opsCtx, st.key, f)
	// A write that failed may still have committed (a timeout after the
	// store applied it): read back before trying again, so the terminal
	// event is sent whenever it is stored, and stored at most once.
	wait := 50 * time.Millisecond
	deadline := time.Now().Add(a.cfg.Lease) // real time: it paces real retries
	for err != nil && !errors.Is(err, storage.ErrConflict) {
		st.rlog().Warn().Err(err).Msg("storing the terminal event failed; checking whether it was stored")
		if !time.Now().Before(deadline) {
			return fmt.Errorf("streamer: finish %s: %w", st.key.ID, err)
		}
		time.Sleep(wait)
		wait = min(wait*2, 2*time.Second)
		switch ours, rerr := st.stored(f.Event); {
		case rerr != nil:
			continue
		case ours:
			err = nil
		default:
			err = a.cfg.Store.FinishRequest(st.opsCtx, st.key, f)
		}
	}
	if err != nil {
		// Finished by someone else (exactly one terminal event), or by an
		// earlier try of ours whose answer was lost.
		if ours, rerr := st.stored(f.Event); rerr != nil || !ours {
			return nil //nolint:nilerr // not ours to send
		}
	}
	st.mu.Lock()
	st.seq = f.Event.Seq
	st.mu.Unlock()
	st.mFinished(f.Error)
	a.finishPending(st.key)
	st.fanout(f.Event.Data, true)
	return nil
}

// stored reports whether ev is the request's last stored event.
func (st *runState) stored(ev storage.Event) (bool, error) {
	last, err := st.app.cfg.Store.LastEvent(st.opsCtx, st.key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return last.Seq == ev.Seq && bytes.Equal(last.Data, ev.Data), nil
}

// finishCanceled ends a request that no processor is running.
func (a *App) finishCanceled(ctx context.Context, r storage.Request) error {
	ctx = a.continueTrace(ctx, r)
	st, err := a.newRunState(ctx, r)
	if err != nil {
		return err
	}
	return st.finishCanceled()
}

// liveReporter is the sync Reporter: coalesced progress without seq, sent
// to the requesting connection only and not stored.
type liveReporter struct {
	app  *App
	conn Conn
	id   string
	co   *progress.Coalescer[Update]
	mu   sync.Mutex
	max  float64
	sent float64 // the last percentage emitted
	ctx  context.Context
}

func (a *App) newLiveReporter(ctx context.Context, conn Conn, id string) *liveReporter {
	r := &liveReporter{app: a, conn: conn, id: id, ctx: ctx}
	return r
}

// Report implements [Reporter].
func (r *liveReporter) Report(ctx context.Context, u Update) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	if r.co == nil {
		r.co = progress.NewCoalescer(r.app.cfg.CoalesceInterval, r.app.cfg.Clock, r.emit)
	}
	u.Percentage = clampPercentage(u.Percentage, r.max)
	r.max = u.Percentage
	co := r.co
	r.mu.Unlock()
	return co.Add(u)
}

func (r *liveReporter) emit(u Update) error {
	// Emits never overlap (the coalescer serializes them), so sent holds
	// the last percentage sent: concurrent Reports cannot send it lower.
	u.Percentage = max(u.Percentage, r.sent)
	r.sent = u.Percentage
	r.app.reply(r.ctx, r.conn, &Message{
		Type: TypeProgress, RequestID: r.id, Percentage: u.Percentage, Message: u.Message,
		Metadata: u.Metadata, Timestamp: r.app.now().UnixMilli(),
	})
	return nil
}

func (r *liveReporter) close() {
	r.mu.Lock()
	co := r.co
	r.mu.Unlock()
	if co != nil {
		_ = co.Flush()
		co.Close()
	}
}

// chunkBudget is the most escaped result text one result_chunk may carry.
func chunkBudget(id string) int { return MaxMessageSize - 256 - len(id) }

// splitResult cuts text on rune boundaries into pieces whose JSON-escaped
// size is at most budget.
func splitResult(text string, budget int) []string {
	var parts []string
	start, size := 0, 2
	for i := 0; i < len(text); {
		r, n := utf8.DecodeRuneInString(text[i:])
		w := quotedLen(text[i:i+n]) - 2
		if r == utf8.RuneError && n == 1 {
			w = 6
		}
		if size+w > budget && i > start {
			parts = append(parts, text[start:i])
			start, size = i, 2
		}
		size += w
		i += n
	}
	return append(parts, text[start:])
}

func chunkMessage(id string, seq int64, index, total int, text string) *Message {
	return &Message{
		Type: TypeResultChunk, RequestID: id, Seq: seq, Index: index, Total: total,
		Data: appendString(make([]byte, 0, len(text)+2), text),
	}
}

// finishCanceled stores the terminal CANCELED error of a request a client
// canceled.
func (st *runState) finishCanceled() error {
	return st.finishError(&ErrorBody{Code: CodeCanceled, Message: "the request was canceled"})
}
