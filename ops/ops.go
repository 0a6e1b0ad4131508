// Package ops is Streamer's operator inspector: it lists requests by
// status, action and tenant across every principal, shows one request with
// its event log, cancels it, retries a failed one and redrives what the
// processor's failure queue holds. It works over any [storage.Store] that
// is a [storage.StatusLister] (memory, bolt, DynamoDB), on both runtimes;
// `streamer ops` and the dev server's read-only /ops page use it.
//
// Operator access is never a client's: nothing here is reachable over the
// client WebSocket protocol.
//
// # Retry
//
// A finished request never changes again, and its event log already ends
// with a terminal event, so a retry never re-queues it: [Ops.Retry] submits
// a new request copying the failed one (principal, action, payload,
// metadata) through [streamer.App.Submit], so it is admitted (scopes,
// validation, middleware, limits) as any submitted request is. Its ID is
// the original's with ":retry-1" appended (":retry-N" becomes ":retry-N+1"
// when retrying a retry) and is the submission's idempotency key: retrying
// the same failed request twice finds the first retry rather than storing
// another. The original keeps its one terminal event.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
)

// StatusRetrying is the pseudo-status [Query.Status] takes to list queued
// requests that have run before: waiting for a retry after a failed
// attempt (its NotBefore the backoff), or to continue after a run that
// stopped (a deadline, a shutdown).
const StatusRetrying = "retrying"

// ErrNotLister means the store cannot list by status (it is not a
// [storage.StatusLister]).
var ErrNotLister = errors.New("ops: the store cannot list requests by status")

// ErrNotFailed means [Ops.Retry] was asked to retry a request that has not
// failed.
var ErrNotFailed = errors.New("ops: only a failed request can be retried")

// ErrNoApp means an operation that acts through the App (cancel, retry) was
// called on an [Ops] without one.
var ErrNoApp = errors.New("ops: cancel and retry need the App")

// Ops runs operator actions against a store.
type Ops struct {
	store storage.Store
	app   *streamer.App
	now   func() time.Time
}

// New returns the Ops of store. app, which may be nil for read-only use
// (List and Inspect), is the App whose Cancel and Submit Cancel and Retry
// use; it must use the same store.
func New(store storage.Store, app *streamer.App) *Ops {
	return &Ops{store: store, app: app, now: time.Now}
}

// Query selects a page of [Ops.List].
type Query struct {
	// Status is a request status (queued, running, canceling, succeeded,
	// failed, canceled) or [StatusRetrying]; it is required.
	Status string
	// Action and Tenant, when set, keep that action's or tenant's
	// requests only.
	Action, Tenant string
	// Within, when positive, keeps the requests whose status time
	// ([storage.StatusTime]: when a finished request finished, when a live
	// one is due) is at most Within before now: "finished in the last N
	// hours".
	Within time.Duration
	// Limit is the page size (see [storage.ListQuery.Limit]).
	Limit int
	// Cursor is the previous page's Cursor; empty starts with the newest.
	Cursor string
}

// Page is one page of [Ops.List].
type Page struct {
	// Requests are newest first by status time.
	Requests []storage.Request
	// Cursor continues the listing; empty on the last page. A page may be
	// short, even empty, and still have one.
	Cursor string
}

// ParseStatus checks a [Query.Status].
func ParseStatus(s string) (string, error) {
	switch st := storage.Status(s); st {
	case storage.StatusQueued, storage.StatusRunning, storage.StatusCanceling,
		storage.StatusSucceeded, storage.StatusFailed, storage.StatusCanceled:
		return s, nil
	}
	if s == StatusRetrying {
		return s, nil
	}
	return "", fmt.Errorf("ops: unknown status %q: use queued, retrying, running, canceling, succeeded, failed or canceled", s)
}

