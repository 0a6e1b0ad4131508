package memory

import (
	"context"
	"fmt"
	"time"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.StatusLister = (*Store)(nil)

// ListByStatus returns a page of the unexpired requests in one status,
// newest first; see [storage.StatusLister]. It reads every request in the
// store. A page is full unless it is the last, whose Cursor is empty.
func (s *Store) ListByStatus(ctx context.Context, q storage.StatusQuery) (storage.StatusPage, error) {
	if err := errCtx(ctx, "list by status"); err != nil {
		return storage.StatusPage{}, err
	}
	s.mu.RLock()
	now := time.Now()
	var all []storage.Request
	for _, e := range s.reqs {
		if e.req.Status == q.Status && !expired(e.req.ExpiresAt, now) {
			all = append(all, cloneRequest(e.req))
		}
	}
	s.mu.RUnlock()
	page, err := storage.PageByStatus(q, all)
	if err != nil {
		return storage.StatusPage{}, fmt.Errorf("memory: list by status: %w", err)
	}
	return page, nil
}
