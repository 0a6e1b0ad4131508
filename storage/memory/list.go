package memory

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.PrincipalLister = (*Store)(nil)

// ListRequests returns a page of the principal's unexpired requests, newest
// first; see [storage.PrincipalLister]. It reads every request in the
// store, and its cursor is a [storage.ListPos]. A page is full unless it is
// the last, whose Cursor is empty.
func (s *Store) ListRequests(ctx context.Context, tenant, subject string, q storage.ListQuery) (storage.ListPage, error) {
	if err := errCtx(ctx, "list requests"); err != nil {
		return storage.ListPage{}, err
	}
	var after *storage.ListPos
	if q.Cursor != "" {
		p, err := storage.ParseListCursor(q.Cursor)
		if err != nil {
			return storage.ListPage{}, fmt.Errorf("memory: list requests: %w", err)
		}
		after = &p
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := time.Now()
	var found []*entry
	for k, e := range s.reqs {
		if k.Tenant != tenant || k.Subject != subject || expired(e.req.ExpiresAt, now) || !q.Matches(e.req.Status) {
			continue
		}
		if after != nil && storage.PosOf(e.req).Compare(*after) <= 0 {
			continue
		}
		found = append(found, e)
	}
	slices.SortFunc(found, func(a, b *entry) int { return storage.PosOf(a.req).Compare(storage.PosOf(b.req)) })
	var page storage.ListPage
	if limit := q.PageSize(); len(found) > limit {
		found = found[:limit]
		page.Cursor = storage.PosOf(found[limit-1].req).Cursor()
	}
	page.Requests = make([]storage.ListedRequest, len(found))
	for i, e := range found {
		var last storage.Event
		for j := len(e.events) - 1; j >= 0; j-- {
			if !expired(e.events[j].ExpiresAt, now) {
				last = e.events[j]
				break
			}
		}
		page.Requests[i] = storage.Listed(e.req, last)
	}
	return page, nil
}
