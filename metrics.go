package streamer

import (
	"time"

	"github.com/streamer-go/streamer/metrics"
)

// The App's metric hooks (Config.Metrics). Dimensions are of low
// cardinality only: action names the App serves (or "unknown"), outcomes
// and error codes; never a tenant, subject or id.

// Outcomes of the metrics.
const (
	outcomeOK        = "ok"
	outcomeAccepted  = "accepted"
	outcomeRefused   = "refused"
	outcomeError     = "error"
	outcomeRetry     = "retry"
	outcomeContinued = "continued"
	outcomeLost      = "lost"
	outcomeStored    = "stored"
	outcomeCoalesced = "coalesced"
	outcomeGone      = "gone"
)

// unknownAction is the action dimension of a frame whose action the App
// does not serve: client-chosen names never become dimensions.
const unknownActionDim = "unknown"

// actionDim is action when the App serves it or it is reserved, and
// "unknown" otherwise.
func (a *App) actionDim(action string) string {
	if _, ok := a.routes[action]; ok || Reserved(action) {
		return action
	}
	return unknownActionDim
}

// mRequest counts a frame of an action (metrics.Requests) and, when it
// was refused RATE_LIMITED, a rate-limit refusal.
func (a *App) mRequest(action, outcome, code string) {
	action = a.actionDim(action)
	a.metrics.Add(metrics.Requests, metrics.Dims{Action: action, Outcome: outcome, Code: code}, 1)
	if code == CodeRateLimited {
		a.metrics.Add(metrics.RateLimited, metrics.Dims{Action: action}, 1)
	}
}

// mRefusedFrame counts a frame refused by the App's own rate limit
// (reserved actions included) or by an action's.
func (a *App) mRefusedFrame(action, code string) {
	if Reserved(action) {
		if code == CodeRateLimited {
			a.metrics.Add(metrics.RateLimited, metrics.Dims{Action: action}, 1)
		}
		return
	}
	a.mRequest(action, outcomeRefused, code)
}

// mSync counts a sync request's answer and observes its duration.
func (a *App) mSync(action, outcome, code string, start time.Time) {
	a.mRequest(action, outcome, code)
	a.metrics.Observe(metrics.SyncDuration, metrics.Dims{Action: a.actionDim(action), Outcome: outcome}, time.Since(start).Seconds())
}

// mClaimed observes the queue lag of a claimed request: from when it was
// due (created, or due again) to now, its claim.
func (a *App) mClaimed(st *runState, now time.Time) {
	due := st.req.CreatedAt
	if st.req.NotBefore.After(due) {
		due = st.req.NotBefore
	}
	st.runStart = time.Now()
	if !due.IsZero() {
		a.metrics.Observe(metrics.QueueLag, metrics.Dims{Action: a.actionDim(st.req.Action)}, max(now.Sub(due), 0).Seconds())
	}
}

// mRunEnd observes the duration of a run that ends with outcome (once per
// run; runs never claimed are not observed).
func (st *runState) mRunEnd(outcome string) {
	st.mu.Lock()
	start := st.runStart
	st.runStart = time.Time{}
	st.mu.Unlock()
	if start.IsZero() {
		return
	}
	a := st.app
	a.metrics.Observe(metrics.RunDuration, metrics.Dims{Action: a.actionDim(st.req.Action), Outcome: outcome}, time.Since(start).Seconds())
}

// mProgressStored counts a stored progress event and, for the run's
// first, observes the time from its claim.
func (st *runState) mProgressStored() {
	a := st.app
	action := a.actionDim(st.req.Action)
	a.metrics.Add(metrics.ProgressEvents, metrics.Dims{Action: action, Outcome: outcomeStored}, 1)
	st.mu.Lock()
	first := !st.progressed && !st.runStart.IsZero()
	st.progressed = true
	start := st.runStart
	st.mu.Unlock()
	if first {
		a.metrics.Observe(metrics.FirstProgress, metrics.Dims{Action: action}, time.Since(start).Seconds())
	}
}

// mCoalesced counts the progress reports of a run its coalescer dropped.
func (st *runState) mCoalesced(n int64) {
	if n > 0 {
		st.app.metrics.Add(metrics.ProgressEvents, metrics.Dims{Action: st.app.actionDim(st.req.Action), Outcome: outcomeCoalesced}, float64(n))
	}
}

// mFinished counts a request's terminal event, stored by this run.
func (st *runState) mFinished(body *ErrorBody) {
	a := st.app
	outcome, code := outcomeOK, ""
	if body != nil {
		outcome, code = outcomeError, body.Code
	}
	a.metrics.Add(metrics.Finished, metrics.Dims{Action: a.actionDim(st.req.Action), Outcome: outcome, Code: code}, 1)
	st.mRunEnd(outcome)
}

// mPost counts one message posted to a connection by the processor.
func (a *App) mPost(outcome string) {
	a.metrics.Add(metrics.Posts, metrics.Dims{Outcome: outcome}, 1)
}
