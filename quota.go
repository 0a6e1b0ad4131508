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
	// listing is open while Run reads the unfinished requests (from
	// beginPending to startPending): admissions wait for it, so that none
	// is measured against a count that lacks them.
	listing chan struct{}
}

func principalID(k storage.Key) string {
	return storage.Key{Tenant: k.Tenant, Subject: k.Subject}.String()
}

// beginPending turns counting on, before Run lists the unfinished
// requests.
func (a *App) beginPending() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pending = pendingCounts{on: true, n: map[string]int{}, listing: make(chan struct{})}
}

// startPending adds the unfinished requests reqs and lets the admissions
// that waited for them go on.
func (a *App) startPending(reqs []storage.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range reqs {
		a.pending.n[principalID(r.Key)]++
	}
	a.endListing()
}

// endListing lets waiting admissions go on; a.mu must be held.
func (a *App) endListing() {
	if a.pending.listing != nil {
		close(a.pending.listing)
		a.pending.listing = nil
	}
}

// stopPending turns counting off when Run returns.
func (a *App) stopPending() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.endListing()
	a.pending = pendingCounts{}
}

// admitPending counts a new request of k's principal, or refuses it with
// QUOTA_EXCEEDED when the principal has Config.MaxPending already. undo
// uncounts it (the request was not stored after all). While Run reads the
// unfinished requests, it waits for them to be counted.
func (a *App) admitPending(k storage.Key) (undo func(), err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.pending.listing != nil {
		listing := a.pending.listing
		a.mu.Unlock()
		<-listing
		a.mu.Lock()
	}
	if !a.pending.on || a.cfg.MaxPending < 0 {
		return func() {}, nil
	}
	id := principalID(k)
	if a.pending.n[id] >= a.cfg.MaxPending {
		return nil, quotaError("pending_requests", int64(a.cfg.MaxPending),
			"%d requests of yours are queued or running, the most allowed; wait for one to end (or cancel one)", a.pending.n[id])
	}
	a.pending.n[id]++
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
