package storage

import (
	"context"
	"errors"
	"time"
)

// ErrQuota means CreateRequest refused a request because its principal
// already has as many queued plus running requests as the store's quota
// allows (stores that count them: the DynamoDB store with Limits). Nothing
// was stored.
var ErrQuota = errors.New("storage: pending-request quota reached")

// ErrWaiting means ClaimRequest found the request's concurrency key (its
// tenant, or its subject when it has none) running as many requests as the
// store allows. The request stays queued, parked until a run of the same
// key ends and wakes it; the caller has nothing to run.
var ErrWaiting = errors.New("storage: waiting for a concurrency slot")

// Waker is implemented by stores that park requests (ErrWaiting). WakeWaiting
// wakes parked requests of every key that has free slots at now, and
// reports how many it woke. A run that ends wakes the next parked request
// of its key itself; WakeWaiting, called by the reaper, is the backstop for
// a wake that was lost (a processor that died between the two writes).
type Waker interface {
	WakeWaiting(ctx context.Context, now time.Time) (int, error)
}