// List returns a page of the requests q selects, across every principal.
func (o *Ops) List(ctx context.Context, q Query) (Page, error) {
	st, err := ParseStatus(q.Status)
	if err != nil {
		return Page{}, err
	}
	l, ok := o.store.(storage.StatusLister)
	if !ok {
		return Page{}, ErrNotLister
	}
	sq := storage.StatusQuery{Status: storage.Status(st), Action: q.Action, Tenant: q.Tenant, Limit: q.Limit, Cursor: q.Cursor}
	if st == StatusRetrying {
		sq.Status = storage.StatusQueued
	}
	if q.Within > 0 {
		sq.Since = o.now().Add(-q.Within)
	}
	p, err := l.ListByStatus(ctx, sq)
	if err != nil {
		return Page{}, err
	}
	out := Page{Cursor: p.Cursor}
	for _, r := range p.Requests {
		if st == StatusRetrying && r.Attempt == 0 {
			continue
		}
		out.Requests = append(out.Requests, r)
	}
	return out, nil
}

// Detail is one request as [Ops.Inspect] shows it.
type Detail struct {
	// Request is the stored request: its status, attempts, stalls,
	// continuations, lease, checkpoint, result or error.
	Request storage.Request
	// Principal is the decoded principal it runs as (zero when it cannot
	// be decoded).
	Principal streamer.Principal
	// Events is its event log, in order.
	Events []storage.Event
}

// Inspect returns the request k and its event log. An unknown or expired
// request fails with an error wrapping storage.ErrNotFound.
func (o *Ops) Inspect(ctx context.Context, k storage.Key) (Detail, error) {
	r, err := o.store.GetRequest(ctx, k)
	if err != nil {
		return Detail{}, err
	}
	evs, err := o.store.ReadEvents(ctx, k, 0, 0)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return Detail{}, err
	}
	p, _ := streamer.StoredPrincipal(r)
	return Detail{Request: r, Principal: p, Events: evs}, nil
}

// Cancel cancels the request k through [streamer.App.Cancel], the path a
// client's cancel takes: exactly one terminal event, stored by whoever
// ends the run.
func (o *Ops) Cancel(ctx context.Context, k storage.Key) (storage.Request, error) {
	if o.app == nil {
		return storage.Request{}, ErrNoApp
	}
	return o.app.Cancel(ctx, k)
}

// retrySuffix matches a retry's ID.
var retrySuffix = regexp.MustCompile(`^(.*):retry-([0-9]+)$`)

// RetryID is the ID [Ops.Retry] gives the retry of the request id:
// id + ":retry-1", or the next number when id is itself a retry.
func RetryID(id string) string {
	if m := retrySuffix.FindStringSubmatch(id); m != nil {
		if n, err := strconv.Atoi(m[2]); err == nil {
			return m[1] + ":retry-" + strconv.Itoa(n+1)
		}
	}
	return id + ":retry-1"
}

// Retry submits a new request copying the failed request k, as the
// package's Retry section says, and returns the submission; its ID is
// [RetryID] of k's. A request that has not failed is refused with
// [ErrNotFailed]; Submit's refusals are [*streamer.Error]s.
func (o *Ops) Retry(ctx context.Context, k storage.Key) (streamer.SubmitResult, error) {
	if o.app == nil {
		return streamer.SubmitResult{}, ErrNoApp
	}
	r, err := o.store.GetRequest(ctx, k)
	if err != nil {
		return streamer.SubmitResult{}, err
	}
	if r.Status != storage.StatusFailed {
		return streamer.SubmitResult{}, fmt.Errorf("%w: %s is %s", ErrNotFailed, k.ID, r.Status)
	}
	p, err := streamer.StoredPrincipal(r)
	if err != nil {
		return streamer.SubmitResult{}, err
	}
	// The operator acts for the principal: the token it came with may
	// have expired since.
	p.ExpiresAt = time.Time{}
	var payload any
	if len(r.Payload) > 0 {
		payload = json.RawMessage(r.Payload)
	}
	return o.app.Submit(ctx, p, r.Action, payload, streamer.SubmitOptions{IdempotencyKey: RetryID(k.ID), Metadata: r.Metadata})
}
