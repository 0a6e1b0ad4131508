package bolt

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.StatusLister = (*Store)(nil)

// ListByStatus returns a page of the unexpired requests in one status,
// newest first; see [storage.StatusLister]. It reads every request of the
// file in one read transaction (the embedded runtime's stores are small).
// A page is full unless it is the last, whose Cursor is empty.
func (s *Store) ListByStatus(ctx context.Context, q storage.StatusQuery) (storage.StatusPage, error) {
	if q.Cursor != "" {
		if _, err := storage.ParseStatusCursor(q.Cursor); err != nil {
			return storage.StatusPage{}, fmt.Errorf("bolt: list by status: %w", err)
		}
	}
	var all []storage.Request
	err := s.view(ctx, "list by status", func(tx *bbolt.Tx) error {
		now := time.Now()
		return tx.Bucket(bucketRequests).ForEach(func(rk, v []byte) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec listRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decoding request %s: %w", rk, err)
			}
			if rec.Status != q.Status || expired(rec.ExpiresAt, now) {
				return nil
			}
			r, err := decodeRequest(rk, v)
			if err != nil {
				return err
			}
			all = append(all, r)
			return nil
		})
	})
	if err != nil {
		return storage.StatusPage{}, err
	}
	page, err := storage.PageByStatus(q, all)
	if err != nil {
		return storage.StatusPage{}, fmt.Errorf("bolt: list by status: %w", err)
	}
	return page, nil
}
