// Package memory is an in-memory [storage.Store] for tests and examples.
//
// Everything lives in maps behind one mutex, so every method is atomic and
// safe for concurrent use. Nothing survives the process: use the bolt backend
// for a store that does. The store keeps copies of what it is given and
// returns copies of what it holds, so callers may mutate either freely.
//
// Expired items (a non-zero ExpiresAt before now) are invisible: lookups
// return [storage.ErrNotFound] and listings skip them. [Store.Sweep] deletes
// them.
package memory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/streamer-go/streamer/storage"
)

var (
	_ storage.Store     = (*Store)(nil)
	_ storage.Lister    = (*Store)(nil)
	_ storage.Sweeper   = (*Store)(nil)
	_ storage.DueLister = (*Store)(nil)
)

// Store is an in-memory [storage.Store], [storage.Lister] and
// [storage.Sweeper]. Create it with [New]; it is safe for concurrent use.
type Store struct {
	mu    sync.RWMutex
	conns map[string]storage.Connection
	reqs  map[storage.Key]*entry
	// subsByReq and subsByConn hold every subscription twice, with its
	// expiry (zero: never).
	subsByReq  map[storage.Key]map[string]time.Time
	subsByConn map[string]map[storage.Key]time.Time
}

// entry is a stored request and its event log, sorted by Seq.
type entry struct {
	req    storage.Request
	events []storage.Event
}

// New returns an empty store.
func New() *Store {
	return &Store{
		conns:      map[string]storage.Connection{},
		reqs:       map[storage.Key]*entry{},
		subsByReq:  map[storage.Key]map[string]time.Time{},
		subsByConn: map[string]map[storage.Key]time.Time{},
	}
}

// expired reports whether an item with the given expiry is gone at now.
func expired(expiresAt, now time.Time) bool {
	return !expiresAt.IsZero() && expiresAt.Before(now)
}

// errCtx returns the context's error, wrapped for op.
func errCtx(ctx context.Context, op string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: %s: %w", op, err)
	}
	return nil
}

