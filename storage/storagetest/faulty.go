package storagetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamer-go/streamer/storage"
)

// ErrInjected is the error a [Faulty] store injects (wrapped with
// context.DeadlineExceeded, as a timed-out call would be).
var ErrInjected = errors.New("storagetest: injected fault")

// Fault says how a [Faulty] store breaks one method.
type Fault struct {
	// Calls lists the 1-based numbers of the calls that fail (counted per
	// method since the fault was set).
	Calls []int
	// Commit makes a failing call run against the wrapped store first and
	// then report the failure: a write that committed but whose answer was
	// lost (a timeout).
	Commit bool
}

// Faulty wraps a store and makes chosen calls fail, for fault-injection
// tests of processors and runtimes. Before and After hooks observe every
// call. It forwards the optional interfaces (storage.Lister, DueLister,
// PrincipalLister, Sweeper) when the wrapped store has them, and fails them
// otherwise. It is safe for concurrent use.
type Faulty struct {
	storage.Store

	mu     sync.Mutex
	faults map[string]Fault
	calls  map[string]int
	failed map[string]int
	after  func(method string, k storage.Key, err error)
}

var (
	_ storage.Store     = (*Faulty)(nil)
	_ storage.Lister    = (*Faulty)(nil)
	_ storage.DueLister = (*Faulty)(nil)
	_ storage.Sweeper   = (*Faulty)(nil)
)

// NewFaulty wraps s with no faults.
func NewFaulty(s storage.Store) *Faulty {
	return &Faulty{Store: s, faults: map[string]Fault{}, calls: map[string]int{}, failed: map[string]int{}}
}

// Fail sets the fault of a method (by its name, such as "AppendEvent") and
// restarts its call count.
func (f *Faulty) Fail(method string, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[method] = fault
	f.calls[method] = 0
}

// After sets a hook run after every call of the methods that take a request
// key, with the call's result. It runs outside the store's lock and may call
// the store.
func (f *Faulty) After(hook func(method string, k storage.Key, err error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.after = hook
}

// Failed reports how many calls of method were failed so far.
func (f *Faulty) Failed(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed[method]
}

// fails counts a call of method and reports whether it fails, and whether
// it commits first.
func (f *Faulty) fails(method string) (fail, commit bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	fault, ok := f.faults[method]
	if !ok {
		return false, false
	}
	for _, n := range fault.Calls {
		if n == f.calls[method] {
			f.failed[method]++
			return true, fault.Commit
		}
	}
	return false, false
}

func (f *Faulty) observe(method string, k storage.Key, err error) {
	f.mu.Lock()
	hook := f.after
	f.mu.Unlock()
	if hook != nil {
		hook(method, k, err)
	}
}

func injected(method string) error {
	return fmt.Errorf("%s: %w: %w", method, ErrInjected, context.DeadlineExceeded)
}

// call runs op unless the fault says otherwise.
func (f *Faulty) call(method string, k storage.Key, op func() error) error {
	fail, commit := f.fails(method)
	var err error
	switch {
	case fail && commit:
		_ = op()
		err = injected(method)
	case fail:
		err = injected(method)
	default:
		err = op()
	}
	f.observe(method, k, err)
	return err
}

// GetRequest implements [storage.Store].
func (f *Faulty) GetRequest(ctx context.Context, k storage.Key) (r storage.Request, err error) {
	err = f.call("GetRequest", k, func() (e error) { r, e = f.Store.GetRequest(ctx, k); return e })
	return r, err
}

// ClaimRequest implements [storage.Store].
func (f *Faulty) ClaimRequest(ctx context.Context, k storage.Key, c storage.Claim) (r storage.Request, err error) {
	err = f.call("ClaimRequest", k, func() (e error) { r, e = f.Store.ClaimRequest(ctx, k, c); return e })
	return r, err
}

// ExtendLease implements [storage.Store].
func (f *Faulty) ExtendLease(ctx context.Context, k storage.Key, attempt int, until time.Time) error {
	return f.call("ExtendLease", k, func() error { return f.Store.ExtendLease(ctx, k, attempt, until) })
}

// RequeueRequest implements [storage.Store].
func (f *Faulty) RequeueRequest(ctx context.Context, k storage.Key, attempt int, notBefore time.Time) error {
	return f.call("RequeueRequest", k, func() error { return f.Store.RequeueRequest(ctx, k, attempt, notBefore) })
}

// ContinueRequest implements [storage.Store].
func (f *Faulty) ContinueRequest(ctx context.Context, k storage.Key, attempt int, notBefore time.Time) error {
	return f.call("ContinueRequest", k, func() error { return f.Store.ContinueRequest(ctx, k, attempt, notBefore) })
}

// SaveCheckpoint implements [storage.Store].
func (f *Faulty) SaveCheckpoint(ctx context.Context, k storage.Key, attempt int, state json.RawMessage) error {
	return f.call("SaveCheckpoint", k, func() error { return f.Store.SaveCheckpoint(ctx, k, attempt, state) })
}

// CancelRequest implements [storage.Store].
func (f *Faulty) CancelRequest(ctx context.Context, k storage.Key, now time.Time) (r storage.Request, err error) {
	err = f.call("CancelRequest", k, func() (e error) { r, e = f.Store.CancelRequest(ctx, k, now); return e })
	return r, err
}

// FinishRequest implements [storage.Store].
func (f *Faulty) FinishRequest(ctx context.Context, k storage.Key, fin storage.Finish) error {
	return f.call("FinishRequest", k, func() error { return f.Store.FinishRequest(ctx, k, fin) })
}

// AppendEvent implements [storage.Store].
func (f *Faulty) AppendEvent(ctx context.Context, k storage.Key, attempt int, e storage.Event, subsVersion int64) error {
	return f.call("AppendEvent", k, func() error { return f.Store.AppendEvent(ctx, k, attempt, e, subsVersion) })
}

// LastEvent implements [storage.Store].
func (f *Faulty) LastEvent(ctx context.Context, k storage.Key) (ev storage.Event, err error) {
	err = f.call("LastEvent", k, func() (e error) { ev, e = f.Store.LastEvent(ctx, k); return e })
	return ev, err
}

// ReadEvents implements [storage.Store].
func (f *Faulty) ReadEvents(ctx context.Context, k storage.Key, after int64, limit int) (evs []storage.Event, err error) {
	err = f.call("ReadEvents", k, func() (e error) { evs, e = f.Store.ReadEvents(ctx, k, after, limit); return e })
	return evs, err
}

// ListUnfinished implements [storage.Lister] when the wrapped store does.
func (f *Faulty) ListUnfinished(ctx context.Context) ([]storage.Request, error) {
	l, ok := f.Store.(storage.Lister)
	if !ok {
		return nil, fmt.Errorf("storagetest: %T is not a storage.Lister", f.Store)
	}
	return l.ListUnfinished(ctx)
}

// ListDue implements [storage.DueLister] when the wrapped store does.
func (f *Faulty) ListDue(ctx context.Context, before time.Time, limit int) ([]storage.Request, error) {
	l, ok := f.Store.(storage.DueLister)
	if !ok {
		return nil, fmt.Errorf("storagetest: %T is not a storage.DueLister", f.Store)
	}
	return l.ListDue(ctx, before, limit)
}

// Sweep implements [storage.Sweeper] when the wrapped store does.
func (f *Faulty) Sweep(ctx context.Context, now time.Time) (int, error) {
	s, ok := f.Store.(storage.Sweeper)
	if !ok {
		return 0, nil
	}
	return s.Sweep(ctx, now)
}
