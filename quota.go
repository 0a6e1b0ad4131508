package streamer

import (
	"errors"

	"github.com/streamer-go/streamer/storage"
)

// CodeQuotaExceeded refuses or ends a request that would pass one of the
// App's quotas; details name it: {"quota": "...", "limit": N}. Nothing the
// quota guards is stored.
const CodeQuotaExceeded = "QUOTA_EXCEEDED"

// Defaults of the quotas (see [Config]).
const (
	// DefaultMaxPending is how many queued plus running requests one
	// principal may have.
	DefaultMaxPending = 1000
	// DefaultMaxResultBytes is the largest result of one request.
	DefaultMaxResultBytes = 16 << 20
	// DefaultMaxEvents is how many events one request may store.
	DefaultMaxEvents = 200000
)

// QuotaDetails is the details of a QUOTA_EXCEEDED error.
type QuotaDetails struct {
	// Quota names the quota: "pending_requests", "result_bytes" or
	// "events".
	Quota string `json:"quota"`
	// Limit is its value.
	Limit int64 `json:"limit"`
}

// quotaError is a QUOTA_EXCEEDED error naming the quota and its limit.
func quotaError(quota string, limit int64, format string, args ...any) *Error {
	return Errorf(CodeQuotaExceeded, format, args...).WithDetails(QuotaDetails{Quota: quota, Limit: limit})
}

// pendingCounts counts, for the embedded runtime, each principal's queued
// and running requests: the requests this App admitted and has not
// finished, starting from the unfinished ones [App.Run] found. It is
// exact because the embedded runtime is the only processor of its store;
// without Run (on AWS, where routers and processors are separate
// processes) it is off, and the store counts instead (the DynamoDB store's
// Limits: CreateRequest returns storage.ErrQuota).
type pendingCounts struct {
	on bool
	n  map[string]int
	// admitted are the requests counted between beginPending and
	// startPending, which the listing startPending gets may hold too.
	admitted map[storage.Key]bool
}

func principalID(k storage.Key) string {
	return storage.Key{Tenant: k.Tenant, Subject: k.Subject}.String()
}

// beginPending turns counting on, before Run lists the unfinished
// requests.
func (a *App) beginPending() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = pendingCounts{on: true, n: map[string]int{}, admitted: map[storage.Key]bool{}}
}

// startPending adds the unfinished requests reqs, but those admitted since
// beginPending (already counted).
func (a *App) startPending(reqs []storage.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range reqs {
		if !a.pending.admitted[r.Key] {
			a.pending.n[principalID(r.Key)]++
		}
	}
	a.pending.admitted = nil
}

// stopPending turns counting off when Run returns.
func (a *App) stopPending() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = pendingCounts{}
}

// admitPending counts a new request of k's principal, or refuses it with
// QUOTA_EXCEEDED when the principal has Config.MaxPending already. undo
// uncounts it (the request was not stored after all).
func (a *App) admitPending(k storage.Key) (undo func(), err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.pending.on || a.cfg.MaxPending < 0 {
		return func() {}, nil
	}
	id := principalID(k)
	if a.pending.n[id] >= a.cfg.MaxPending {
		return nil, quotaError("pending_requests", int64(a.cfg.MaxPending),
			"%d requests of yours are queued or running, the most allowed; wait for one to end (or cancel one)", a.pending.n[id])
	}
	a.pending.n[id]++
	if a.pending.admitted != nil {
		a.pending.admitted[k] = true
	}
	return func() { a.finishPending(k) }, nil
}

// finishPending uncounts a request of k's principal that ended.
func (a *App) finishPending(k storage.Key) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.pending.on {
		return
	}
	id := principalID(k)
	if a.pending.n[id]--; a.pending.n[id] <= 0 {
		delete(a.pending.n, id)
	}
}

// checkResultSize refuses a result larger than Config.MaxResultBytes.
func (a *App) checkResultSize(data []byte) *Error {
	if limit := a.cfg.MaxResultBytes; limit > 0 && len(data) > limit {
		return quotaError("result_bytes", int64(limit), "the result is %d bytes of JSON; the most allowed is %d (Config.MaxResultBytes): store large outputs in a blob store and return a URL", len(data), limit)
	}
	return nil
}

// errEventQuota stops a handler that reached Config.MaxEvents.
var errEventQuota = errors.New("streamer: the request stored Config.MaxEvents events")

// eventQuotaError is the terminal error of a request stopped at
// Config.MaxEvents.
func (a *App) eventQuotaError() *ErrorBody {
	return Body(quotaError("events", int64(a.cfg.MaxEvents),
		"the request stored %d events, the most allowed (Config.MaxEvents); report progress less often", a.cfg.MaxEvents), CodeQuotaExceeded)
}
