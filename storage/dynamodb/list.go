package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.PrincipalLister = (*Store)(nil)

// The principal index, which answers [storage.PrincipalLister].
const (
	// IndexPrincipal is the table's global secondary index of request items
	// by principal and creation: its partition key is
	// [AttrPrincipalKey], its sort key [AttrPrincipalTime]. It projects
	// only expires_at. Only request items have the two attributes, which
	// CreateRequest sets and nothing changes, so each request writes the
	// index once, and events, status changes, lease renewals and
	// subscriptions never write it.
	IndexPrincipal = "principal-time"
	// AttrPrincipalKey is the principal index's partition key (a string):
	// the request's tenant and subject, escaped and separated as by
	// [storage.Key.String] ("<tenant>|<subject>|"), so that no two
	// principals share a partition.
	AttrPrincipalKey = "principal_key"
	// AttrPrincipalTime is the principal index's sort key (a string): the
	// request's creation time in epoch milliseconds, offset by 2^63 and
	// written with 20 digits so that strings order like times, "#" and
	// the request's ID. Sorted backwards it lists the newest first, ties
	// by ID descending, as [storage.ListPos.Compare] does.
	AttrPrincipalTime = "principal_time"
)

// principalIndex is the definition of [IndexPrincipal] in [Schema].
func principalIndex() types.GlobalSecondaryIndex {
	return types.GlobalSecondaryIndex{
		IndexName: aws.String(IndexPrincipal),
		KeySchema: []types.KeySchemaElement{
			{AttributeName: aws.String(AttrPrincipalKey), KeyType: types.KeyTypeHash},
			{AttributeName: aws.String(AttrPrincipalTime), KeyType: types.KeyTypeRange},
		},
		// Set at creation and never changed, so projecting it adds no
		// index write; what changes with each event or status (seq,
		// percentage, message, status, updated_at) is read from the
		// table instead.
		Projection: &types.Projection{
			ProjectionType:   types.ProjectionTypeInclude,
			NonKeyAttributes: []string{attrExpiresAt},
		},
	}
}

// maxSortKey is DynamoDB's limit on the size of a sort key value.
const maxSortKey = 1024

// principalKey is the [AttrPrincipalKey] of the principal (tenant, subject).
func principalKey(tenant, subject string) string {
	return storage.Key{Tenant: tenant, Subject: subject}.String()
}

// principalTime is the [AttrPrincipalTime] of the listing place p.
func principalTime(p storage.ListPos) string {
	return fmt.Sprintf("%020d#%s", uint64(p.CreatedMS)^(1<<63), p.ID) //nolint:gosec // an order-keeping bijection of int64 to uint64
}

// parsePrincipalTime is the inverse of principalTime.
func parsePrincipalTime(s string) (storage.ListPos, error) {
	if len(s) < 21 || s[20] != '#' {
		return storage.ListPos{}, fmt.Errorf("malformed %s %q", AttrPrincipalTime, s)
	}
	u, err := strconv.ParseUint(s[:20], 10, 64)
	if err != nil {
		return storage.ListPos{}, fmt.Errorf("malformed %s %q: %w", AttrPrincipalTime, s, err)
	}
	return storage.ListPos{CreatedMS: int64(u ^ (1 << 63)), ID: s[21:]}, nil //nolint:gosec // the inverse of principalTime
}

// setListAttributes gives the request item of r its principal index
// attributes. A request whose ID is too long for a sort key (over 1000
// bytes; the router's IDs have at most 128) gets none and is not listed.
func setListAttributes(it item, r storage.Request) {
	pt := principalTime(storage.PosOf(r))
	if len(pt) > maxSortKey {
		return
	}
	it[AttrPrincipalKey] = str(principalKey(r.Key.Tenant, r.Key.Subject))
	it[AttrPrincipalTime] = str(pt)
}

// Bounds of one ListRequests call.
const (
	// listExamine bounds the index entries one call reads the requests of:
	// a status filter that few requests pass ends a page early, with a
	// cursor, rather than read the principal's every request.
	listExamine = 200
	// lastEventWorkers bounds the LastEvent queries run at once.
	lastEventWorkers = 8
)

// listEntry is an entry of [IndexPrincipal].
type listEntry struct {
	at      string // principal_time
	pk      string // the table's pk
	key     item   // the request item's primary key
	expired bool
}

