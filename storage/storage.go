// Package storage defines what Streamer persists: connections, requests and
// each request's event log. Backends live in sub-packages (memory, bolt,
// dynamodb) and all of them pass the conformance suite in storagetest.
//
// The package is a leaf: it imports nothing from the rest of Streamer, so a
// backend depends only on it.
//
// Every state change is conditional. Two writers racing for the same request
// never both win: one of them gets [ErrConflict]. The processor relies on this
// to run a request once when a queue delivers it twice, to keep sequence
// numbers contiguous, and to store exactly one terminal event.
//
// Rules every backend follows (storagetest checks them):
//   - Times may be stored at millisecond precision.
//   - An item whose ExpiresAt has passed (by the store's own clock) counts as
//     missing for every operation; a zero ExpiresAt never expires.
//   - Claims, cancels and finishes set UpdatedAt to the time they are given.
//   - A lease has passed when the claim's Now is after LeaseUntil.
//   - Connection ids are never empty.
//   - For an unknown request, ReadEvents returns no events (or
//     ErrNotFound), and ExtendLease, RequeueRequest and FinishRequest return
//     ErrNotFound or ErrConflict.
//   - Fencing: every write of a run carries the Attempt its claim returned.
//     ExtendLease, RequeueRequest, AppendEvent and FinishRequest refuse
//     (ErrConflict, writing nothing) when the request's Attempt is no longer
//     that one, so a processor that stalled past its lease and woke after
//     another claimed the request cannot write into the new run. A finish
//     without a claim passes the Attempt it read (0 when never claimed).
//     AppendEvent checks the attempt before the subscriber version.
//   - ClaimRequest sets StartedAt to the claim's Now when it is zero.
//   - SaveCheckpoint and ContinueRequest are fenced like ExtendLease and
//     RequeueRequest; ContinueRequest adds one to Continuations.
//   - ClaimRequest adds one to Stalls when it takes over a running or
//     canceling request whose lease has passed, or when [Claim.Stalled] is
//     set; never more than one per claim, and a refused claim changes
//     nothing.
//   - A request created again after one with the same key expired starts
//     afresh: the expired request's events count as missing, so reads
//     leave them out and their seqs are free.
package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors returned by every [Store]. Callers branch on them with
// errors.Is; backends wrap them with context.
var (
	// ErrNotFound means the connection, request or event does not exist (or
	// has expired).
	ErrNotFound = errors.New("storage: not found")
	// ErrConflict means a conditional write lost: the request is not in the
	// state the write required, or the sequence number is already taken.
	ErrConflict = errors.New("storage: conflict")
	// ErrExists means CreateRequest found a request with the same key.
	ErrExists = errors.New("storage: already exists")
)

// ErrSubscribersChanged is matched (errors.Is) by a
// [*SubscribersChangedError].
var ErrSubscribersChanged = errors.New("storage: subscribers changed")

// SubscribersChangedError is AppendEvent's refusal when the request's
// subscribers changed since the version the writer gave.
type SubscribersChangedError struct {
	// Version is the request's current SubsVersion.
	Version int64
}

func (e *SubscribersChangedError) Error() string {
	return fmt.Sprintf("storage: subscribers changed (version %d)", e.Version)
}

// Is reports whether target is ErrSubscribersChanged.
func (e *SubscribersChangedError) Is(target error) bool { return target == ErrSubscribersChanged }

// Key identifies a request. Request ids are scoped to the principal, the pair
// (Tenant, Subject), so two principals may use the same ID.
type Key struct {
	Tenant  string
	Subject string
	ID      string
}

// String encodes the key unambiguously: no two distinct keys give the same
// string. Each part is escaped so that the separator never occurs inside a
// part. Backends may use it as a primary key.
func (k Key) String() string {
	var b strings.Builder
	b.Grow(len(k.Tenant) + len(k.Subject) + len(k.ID) + 2)
	escapeInto(&b, k.Tenant)
	b.WriteByte('|')
	escapeInto(&b, k.Subject)
	b.WriteByte('|')
	escapeInto(&b, k.ID)
	return b.String()
}

// escapeInto writes s with '%' and '|' percent-encoded.
func escapeInto(b *strings.Builder, s string) {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '%':
			b.WriteString("%25")
		case '|':
			b.WriteString("%7C")
		default:
			b.WriteByte(c)
		}
	}
}

