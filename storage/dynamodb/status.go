package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.StatusLister = (*Store)(nil)

// statusExamine bounds the index entries one ListByStatus call reads per
// shard: filters that few requests pass end a page early, with a cursor,
// rather than read a whole status.
const statusExamine = 200

// statusEntry is an entry of [IndexStatus] in a status listing.
type statusEntry struct {
	pos storage.StatusPos
	pk  string
	key item
}

// shardResult is what one shard's query of a status listing found.
type shardResult struct {
	entries []statusEntry // those passing the filters, newest first
	last    storage.StatusPos
	more    bool // entries after last may pass the filters
}

// ListByStatus queries [IndexStatus], never scans: one eventually
// consistent Query (more when it pages) of each of the status's
// [StatusShards] partitions, newest first, with the sort key within the
// query's time bounds and at or before the cursor, at most 8 at a time. The
// action filter uses the projected action and the tenant filter the key, so
// neither reads the table; entries whose projected expires_at has passed
// are skipped. The newest entries of the shards are merged, and the page's
// requests read with strongly consistent BatchGetItem calls; a request
// whose current state no longer passes the query (the index lags its
// changes by a moment) is left out, so a page may hold fewer requests than
// the limit. Each shard reads at most 200 entries per call: with filters
// that few requests pass a page may end early, with a cursor.
//
// Requests parked by a tenant or action limit (queued, in a waiting
// partition of the index) are not listed as queued.
func (s *Store) ListByStatus(ctx context.Context, q storage.StatusQuery) (storage.StatusPage, error) {
	const op = "list by status"
	if err := ctx.Err(); err != nil {
		return storage.StatusPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
	}
	var after *storage.StatusPos
	if q.Cursor != "" {
		p, err := storage.ParseStatusCursor(q.Cursor)
		if err != nil {
			return storage.StatusPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
		}
		after = &p
	}
	if q.Status == "" {
		return storage.StatusPage{}, fmt.Errorf("dynamodb: %s: no status", op)
	}
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !q.Since.IsZero() {
		lo = q.Since.UnixMilli()
	}
	if !q.Until.IsZero() {
		hi = q.Until.UnixMilli() - 1
	}
	if after != nil {
		hi = min(hi, after.MS)
	}
	limit := q.PageSize()
	parts := make([]string, 0, StatusShards)
	for n := range StatusShards {
		parts = append(parts, shardOf(string(q.Status), n))
	}
	if q.Status == storage.StatusQueued {
		// Requests parked by the tenant limits are queued too: they are in
		// the waiting partitions of the keys marked in waiting_keys (one
		// more query).
		marked, err := s.queryDue(ctx, partitionWaitingKeys, math.MaxInt64, 0, s.now())
		if err != nil {
			return storage.StatusPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
		}
		for _, d := range marked {
			parts = append(parts, prefixWaiting+d.pk)
		}
	}
	results := make([]shardResult, len(parts))
	errs := make([]error, len(parts))
	sem := make(chan struct{}, dueWorkers)
	var wg sync.WaitGroup
	if lo <= hi {
		for n, part := range parts {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				results[n], errs[n] = s.queryStatus(ctx, part, q, after, lo, hi, limit)
			})
		}
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return storage.StatusPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
	}
	// Everything after the earliest place some shard may still hold
	// unread entries waits for the next page.
	var bound *storage.StatusPos
	var all []statusEntry
	for _, r := range results {
		all = append(all, r.entries...)
		if r.more && (bound == nil || r.last.Compare(*bound) < 0) {
			bound = &r.last
		}
	}
	slices.SortFunc(all, func(a, b statusEntry) int { return a.pos.Compare(b.pos) })
	if bound != nil {
		all = slices.DeleteFunc(all, func(e statusEntry) bool { return e.pos.Compare(*bound) > 0 })
	}
	if len(all) > limit {
		all = all[:limit]
		bound = &all[limit-1].pos
	}
	keys := make([]item, len(all))
	for i, e := range all {
		keys[i] = e.key
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return storage.StatusPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
	}
	var page storage.StatusPage
	now := s.now()
	for _, e := range all {
		it := items[e.pk]
		if it == nil || expired(it, now) {
			continue
		}
		r, err := decodeRequest(it)
		if err != nil {
			return storage.StatusPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
		}
		if q.Matches(r) {
			page.Requests = append(page.Requests, r)
		}
	}
	if bound != nil {
		page.Cursor = bound.Cursor()
	}
	return page, nil
}

// queryStatus reads the partition part of [IndexStatus] backwards from hi
// to lo (epoch ms, inclusive) for up to limit entries that pass q's action
// and tenant filters and come after the cursor, examining at most
// statusExamine entries.
func (s *Store) queryStatus(ctx context.Context, part string, q storage.StatusQuery, after *storage.StatusPos, lo, hi int64, limit int) (shardResult, error) {
	e := newExpr()
	in := &ddb.QueryInput{
		TableName: s.table,
		IndexName: aws.String(IndexStatus),
		KeyConditionExpression: aws.String(e.n(AttrStatusShard) + " = " + e.s(part) + " AND " + e.n(AttrStatusTime) +
			" BETWEEN " + e.v(num(lo)) + " AND " + e.v(num(hi))),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ScanIndexForward:          aws.Bool(false),
		Limit:                     aws.Int32(int32(min(limit+1, statusExamine))), //nolint:gosec // at most statusExamine
	}
	now := s.now()
	var res shardResult
	examined := 0
	stopping := false // full: only the entries of the last one's millisecond are still read
	for {
		page, err := s.api.Query(ctx, in)
		if err != nil {
			return shardResult{}, fmt.Errorf("query %s %s: %w", IndexStatus, part, err)
		}
		for _, it := range page.Items {
			r := reader{it: it}
			en := statusEntry{pk: r.str(AttrPK)}
			en.pos = storage.StatusPos{MS: r.int(AttrStatusTime), Key: strings.TrimPrefix(en.pk, prefixRequest)}
			action := r.str(attrAction)
			if r.err != nil {
				return shardResult{}, fmt.Errorf("index entry in %s: %w", part, r.err)
			}
			en.key = primaryKey(en.pk, sortRequest)
			if !stopping && (len(res.entries) >= limit || examined >= statusExamine) {
				stopping = true
			}
			// The index orders a millisecond's entries in no particular
			// way: a shard stops only after its last one's millisecond,
			// so that the cursor leaves none of them unread.
			if stopping && (en.pos.MS != res.last.MS || examined >= 2*statusExamine) {
				res.more = true
				return res, nil
			}
			examined++
			if examined == 1 || en.pos.Compare(res.last) > 0 {
				res.last = en.pos
			}
			if after != nil && en.pos.Compare(*after) <= 0 {
				continue
			}
			if expired(it, now) || (q.Action != "" && action != q.Action) {
				continue
			}
			if q.Tenant != "" {
				k, err := storage.ParseKey(en.pos.Key)
				if err != nil || k.Tenant != q.Tenant {
					continue
				}
			}
			res.entries = append(res.entries, en)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return res, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
		in.Limit = aws.Int32(int32(min(limit+1, statusExamine))) //nolint:gosec // at most statusExamine
	}
}
