package storage

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// StatusLister is implemented by stores that can list the requests of one
// status across every principal, for operators (package ops, `streamer
// ops list`); clients never reach it. Stores with many requests answer it
// from an index (DynamoDB: queries of the status index, never a scan).
type StatusLister interface {
	// ListByStatus returns a page of the unexpired requests in status
	// q.Status whose [StatusTime] is within q.Since and q.Until and that
	// pass q's Action and Tenant filters, newest first by [StatusPos]
	// (StatusTime at millisecond precision, then key, both descending).
	//
	// A page holds at most q.PageSize() requests. Its Cursor is empty
	// when the listing is over; otherwise passing it as q.Cursor (with the
	// same filters) returns the next page. A page may hold fewer requests
	// than the limit, even none, and still have a Cursor: a store may
	// bound the work of one call. A request that changes status while it
	// is listed may be missed or, with its new status, listed in another
	// listing. A cursor the store did not make fails with an error
	// wrapping [ErrBadCursor].
	ListByStatus(ctx context.Context, q StatusQuery) (StatusPage, error)
}

// StatusQuery selects a page of [StatusLister.ListByStatus].
type StatusQuery struct {
	// Status is the status listed; it is required.
	Status Status
	// Since and Until bound the requests' [StatusTime]: at or after Since,
	// before Until. A zero bound is no bound.
	Since, Until time.Time
	// Action, when set, keeps the requests of this action only.
	Action string
	// Tenant, when set, keeps the requests of this tenant only.
	Tenant string
	// Limit is the page size, as [ListQuery.Limit].
	Limit int
	// Cursor is the Cursor of the previous page; empty starts with the
	// newest.
	Cursor string
}

// PageSize is the most requests a page of q holds, as [ListQuery.PageSize].
func (q StatusQuery) PageSize() int { return ListQuery{Limit: q.Limit}.PageSize() }

// Matches reports whether r passes q's status, time, action and tenant
// filters (not its cursor).
func (q StatusQuery) Matches(r Request) bool {
	t := StatusTime(r).UnixMilli()
	return r.Status == q.Status &&
		(q.Since.IsZero() || t >= q.Since.UnixMilli()) &&
		(q.Until.IsZero() || t < q.Until.UnixMilli()) &&
		(q.Action == "" || r.Action == q.Action) &&
		(q.Tenant == "" || r.Key.Tenant == q.Tenant)
}

// StatusPage is one page of [StatusLister.ListByStatus].
type StatusPage struct {
	// Requests are newest first, as stored (every field).
	Requests []Request
	// Cursor continues the listing; empty on the last page.
	Cursor string
}

// StatusTime is the time a status listing orders r by: when a live
// request is due (a queued one's NotBefore, or its CreatedAt when later; a
// running or canceling one's LeaseUntil, or its UpdatedAt when it has no
// lease), and when a finished one finished (its UpdatedAt).
func StatusTime(r Request) time.Time {
	switch r.Status {
	case StatusQueued:
		if r.NotBefore.Before(r.CreatedAt) {
			return r.CreatedAt
		}
		return r.NotBefore
	case StatusRunning, StatusCanceling:
		if r.LeaseUntil.IsZero() {
			return r.UpdatedAt
		}
		return r.LeaseUntil
	}
	return r.UpdatedAt
}

// StatusPos is a request's place in a status listing: its [StatusTime] in
// epoch milliseconds and its key ([Key.String]).
type StatusPos struct {
	MS  int64
	Key string
}

// StatusPosOf returns r's place in a status listing.
func StatusPosOf(r Request) StatusPos {
	return StatusPos{MS: StatusTime(r).UnixMilli(), Key: r.Key.String()}
}

// Compare orders places as status listings do, newest first: negative
// when p comes before q (a later time, or the same millisecond with a
// greater key), zero when they are equal, positive otherwise.
func (p StatusPos) Compare(q StatusPos) int {
	switch {
	case p.MS > q.MS:
		return -1
	case p.MS < q.MS:
		return 1
	}
	return strings.Compare(q.Key, p.Key)
}

// Cursor encodes p as an opaque cursor, which [ParseStatusCursor] decodes.
func (p StatusPos) Cursor() string {
	return base64.RawURLEncoding.EncodeToString([]byte("s" + strconv.FormatInt(p.MS, 10) + ":" + p.Key))
}

// ParseStatusCursor decodes a cursor made by [StatusPos.Cursor]. Anything
// else fails with an error wrapping [ErrBadCursor].
func ParseStatusCursor(s string) (StatusPos, error) {
	if len(s) > maxCursor {
		return StatusPos{}, fmt.Errorf("%w: longer than %d characters", ErrBadCursor, maxCursor)
	}
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return StatusPos{}, fmt.Errorf("%w: not base64url", ErrBadCursor)
	}
	body, ok := strings.CutPrefix(string(raw), "s")
	if !ok {
		return StatusPos{}, fmt.Errorf("%w: not a status listing's", ErrBadCursor)
	}
	ms, key, ok := strings.Cut(body, ":")
	if !ok {
		return StatusPos{}, fmt.Errorf("%w: malformed", ErrBadCursor)
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return StatusPos{}, fmt.Errorf("%w: malformed time", ErrBadCursor)
	}
	if _, err := ParseKey(key); err != nil {
		return StatusPos{}, fmt.Errorf("%w: malformed key", ErrBadCursor)
	}
	return StatusPos{MS: n, Key: key}, nil
}

// PageByStatus makes a page of q from reqs, every candidate request of a
// store (in any order): it keeps those q matches that come after q's
// cursor, sorts them and cuts the page. Stores that read every request
// (memory, bolt) list with it.
func PageByStatus(q StatusQuery, reqs []Request) (StatusPage, error) {
	var after *StatusPos
	if q.Cursor != "" {
		p, err := ParseStatusCursor(q.Cursor)
		if err != nil {
			return StatusPage{}, err
		}
		after = &p
	}
	var found []Request
	for _, r := range reqs {
		if !q.Matches(r) || (after != nil && StatusPosOf(r).Compare(*after) <= 0) {
			continue
		}
		found = append(found, r)
	}
	slices.SortFunc(found, func(a, b Request) int { return StatusPosOf(a).Compare(StatusPosOf(b)) })
	var page StatusPage
	if limit := q.PageSize(); len(found) > limit {
		found = found[:limit]
		page.Cursor = StatusPosOf(found[limit-1]).Cursor()
	}
	page.Requests = found
	return page, nil
}