// ParseKey is the inverse of [Key.String].
func ParseKey(s string) (Key, error) {
	parts := strings.Split(s, "|")
	if len(parts) != 3 {
		return Key{}, errors.New("storage: malformed key")
	}
	var out [3]string
	for i, p := range parts {
		u, err := unescape(p)
		if err != nil {
			return Key{}, err
		}
		out[i] = u
	}
	return Key{Tenant: out[0], Subject: out[1], ID: out[2]}, nil
}

func unescape(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errors.New("storage: malformed key escape")
		}
		switch s[i+1 : i+3] {
		case "25":
			b.WriteByte('%')
		case "7C":
			b.WriteByte('|')
		default:
			return "", errors.New("storage: malformed key escape")
		}
		i += 2
	}
	return b.String(), nil
}

// Status is a request's lifecycle state.
type Status string

// Request states. Queued, Running and Canceling are live; the others are
// final and never change again.
const (
	StatusQueued    Status = "queued"
	StatusRunning   Status = "running"
	StatusCanceling Status = "canceling"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
	StatusCanceled  Status = "canceled"
)

// Final reports whether s is a terminal state.
func (s Status) Final() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCanceled
}

// ErrorInfo is a stored request failure, as sent in the protocol's error body.
type ErrorInfo struct {
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	Details   json.RawMessage `json:"details,omitempty"`
	Retryable bool            `json:"retryable,omitempty"`
}

// Connection is a live client connection.
type Connection struct {
	ID string
	// Tenant and Subject identify the principal that authenticated it.
	Tenant  string
	Subject string
	// Principal is the encoded principal, opaque to storage.
	Principal []byte
	// Endpoint is where to post messages for this connection (the API
	// Gateway Management API endpoint), when the transport needs one.
	Endpoint    string
	ConnectedAt time.Time
	// ExpiresAt is when the record may be deleted (a TTL).
	ExpiresAt time.Time
}

// Request is a stored asynchronous request.
type Request struct {
	Key    Key
	Action string
	// Payload is the request payload as received.
	Payload  json.RawMessage
	Metadata map[string]string
	// Fingerprint identifies action and payload, for idempotent re-sends.
	Fingerprint string
	// Principal is the encoded principal, opaque to storage.
	Principal []byte
	// ConnectionID is the connection that sent the request; it is
	// subscribed to the request's events.
	ConnectionID string
	// Endpoint is the transport endpoint of ConnectionID, if any.
	Endpoint string
	// TraceParent is the W3C traceparent of the request's admission
	// ("00-<trace id>-<span id>-<flags>"), "" when it was admitted without
	// tracing. The processor continues that trace, so a request is one
	// trace across the queue. Set at creation and never changed.
	TraceParent string

	Status Status
	// Attempt counts claims: 0 while never run, 1 during the first run. It
	// is the fencing token of a run: see [Store.AppendEvent].
	Attempt int
	// Stalls counts the claims that found the previous run gone without a
	// trace: a running or canceling request whose lease had passed, or a
	// claim made with [Claim.Stalled] (the reaper's). A request that keeps
	// stalling is ended instead of being run again.
	Stalls int
	// SubsVersion grows with every Subscribe to the request. A processor
	// passes the version whose subscribers it sends to with each
	// AppendEvent, and learns of a new subscriber from the refusal, so it
	// need not read the subscribers for every event.
	SubsVersion int64
	// Continuations counts the runs that stopped before they could finish
	// (a Lambda deadline, a shutdown) and were handed back with
	// ContinueRequest, to continue from the Checkpoint. They are not
	// failed attempts.
	Continuations int
	// Checkpoint is the resumable state the request's handler saved last
	// (JSON; SaveCheckpoint, or AppendEvent with Event.Checkpoint), nil
	// when none. A run reads it when it starts.
	Checkpoint json.RawMessage
	// StartedAt is when the request was first claimed (zero while never
	// claimed): its total running time is counted from it.
	StartedAt time.Time
	// NotBefore is when a queued request may be claimed (retry backoff).
	NotBefore time.Time
	// LeaseUntil is when a running claim expires and may be taken over.
	LeaseUntil time.Time

	// Result is the JSON result of a succeeded request when it is small
	// enough to keep with the request (see ResultChunks otherwise).
	Result json.RawMessage
	// ResultChunks is the number of result_chunk events of a large result.
	ResultChunks int
	// Error is the failure of a failed or canceled request.
	Error *ErrorInfo

	CreatedAt time.Time
	UpdatedAt time.Time
	// ExpiresAt is when the request and its events may be deleted.
	ExpiresAt time.Time
}