// PutConnection creates or replaces a connection.
func (s *Store) PutConnection(ctx context.Context, c storage.Connection) error {
	if err := errCtx(ctx, "put connection"); err != nil {
		return err
	}
	if c.ID == "" {
		return errors.New("memory: put connection: empty connection id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c.ID] = cloneConn(c)
	return nil
}

// GetConnection returns the connection id, or [storage.ErrNotFound] when it
// does not exist or has expired.
func (s *Store) GetConnection(ctx context.Context, id string) (storage.Connection, error) {
	if err := errCtx(ctx, "get connection"); err != nil {
		return storage.Connection{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.conns[id]
	if !ok || expired(c.ExpiresAt, time.Now()) {
		return storage.Connection{}, fmt.Errorf("memory: get connection %q: %w", id, storage.ErrNotFound)
	}
	return cloneConn(c), nil
}

// DeleteConnection removes a connection and all its subscriptions. A missing
// connection is not an error.
func (s *Store) DeleteConnection(ctx context.Context, id string) error {
	if err := errCtx(ctx, "delete connection"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deleteConnLocked(id)
	return nil
}

func (s *Store) deleteConnLocked(id string) {
	delete(s.conns, id)
	for k := range s.subsByConn[id] {
		s.removeSubLocked(k, id)
	}
}

// Subscribe subscribes connID to k's events until expiresAt (zero: never).
// Subscribing again is not an error and replaces the expiry.
func (s *Store) Subscribe(ctx context.Context, k storage.Key, connID string, expiresAt time.Time) error {
	if err := errCtx(ctx, "subscribe"); err != nil {
		return err
	}
	if connID == "" {
		return errors.New("memory: subscribe: empty connection id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	byReq := s.subsByReq[k]
	if byReq == nil {
		byReq = map[string]time.Time{}
		s.subsByReq[k] = byReq
	}
	byReq[connID] = expiresAt
	byConn := s.subsByConn[connID]
	if byConn == nil {
		byConn = map[storage.Key]time.Time{}
		s.subsByConn[connID] = byConn
	}
	byConn[k] = expiresAt
	if e, err := s.lookupLocked("subscribe", k); err == nil {
		e.req.SubsVersion++
	}
	return nil
}

// Unsubscribe removes one subscription; a missing one is not an error.
func (s *Store) Unsubscribe(ctx context.Context, k storage.Key, connID string) error {
	if err := errCtx(ctx, "unsubscribe"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.removeSubLocked(k, connID)
	return nil
}

func (s *Store) removeSubLocked(k storage.Key, connID string) {
	if byReq := s.subsByReq[k]; byReq != nil {
		delete(byReq, connID)
		if len(byReq) == 0 {
			delete(s.subsByReq, k)
		}
	}
	if byConn := s.subsByConn[connID]; byConn != nil {
		delete(byConn, k)
		if len(byConn) == 0 {
			delete(s.subsByConn, connID)
		}
	}
}

// Subscribers lists the connections subscribed to k, in no particular order,
// leaving expired subscriptions out.
func (s *Store) Subscribers(ctx context.Context, k storage.Key) ([]string, error) {
	if err := errCtx(ctx, "subscribers"); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return live(s.subsByReq[k], time.Now()), nil
}

// Subscriptions lists the requests connID is subscribed to, in no
// particular order, leaving expired subscriptions out.
func (s *Store) Subscriptions(ctx context.Context, connID string) ([]storage.Key, error) {
	if err := errCtx(ctx, "subscriptions"); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return live(s.subsByConn[connID], time.Now()), nil
}

// live returns the keys of subs whose expiry has not passed at now.
func live[K comparable](subs map[K]time.Time, now time.Time) []K {
	var out []K
	for k, exp := range subs {
		if !expired(exp, now) {
			out = append(out, k)
		}
	}
	return out
}

// CreateRequest stores a new request, or returns [storage.ErrExists] and
// stores nothing when a live request has the same key. An expired request
// with the same key is replaced, events and subscriptions included.
func (s *Store) CreateRequest(ctx context.Context, r storage.Request) error {
	if err := errCtx(ctx, "create request"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.reqs[r.Key]; ok {
		if !expired(e.req.ExpiresAt, time.Now()) {
			return fmt.Errorf("memory: create request %s: %w", r.Key, storage.ErrExists)
		}
		s.deleteReqLocked(r.Key)
	}
	s.reqs[r.Key] = &entry{req: cloneRequest(r)}
	return nil
}

func (s *Store) deleteReqLocked(k storage.Key) {
	delete(s.reqs, k)
	for connID := range s.subsByReq[k] {
		s.removeSubLocked(k, connID)
	}
}

// lookupLocked returns the live entry of k or a wrapped ErrNotFound.
func (s *Store) lookupLocked(op string, k storage.Key) (*entry, error) {
	e, ok := s.reqs[k]
	if !ok || expired(e.req.ExpiresAt, time.Now()) {
		return nil, fmt.Errorf("memory: %s %s: %w", op, k, storage.ErrNotFound)
	}
	return e, nil
}

// GetRequest returns the request k, or [storage.ErrNotFound] when it does not
// exist or has expired.
func (s *Store) GetRequest(ctx context.Context, k storage.Key) (storage.Request, error) {
	if err := errCtx(ctx, "get request"); err != nil {
		return storage.Request{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, err := s.lookupLocked("get request", k)
	if err != nil {
		return storage.Request{}, err
	}
	return cloneRequest(e.req), nil
}

// ClaimRequest claims k as described by [storage.Store.ClaimRequest] and
// sets UpdatedAt to c.Now.
func (s *Store) ClaimRequest(ctx context.Context, k storage.Key, c storage.Claim) (storage.Request, error) {
	if err := errCtx(ctx, "claim request"); err != nil {
		return storage.Request{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupLocked("claim request", k)
	if err != nil {
		return storage.Request{}, err
	}
	r := &e.req
	switch r.Status {
	case storage.StatusQueued:
		if r.NotBefore.After(c.Now) {
			return storage.Request{}, fmt.Errorf("memory: claim request %s: not before %s: %w", k, r.NotBefore, storage.ErrConflict)
		}
		r.Status = storage.StatusRunning
	case storage.StatusRunning, storage.StatusCanceling:
		if !c.Now.After(r.LeaseUntil) {
			return storage.Request{}, fmt.Errorf("memory: claim request %s: leased until %s: %w", k, r.LeaseUntil, storage.ErrConflict)
		}
		r.Stalls++ // the previous run's lease passed: it died
		c.Stalled = false
	default:
		return storage.Request{}, fmt.Errorf("memory: claim request %s: status %s: %w", k, r.Status, storage.ErrConflict)
	}
	if c.Stalled {
		r.Stalls++
	}
	if r.StartedAt.IsZero() {
		r.StartedAt = c.Now
	}
	r.Attempt++
	r.LeaseUntil = c.LeaseUntil
	r.UpdatedAt = c.Now
	return cloneRequest(*r), nil
}

// ExtendLease moves LeaseUntil of a running or canceling request claimed as
// attempt; [storage.ErrConflict] otherwise.
func (s *Store) ExtendLease(ctx context.Context, k storage.Key, attempt int, until time.Time) error {
	if err := errCtx(ctx, "extend lease"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupLocked("extend lease", k)
	if err != nil {
		return err
	}
	r := &e.req
	if (r.Status != storage.StatusRunning && r.Status != storage.StatusCanceling) || r.Attempt != attempt {
		return fmt.Errorf("memory: extend lease %s: status %s attempt %d, want attempt %d: %w", k, r.Status, r.Attempt, attempt, storage.ErrConflict)
	}
	r.LeaseUntil = until
	return nil
}

// RequeueRequest moves a running request claimed as attempt back to queued
// with the given NotBefore; [storage.ErrConflict] otherwise.
func (s *Store) RequeueRequest(ctx context.Context, k storage.Key, attempt int, notBefore time.Time) error {
	return s.requeue(ctx, "requeue request", k, attempt, notBefore, false)
}

// ContinueRequest is RequeueRequest that also counts a continuation.
func (s *Store) ContinueRequest(ctx context.Context, k storage.Key, attempt int, notBefore time.Time) error {
	return s.requeue(ctx, "continue request", k, attempt, notBefore, true)
}

func (s *Store) requeue(ctx context.Context, op string, k storage.Key, attempt int, notBefore time.Time, continued bool) error {
	if err := errCtx(ctx, op); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupLocked(op, k)
	if err != nil {
		return err
	}
	r := &e.req
	if r.Status != storage.StatusRunning || r.Attempt != attempt {
		return fmt.Errorf("memory: %s %s: status %s attempt %d, want running attempt %d: %w", op, k, r.Status, r.Attempt, attempt, storage.ErrConflict)
	}
	r.Status = storage.StatusQueued
	r.NotBefore = notBefore
	r.LeaseUntil = time.Time{}
	if continued {
		r.Continuations++
	}
	return nil
}

// SaveCheckpoint sets the Checkpoint of a running or canceling request
// claimed as attempt; [storage.ErrConflict] otherwise.
func (s *Store) SaveCheckpoint(ctx context.Context, k storage.Key, attempt int, state json.RawMessage) error {
	if err := errCtx(ctx, "save checkpoint"); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupLocked("save checkpoint", k)
	if err != nil {
		return err
	}
	r := &e.req
	if (r.Status != storage.StatusRunning && r.Status != storage.StatusCanceling) || r.Attempt != attempt {
		return fmt.Errorf("memory: save checkpoint %s: status %s attempt %d, want attempt %d: %w", k, r.Status, r.Attempt, attempt, storage.ErrConflict)
	}
	r.Checkpoint = clone(state)
	return nil
}

// CancelRequest marks a queued or running request canceling, setting
// UpdatedAt to now. A canceling or finished request is returned unchanged.
func (s *Store) CancelRequest(ctx context.Context, k storage.Key, now time.Time) (storage.Request, error) {
	if err := errCtx(ctx, "cancel request"); err != nil {
		return storage.Request{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupLocked("cancel request", k)
	if err != nil {
		return storage.Request{}, err
	}
	r := &e.req
	if r.Status == storage.StatusQueued || r.Status == storage.StatusRunning {
		r.Status = storage.StatusCanceling
		r.UpdatedAt = now
	}
	return cloneRequest(*r), nil
}

// FinishRequest appends f.Event and sets the final state atomically, with
// UpdatedAt set to f.Now. It returns [storage.ErrConflict], writing nothing,
// when the request has finished or the event's seq is taken.
func (s *Store) FinishRequest(ctx context.Context, k storage.Key, f storage.Finish) error {
	if err := errCtx(ctx, "finish request"); err != nil {
		return err
	}
	if !f.Status.Final() {
		return fmt.Errorf("memory: finish request %s: status %q is not final", k, f.Status)
	}
	if f.Event.Seq < 1 {
		return fmt.Errorf("memory: finish request %s: seq %d is not positive", k, f.Event.Seq)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupLocked("finish request", k)
	if err != nil {
		return err
	}
	if e.req.Status.Final() {
		return fmt.Errorf("memory: finish request %s: already %s: %w", k, e.req.Status, storage.ErrConflict)
	}
	if e.req.Attempt != f.Attempt {
		return fmt.Errorf("memory: finish request %s: attempt %d, want %d: %w", k, e.req.Attempt, f.Attempt, storage.ErrConflict)
	}
	i, taken := e.find(f.Event.Seq)
	if taken {
		return fmt.Errorf("memory: finish request %s: seq %d: %w", k, f.Event.Seq, storage.ErrConflict)
	}
	e.events = slices.Insert(e.events, i, cloneEvent(f.Event))
	r := &e.req
	r.Status = f.Status
	r.Result = clone(f.Result)
	r.ResultChunks = f.ResultChunks
	r.Error = cloneErrorInfo(f.Error)
	r.UpdatedAt = f.Now
	return nil
}

// find returns where seq is or would be in the log, and whether it is there.
func (e *entry) find(seq int64) (int, bool) {
	return slices.BinarySearchFunc(e.events, seq, func(ev storage.Event, seq int64) int {
		switch {
		case ev.Seq < seq:
			return -1
		case ev.Seq > seq:
			return 1
		}
		return 0
	})
}

// AppendEvent appends a non-terminal event; see [storage.Store.AppendEvent].
func (s *Store) AppendEvent(ctx context.Context, k storage.Key, attempt int, ev storage.Event, subsVersion int64) error {
	if err := errCtx(ctx, "append event"); err != nil {
		return err
	}
	if ev.Seq < 1 {
		return fmt.Errorf("memory: append event %s: seq %d is not positive", k, ev.Seq)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupLocked("append event", k)
	if err != nil {
		return err
	}
	if e.req.Status.Final() {
		return fmt.Errorf("memory: append event %s: request %s: %w", k, e.req.Status, storage.ErrConflict)
	}
	if e.req.Attempt != attempt {
		return fmt.Errorf("memory: append event %s: attempt %d, want %d: %w", k, e.req.Attempt, attempt, storage.ErrConflict)
	}
	if e.req.SubsVersion != subsVersion {
		return fmt.Errorf("memory: append event %s: %w", k, &storage.SubscribersChangedError{Version: e.req.SubsVersion})
	}
	i, taken := e.find(ev.Seq)
	if taken {
		return fmt.Errorf("memory: append event %s: seq %d: %w", k, ev.Seq, storage.ErrConflict)
	}
	if ev.Checkpoint != nil {
		e.req.Checkpoint = clone(ev.Checkpoint)
	}
	e.events = slices.Insert(e.events, i, cloneEvent(ev))
	return nil
}

// ReadEvents returns up to limit unexpired events of k with Seq > after, in
// order; limit ≤ 0 means no limit. An unknown request has no events.
func (s *Store) ReadEvents(ctx context.Context, k storage.Key, after int64, limit int) ([]storage.Event, error) {
	if err := errCtx(ctx, "read events"); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := time.Now()
	e, ok := s.reqs[k]
	if !ok || expired(e.req.ExpiresAt, now) {
		return nil, nil // an unknown request has an empty log
	}
	var out []storage.Event
	for _, ev := range e.events {
		if ev.Seq <= after || expired(ev.ExpiresAt, now) {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, cloneEvent(ev))
	}
	return out, nil
}

// LastEvent returns the unexpired event of k with the highest seq, or
// [storage.ErrNotFound] when there is none.
func (s *Store) LastEvent(ctx context.Context, k storage.Key) (storage.Event, error) {
	if err := errCtx(ctx, "last event"); err != nil {
		return storage.Event{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, err := s.lookupLocked("last event", k)
	if err != nil {
		return storage.Event{}, err
	}
	now := time.Now()
	for i := len(e.events) - 1; i >= 0; i-- {
		if !expired(e.events[i].ExpiresAt, now) {
			return cloneEvent(e.events[i]), nil
		}
	}
	return storage.Event{}, fmt.Errorf("memory: last event %s: %w", k, storage.ErrNotFound)
}

// ListUnfinished returns every unexpired request whose status is not final,
// in no particular order.
func (s *Store) ListUnfinished(ctx context.Context) ([]storage.Request, error) {
	if err := errCtx(ctx, "list unfinished"); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := time.Now()
	var out []storage.Request
	for _, e := range s.reqs {
		if !e.req.Status.Final() && !expired(e.req.ExpiresAt, now) {
			out = append(out, cloneRequest(e.req))
		}
	}
	return out, nil
}

// ListDue returns up to limit (≤ 0: all) unexpired live requests due
// before before; see [storage.DueLister].
func (s *Store) ListDue(ctx context.Context, before time.Time, limit int) ([]storage.Request, error) {
	if err := errCtx(ctx, "list due"); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := time.Now()
	var out []storage.Request
	for _, e := range s.reqs {
		if limit > 0 && len(out) == limit {
			break
		}
		if storage.Due(e.req, before) && !expired(e.req.ExpiresAt, now) {
			out = append(out, cloneRequest(e.req))
		}
	}
	return out, nil
}

// Sweep deletes connections, requests, events and subscriptions whose
// expiry is before now, with the subscriptions of deleted connections and
// requests, and reports how many connections, requests, events and expired
// subscriptions it deleted.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	if err := errCtx(ctx, "sweep"); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id, c := range s.conns {
		if expired(c.ExpiresAt, now) {
			s.deleteConnLocked(id)
			n++
		}
	}
	for k, e := range s.reqs {
		if expired(e.req.ExpiresAt, now) {
			n += 1 + len(e.events)
			s.deleteReqLocked(k)
			continue
		}
		before := len(e.events)
		e.events = slices.DeleteFunc(e.events, func(ev storage.Event) bool { return expired(ev.ExpiresAt, now) })
		n += before - len(e.events)
	}
	for connID, byConn := range s.subsByConn {
		for k, exp := range byConn {
			if expired(exp, now) {
				s.removeSubLocked(k, connID)
				n++
			}
		}
	}
	return n, nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func cloneConn(c storage.Connection) storage.Connection {
	c.Principal = clone(c.Principal)
	return c
}

func cloneErrorInfo(ei *storage.ErrorInfo) *storage.ErrorInfo {
	if ei == nil {
		return nil
	}
	out := *ei
	out.Details = clone(ei.Details)
	return &out
}

func cloneRequest(r storage.Request) storage.Request {
	r.Payload = clone(r.Payload)
	r.Metadata = maps.Clone(r.Metadata)
	r.Principal = clone(r.Principal)
	r.Result = clone(r.Result)
	r.Checkpoint = clone(r.Checkpoint)
	r.Error = cloneErrorInfo(r.Error)
	return r
}

// cloneEvent copies an event as stored: without a checkpoint, which
// belongs to the request.
func cloneEvent(ev storage.Event) storage.Event {
	ev.Data = clone(ev.Data)
	ev.Checkpoint = nil
	return ev
}
