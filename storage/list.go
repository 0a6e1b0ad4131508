package storage

import (
	"cmp"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Page sizes of [PrincipalLister.ListRequests].
const (
	// DefaultListLimit is the page size of a [ListQuery] whose Limit is
	// zero or negative.
	DefaultListLimit = 20
	// MaxListLimit is the largest page: a larger Limit is lowered to it.
	MaxListLimit = 100
)

// ErrBadCursor means a [ListQuery.Cursor] is not one the store made. Stores
// wrap it; the router answers it with VALIDATION_ERROR.
var ErrBadCursor = errors.New("storage: bad list cursor")

// PrincipalLister is implemented by stores that can list one principal's
// requests, newest first, a page at a time: the reserved action "list"
// uses it. Stores with many requests answer it from an index (DynamoDB: a
// query of the principal index, never a scan).
type PrincipalLister interface {
	// ListRequests returns a page of the unexpired requests of the
	// principal (tenant, subject) whose status is one of q.Statuses (any
	// status when empty), newest first by [ListPos.Compare]: by CreatedAt
	// at millisecond precision, then by ID, both descending. It never
	// returns another principal's request.
	//
	// A page holds at most q.PageSize() requests. Its Cursor is empty when
	// the listing is over; otherwise passing it as q.Cursor (with the same
	// statuses) returns the next page. A page may hold fewer requests than
	// the limit, even none, and still have a Cursor: a store may bound the
	// work of one call. Requests created after the first page are not
	// listed by the later ones. A cursor the store did not make fails with
	// an error wrapping [ErrBadCursor].
	ListRequests(ctx context.Context, tenant, subject string, q ListQuery) (ListPage, error)
}

// ListQuery selects a page of [PrincipalLister.ListRequests].
type ListQuery struct {
	// Statuses keeps the requests in one of these statuses; empty keeps
	// every status.
	Statuses []Status
	// Limit is the most requests a page holds: zero or negative means
	// [DefaultListLimit], more than [MaxListLimit] means MaxListLimit.
	Limit int
	// Cursor is the Cursor of the previous page; empty starts with the
	// newest request.
	Cursor string
}

// PageSize is the most requests a page of q holds: its Limit within 1 to
// [MaxListLimit], [DefaultListLimit] when it is not positive.
func (q ListQuery) PageSize() int {
	switch {
	case q.Limit <= 0:
		return DefaultListLimit
	case q.Limit > MaxListLimit:
		return MaxListLimit
	}
	return q.Limit
}

// Matches reports whether a request in status st passes q's status filter.
func (q ListQuery) Matches(st Status) bool {
	return len(q.Statuses) == 0 || slices.Contains(q.Statuses, st)
}

// ListPage is one page of [PrincipalLister.ListRequests].
type ListPage struct {
	// Requests are newest first.
	Requests []ListedRequest
	// Cursor continues the listing; empty on the last page.
	Cursor string
}

// ListedRequest is one request of a [ListPage]: its state and, from its
// latest event, its progress.
type ListedRequest struct {
	Key    Key
	Action string
	Status Status
	// Seq, Percentage and Message are those of the request's latest
	// unexpired event; zero when it has none.
	Seq        int64
	Percentage float64
	Message    string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Listed describes r, whose latest event is last (the zero Event when it
// has none), as a listing shows it.
func Listed(r Request, last Event) ListedRequest {
	return ListedRequest{
		Key: r.Key, Action: r.Action, Status: r.Status,
		Seq: last.Seq, Percentage: last.Percentage, Message: last.Message,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
}

// ListPos is a request's place in its principal's listing: its creation
// time in epoch milliseconds and its ID. Backends may use it, and its
// cursor encoding, to page.
type ListPos struct {
	CreatedMS int64
	ID        string
}

// PosOf returns r's place in a listing.
func PosOf(r Request) ListPos { return ListPos{CreatedMS: r.CreatedAt.UnixMilli(), ID: r.Key.ID} }

// Compare orders places as listings do, newest first: it is negative when
// p comes before q (p was created later, or at the same millisecond with a
// greater ID), zero when they are equal, positive otherwise.
func (p ListPos) Compare(q ListPos) int {
	if c := cmp.Compare(q.CreatedMS, p.CreatedMS); c != 0 {
		return c
	}
	return strings.Compare(q.ID, p.ID)
}

// maxCursor bounds the length of a cursor [ParseListCursor] accepts.
const maxCursor = 2048

// Cursor encodes p as an opaque cursor (URL-safe base64), which
// [ParseListCursor] decodes.
func (p ListPos) Cursor() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(p.CreatedMS, 10) + ":" + p.ID))
}

// ParseListCursor decodes a cursor made by [ListPos.Cursor]. Anything else
// fails with an error wrapping [ErrBadCursor].
func ParseListCursor(s string) (ListPos, error) {
	if len(s) > maxCursor {
		return ListPos{}, fmt.Errorf("%w: longer than %d characters", ErrBadCursor, maxCursor)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ListPos{}, fmt.Errorf("%w: not base64url", ErrBadCursor)
	}
	ms, id, ok := strings.Cut(string(raw), ":")
	if !ok {
		return ListPos{}, fmt.Errorf("%w: malformed", ErrBadCursor)
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return ListPos{}, fmt.Errorf("%w: malformed time", ErrBadCursor)
	}
	return ListPos{CreatedMS: n, ID: id}, nil
}