// Event is one entry of a request's event log.
type Event struct {
	// Seq starts at 1 and grows by exactly 1 per event.
	Seq int64
	// Type is the protocol message type: progress, result_chunk, complete
	// or error.
	Type string
	// Percentage and Message carry the request's progress as of this event,
	// so the latest event answers a status query.
	Percentage float64
	Message    string
	// Data is the message exactly as sent on the wire.
	Data      []byte
	CreatedAt time.Time
	ExpiresAt time.Time
	// Checkpoint, when non-nil, is not part of the event: AppendEvent
	// stores it as the request's Checkpoint in the same atomic write as
	// the event, so a progress event and the state it reflects are saved
	// together for the price of one write. Events read back never carry
	// it.
	Checkpoint json.RawMessage
}

// Terminal reports whether the event ends its request's stream.
func (e Event) Terminal() bool { return e.Type == "complete" || e.Type == "error" }

// Claim describes a claim of a queued request.
type Claim struct {
	// Now is the claim time: requests whose NotBefore is after it are not
	// claimable.
	Now time.Time
	// LeaseUntil is stored with the running request. A running request whose
	// lease has passed may be claimed again (its worker died).
	LeaseUntil time.Time
	// Stalled makes the claim count as a stall (Request.Stalls grows by
	// one) even when the request was queued: the reaper claims with it a
	// request that no processor picked up in time.
	Stalled bool
}

// Finish describes the end of a request: its terminal event and final state,
// written atomically.
type Finish struct {
	// Attempt fences the write: the request's Attempt must equal it. A run
	// passes its claim's attempt; a finish without a claim (a cancel of a
	// request no processor holds) passes the Attempt it read.
	Attempt int
	// Event is the terminal event; its Seq must be free.
	Event Event
	// Status is StatusSucceeded, StatusFailed or StatusCanceled.
	Status       Status
	Result       json.RawMessage
	ResultChunks int
	Error        *ErrorInfo
	Now          time.Time
}