// ListRequests queries [IndexPrincipal], never scans: the principal's
// partition, backwards from the cursor (an eventually consistent Query with
// a Limit of what the page still needs, plus one entry to tell whether more
// follow). Entries whose projected expires_at has passed are skipped. It
// reads the current state of the others with strongly consistent
// BatchGetItem calls (projected to the listed attributes), keeps those that
// pass the status filter, and reads the latest event of each request of the
// page with one strongly consistent LastEvent Query, at most 8 at a time.
// An entry whose item is gone, has expired, belongs to another principal
// or no longer has that place (the index lags a re-created request) is
// skipped.
//
// Without a status filter one round fills a page. With one, rounds of 100
// entries follow until the page is full or 200 entries have been read; the
// page may then hold fewer requests than the limit, with a cursor after the
// last entry read. The index is eventually consistent: a request
// created a moment ago may be missing from a listing.
func (s *Store) ListRequests(ctx context.Context, tenant, subject string, q storage.ListQuery) (storage.ListPage, error) {
	const op = "list requests"
	if err := ctx.Err(); err != nil {
		return storage.ListPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
	}
	var below string // exclusive bound of principal_time; "" for the newest
	if q.Cursor != "" {
		p, err := storage.ParseListCursor(q.Cursor)
		if err != nil {
			return storage.ListPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
		}
		below = principalTime(p)
		if len(below) > maxSortKey {
			// Longer than any sort key: no store made it.
			return storage.ListPage{}, fmt.Errorf("dynamodb: %s: %w: its ID is too long", op, storage.ErrBadCursor)
		}
	}
	limit := q.PageSize()
	pk := principalKey(tenant, subject)
	now := s.now()
	var (
		found    []storage.Request
		examined int
		cursor   string
		n        = limit
	)
rounds:
	for {
		entries, more, err := s.queryPrincipal(ctx, pk, below, n)
		if err != nil {
			return storage.ListPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
		}
		// BatchGetItem refuses duplicate keys, and a lagging index may
		// hold two entries of one request (re-created after it expired).
		var keys []item
		seen := make(map[string]bool, len(entries))
		for _, en := range entries {
			if !en.expired && !seen[en.pk] {
				seen[en.pk] = true
				keys = append(keys, en.key)
			}
		}
		items, err := s.batchGet(ctx, keys, listProjection)
		if err != nil {
			return storage.ListPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
		}
		for i, en := range entries {
			examined++
			below = en.at
			it := items[en.pk]
			if en.expired || it == nil || expired(it, now) {
				continue
			}
			r, err := decodeRequest(it)
			if err != nil {
				return storage.ListPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
			}
			// An entry the item no longer matches (the index lags) is
			// skipped: the item's own entry is listed at its place.
			if r.Key.Tenant != tenant || r.Key.Subject != subject || principalTime(storage.PosOf(r)) != en.at || !q.Matches(r.Status) {
				continue
			}
			found = append(found, r)
			if len(found) == limit {
				if i < len(entries)-1 || more {
					cursor = en.at
				}
				break rounds
			}
		}
		switch {
		case !more:
			break rounds
		case examined >= listExamine:
			cursor = below
			break rounds
		case len(q.Statuses) == 0:
			n = limit - len(found) // only expired or vanished entries were skipped
		default:
			n = batchGetSize // the filter may keep few: read more at once
		}
		n = min(n, listExamine-examined)
	}

	page := storage.ListPage{Requests: make([]storage.ListedRequest, len(found))}
	if cursor != "" {
		p, err := parsePrincipalTime(cursor)
		if err != nil {
			return storage.ListPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
		}
		page.Cursor = p.Cursor()
	}
	if err := s.lastEvents(ctx, found, page.Requests); err != nil {
		return storage.ListPage{}, fmt.Errorf("dynamodb: %s: %w", op, err)
	}
	return page, nil
}

// listProjection projects a listing's BatchGetItem to the attributes it
// shows (the read costs the same: it saves only transfer).
func listProjection(ka *types.KeysAndAttributes) {
	e := newExpr()
	ka.ProjectionExpression = aws.String(e.n(AttrPK) + ", " + e.n(attrAction) + ", " + e.n(attrStatus) + ", " +
		e.n(attrCreatedAt) + ", " + e.n(attrUpdatedAt) + ", " + e.n(attrExpiresAt))
	ka.ExpressionAttributeNames = e.names
}

// queryPrincipal queries the partition pk of [IndexPrincipal] backwards
// from below (exclusive; "" for the newest) for up to n entries, and
// reports whether more follow.
func (s *Store) queryPrincipal(ctx context.Context, pk, below string, n int) ([]listEntry, bool, error) {
	e := newExpr()
	cond := e.n(AttrPrincipalKey) + " = " + e.s(pk)
	if below != "" {
		cond += " AND " + e.n(AttrPrincipalTime) + " < " + e.s(below)
	}
	in := &ddb.QueryInput{
		TableName:                 s.table,
		IndexName:                 aws.String(IndexPrincipal),
		KeyConditionExpression:    aws.String(cond),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ScanIndexForward:          aws.Bool(false),
		Limit:                     aws.Int32(int32(n + 1)), //nolint:gosec // n ≤ 200
	}
	now := s.now()
	var out []listEntry
	for {
		page, err := s.api.Query(ctx, in)
		if err != nil {
			return nil, false, fmt.Errorf("query %s: %w", IndexPrincipal, err)
		}
		for _, it := range page.Items {
			if len(out) == n {
				return out, true, nil
			}
			r := reader{it: it}
			en := listEntry{at: r.str(AttrPrincipalTime), pk: r.str(AttrPK), expired: expired(it, now)}
			en.key = primaryKey(en.pk, r.str(AttrSK))
			if r.err != nil {
				return nil, false, fmt.Errorf("index entry of %s: %w", pk, r.err)
			}
			out = append(out, en)
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, false, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
		in.Limit = aws.Int32(int32(n + 1 - len(out))) //nolint:gosec // n ≤ 200
	}
}

// lastEvents fills out[i] with reqs[i] and its latest event, running the
// LastEvent queries lastEventWorkers at a time.
func (s *Store) lastEvents(ctx context.Context, reqs []storage.Request, out []storage.ListedRequest) error {
	errs := make([]error, len(reqs))
	sem := make(chan struct{}, lastEventWorkers)
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ev, err := s.LastEvent(ctx, r.Key)
			if err != nil && !errors.Is(err, storage.ErrNotFound) {
				errs[i] = err
				return
			}
			out[i] = storage.Listed(r, ev)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
