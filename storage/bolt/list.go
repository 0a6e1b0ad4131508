package bolt

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.PrincipalLister = (*Store)(nil)

// listRecord is the part of a request record a listing reads.
type listRecord struct {
	Action    string         `json:"action,omitempty"`
	Status    storage.Status `json:"status"`
	CreatedAt time.Time      `json:"created_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	ExpiresAt time.Time      `json:"expires_at"`
}

// ListRequests returns a page of the principal's unexpired requests, newest
// first; see [storage.PrincipalLister]. The requests bucket is ordered by
// [storage.Key.String], whose escaping makes one principal's keys exactly
// those that start with its escaped tenant and subject: the listing reads
// those (with a cursor seek, no other request), sorts them, and reads the
// latest event of each request of the page, in one read transaction. Its
// cursor is a [storage.ListPos]. A page is full unless it is the last,
// whose Cursor is empty.
func (s *Store) ListRequests(ctx context.Context, tenant, subject string, q storage.ListQuery) (storage.ListPage, error) {
	var after *storage.ListPos
	if q.Cursor != "" {
		p, err := storage.ParseListCursor(q.Cursor)
		if err != nil {
			return storage.ListPage{}, fmt.Errorf("bolt: list requests: %w", err)
		}
		after = &p
	}
	type found struct {
		r  storage.Request
		rk []byte
	}
	var page storage.ListPage
	logged := s.gc.pend.byRequest() // before the transaction: see pending
	err := s.view(ctx, "list requests", func(tx *bbolt.Tx) error {
		now := time.Now()
		// The escaped principal and the separator before the ID.
		prefix := []byte(storage.Key{Tenant: tenant, Subject: subject}.String())
		var all []found
		c := tx.Bucket(bucketRequests).Cursor()
		for rk, v := c.Seek(prefix); rk != nil && bytes.HasPrefix(rk, prefix); rk, v = c.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec listRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decoding request %s: %w", rk, err)
			}
			if expired(rec.ExpiresAt, now) || !q.Matches(rec.Status) {
				continue
			}
			k, err := storage.ParseKey(string(rk))
			if err != nil {
				return fmt.Errorf("decoding request key %q: %w", rk, err)
			}
			r := storage.Request{
				Key: k, Action: rec.Action, Status: rec.Status,
				CreatedAt: rec.CreatedAt, UpdatedAt: rec.UpdatedAt, ExpiresAt: rec.ExpiresAt,
			}
			if after != nil && storage.PosOf(r).Compare(*after) <= 0 {
				continue
			}
			all = append(all, found{r, rk})
		}
		slices.SortFunc(all, func(a, b found) int { return storage.PosOf(a.r).Compare(storage.PosOf(b.r)) })
		if limit := q.PageSize(); len(all) > limit {
			all = all[:limit]
			page.Cursor = storage.PosOf(all[limit-1].r).Cursor()
		}
		page.Requests = make([]storage.ListedRequest, len(all))
		for i, f := range all {
			last, err := lastLive(tx, f.rk, logged[string(f.rk)], now)
			if err != nil {
				return err
			}
			page.Requests[i] = storage.Listed(f.r, last)
		}
		return nil
	})
	if err != nil {
		return storage.ListPage{}, err
	}
	return page, nil
}

// lastLive returns the unexpired event of the request rk with the highest
// seq, in the file or among its logged events, or the zero Event when there
// is none.
func lastLive(tx *bbolt.Tx, rk []byte, logged []logRecord, now time.Time) (storage.Event, error) {
	var last storage.Event
	if b := tx.Bucket(bucketEvents).Bucket(rk); b != nil {
		c := b.Cursor()
		for sk, v := c.Last(); sk != nil; sk, v = c.Prev() {
			ev, err := decodeEvent(rk, v)
			if err != nil {
				return storage.Event{}, err
			}
			if !expired(ev.ExpiresAt, now) {
				last = ev
				break
			}
		}
	}
	for i := len(logged) - 1; i >= 0; i-- {
		if logged[i].seq <= last.Seq {
			continue
		}
		ev, err := decodeEvent(rk, logged[i].value)
		if err != nil {
			return storage.Event{}, err
		}
		if !expired(ev.ExpiresAt, now) && ev.Seq > last.Seq {
			last = ev
		}
	}
	return last, nil
}