// Store is the persistence a Streamer runtime needs. Implementations are safe
// for concurrent use. Every method honours ctx cancellation.
type Store interface {
	// PutConnection creates or replaces a connection.
	PutConnection(ctx context.Context, c Connection) error
	// GetConnection returns ErrNotFound for unknown or expired connections.
	GetConnection(ctx context.Context, id string) (Connection, error)
	// DeleteConnection removes a connection and all its subscriptions. It
	// is not an error when the connection does not exist.
	DeleteConnection(ctx context.Context, id string) error

	// Subscribe subscribes a connection to a request's events until
	// expiresAt: once it has passed (by the store's clock, like every other
	// item's ExpiresAt) the subscription counts as missing, and Subscribers
	// and Subscriptions leave it out; a zero expiresAt never expires.
	// Subscribing again is not an error and sets the expiry to the new
	// expiresAt, so a later one extends the subscription (and revives an
	// expired one). When the request exists, its SubsVersion grows by one
	// in the same write.
	Subscribe(ctx context.Context, k Key, connID string, expiresAt time.Time) error
	// Unsubscribe removes one subscription; a missing one is not an error.
	Unsubscribe(ctx context.Context, k Key, connID string) error
	// Subscribers lists the connections subscribed with Subscribe, in no
	// particular order. The request's own ConnectionID is not included
	// unless it subscribed explicitly.
	Subscribers(ctx context.Context, k Key) ([]string, error)
	// Subscriptions lists the requests a connection is subscribed to.
	Subscriptions(ctx context.Context, connID string) ([]Key, error)

	// CreateRequest stores a new request. It returns ErrExists, and stores
	// nothing, when a request with the same key exists.
	CreateRequest(ctx context.Context, r Request) error
	// GetRequest returns ErrNotFound for unknown or expired requests.
	GetRequest(ctx context.Context, k Key) (Request, error)
	// ClaimRequest moves a queued request whose NotBefore has passed to
	// running, increments Attempt and sets LeaseUntil, atomically. A running
	// or canceling request whose lease has passed is claimed the same way
	// (keeping its status). Anything else returns ErrConflict; an unknown
	// request returns ErrNotFound. It returns the request as claimed.
	ClaimRequest(ctx context.Context, k Key, c Claim) (Request, error)
	// ExtendLease moves LeaseUntil of a running or canceling request
	// claimed as attempt. ErrConflict when the attempt is no longer current
	// or the request has finished.
	ExtendLease(ctx context.Context, k Key, attempt int, until time.Time) error
	// RequeueRequest moves a running request claimed as attempt back to
	// queued, to be claimed again at notBefore. ErrConflict when the request
	// is not running under that attempt (a canceling request is not
	// requeued).
	RequeueRequest(ctx context.Context, k Key, attempt int, notBefore time.Time) error
	// ContinueRequest is RequeueRequest for a run that stopped before it
	// could finish (a deadline, a shutdown): it also adds one to
	// Continuations, in the same write. The next run continues from the
	// request's Checkpoint.
	ContinueRequest(ctx context.Context, k Key, attempt int, notBefore time.Time) error
	// SaveCheckpoint sets the Checkpoint of a running or canceling request
	// claimed as attempt. ErrConflict when the attempt is no longer
	// current or the request has finished.
	SaveCheckpoint(ctx context.Context, k Key, attempt int, state json.RawMessage) error
	// CancelRequest marks a live request canceling and returns it as
	// updated. A request that has finished is returned unchanged with no
	// error; callers check Status.Final.
	CancelRequest(ctx context.Context, k Key, now time.Time) (Request, error)
	// FinishRequest appends f.Event and sets the final state atomically. It
	// returns ErrConflict, and writes nothing, when the request has already
	// finished, its Attempt is not f.Attempt, or the event's seq is taken.
	FinishRequest(ctx context.Context, k Key, f Finish) error

	// AppendEvent appends a non-terminal event for the run claimed as
	// attempt. It returns ErrConflict when the seq is taken, the request
	// has finished or its Attempt is not attempt (the run was superseded),
	// and ErrNotFound when the request does not exist. When the request's
	// SubsVersion is not subsVersion it writes nothing and returns a
	// [*SubscribersChangedError] carrying the current version. Backends
	// need not check that seq follows the last one: the single writer
	// holding the claim does.
	AppendEvent(ctx context.Context, k Key, attempt int, e Event, subsVersion int64) error
	// ReadEvents returns up to limit events with Seq > after, in order. A
	// limit ≤ 0 means no limit.
	ReadEvents(ctx context.Context, k Key, after int64, limit int) ([]Event, error)
	// LastEvent returns the event with the highest seq, or ErrNotFound when
	// the log is empty.
	LastEvent(ctx context.Context, k Key) (Event, error)
}

// Lister is implemented by stores that can list unfinished requests, which
// the embedded runtime uses to pick work up again after a restart.
type Lister interface {
	// ListUnfinished returns every request whose status is not final.
	ListUnfinished(ctx context.Context) ([]Request, error)
}

// DueLister is implemented by stores that can list the live requests that
// are due: the reaper uses it to find requests that no processor picked up
// or whose processor died. Stores with many requests answer it from an
// index (DynamoDB: a query of the status index, never a scan).
type DueLister interface {
	// ListDue returns up to limit (≤ 0: no limit) unexpired live requests
	// due before before, by the rule of [Due]: queued ones whose NotBefore
	// and CreatedAt are before it, and running or canceling ones whose
	// LeaseUntil is before it. The order is unspecified.
	ListDue(ctx context.Context, before time.Time, limit int) ([]Request, error)
}

// Due reports whether r is live and due before t: queued and claimable
// before t (its NotBefore, or its CreatedAt when that is later, is before
// t), or running or canceling with LeaseUntil before t (a canceling
// request that was never claimed has no lease: its UpdatedAt, the cancel,
// counts). It is the rule of [DueLister.ListDue].
func Due(r Request, t time.Time) bool {
	switch r.Status {
	case StatusQueued:
		return r.NotBefore.Before(t) && r.CreatedAt.Before(t)
	case StatusRunning, StatusCanceling:
		if r.LeaseUntil.IsZero() {
			return r.UpdatedAt.Before(t)
		}
		return r.LeaseUntil.Before(t)
	}
	return false
}

// Sweeper is implemented by stores that delete expired items themselves
// (stores with a native TTL, such as DynamoDB, need not).
type Sweeper interface {
	// Sweep deletes connections, subscriptions, requests and events whose
	// expiry is before now, and reports how many items it deleted (each
	// subscription counts once).
	Sweep(ctx context.Context, now time.Time) (int, error)
}
