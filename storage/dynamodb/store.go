package dynamodb

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer/storage"
)

var (
	_ storage.Store     = (*Store)(nil)
	_ storage.DueLister = (*Store)(nil)
)

// API is the part of *dynamodb.Client that a [Store] uses.
type API interface {
	GetItem(ctx context.Context, in *ddb.GetItemInput, optFns ...func(*ddb.Options)) (*ddb.GetItemOutput, error)
	PutItem(ctx context.Context, in *ddb.PutItemInput, optFns ...func(*ddb.Options)) (*ddb.PutItemOutput, error)
	UpdateItem(ctx context.Context, in *ddb.UpdateItemInput, optFns ...func(*ddb.Options)) (*ddb.UpdateItemOutput, error)
	Query(ctx context.Context, in *ddb.QueryInput, optFns ...func(*ddb.Options)) (*ddb.QueryOutput, error)
	TransactWriteItems(ctx context.Context, in *ddb.TransactWriteItemsInput, optFns ...func(*ddb.Options)) (*ddb.TransactWriteItemsOutput, error)
	BatchWriteItem(ctx context.Context, in *ddb.BatchWriteItemInput, optFns ...func(*ddb.Options)) (*ddb.BatchWriteItemOutput, error)
	BatchGetItem(ctx context.Context, in *ddb.BatchGetItemInput, optFns ...func(*ddb.Options)) (*ddb.BatchGetItemOutput, error)
}

// Config configures a [Store].
type Config struct {
	// Client talks to DynamoDB, usually a *dynamodb.Client. Required.
	Client API
	// Table is the name of a table created from [Schema]. Required.
	Table string
	// Logger receives debug logs of retried writes. The zero value logs
	// nothing.
	Logger zerolog.Logger
	// Limits are the quotas the store enforces (pending requests per
	// principal, running requests per concurrency key). The zero value
	// enforces none.
	Limits Limits
}

// Store is a [storage.Store] and [storage.DueLister] kept in one DynamoDB
// table. It is safe for
// concurrent use. Create it with [New].
type Store struct {
	api    API
	table  *string
	log    zerolog.Logger
	limits Limits
	// now is the clock that decides whether an item has expired.
	now func() time.Time
}

// New validates cfg and returns a store. The error names the invalid field.
// New makes no call to DynamoDB.
func New(cfg Config) (*Store, error) {
	if cfg.Client == nil {
		return nil, errors.New("dynamodb: Config.Client is required")
	}
	if cfg.Table == "" {
		return nil, errors.New("dynamodb: Config.Table is required")
	}
	if err := validTableName(cfg.Table); err != nil {
		return nil, fmt.Errorf("dynamodb: Config.Table: %w", err)
	}
	return &Store{api: cfg.Client, table: aws.String(cfg.Table), log: cfg.Logger, limits: cfg.Limits, now: time.Now}, nil
}

// Table returns the name of the store's table.
func (s *Store) Table() string { return *s.table }

// Cancellation reason codes of TransactionCanceledException.
const (
	reasonConditionalCheckFailed = "ConditionalCheckFailed"
	reasonTransactionConflict    = "TransactionConflict"
)

// Retries of writes that collided with a concurrent transaction on the same
// item (DynamoDB rejects rather than queues them; nothing was written).
const (
	conflictRetries  = 10
	conflictMinDelay = 5 * time.Millisecond
	conflictMaxDelay = 500 * time.Millisecond
)

// isTxConflict reports whether err is a write rejected because a transaction
// was in progress on one of its items.
func isTxConflict(err error) bool {
	var conflict *types.TransactionConflictException
	if errors.As(err, &conflict) {
		return true
	}
	var canceled *types.TransactionCanceledException
	if !errors.As(err, &canceled) {
		return false
	}
	found := false
	for _, r := range canceled.CancellationReasons {
		switch aws.ToString(r.Code) {
		case reasonConditionalCheckFailed:
			return false
		case reasonTransactionConflict:
			found = true
		}
	}
	return found
}

// write runs fn, again after a jittered backoff while it fails with a
// transaction conflict.
func (s *Store) write(ctx context.Context, op string, fn func() error) error {
	delay := conflictMinDelay
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !isTxConflict(err) || attempt == conflictRetries {
			return err
		}
		wait := delay/2 + rand.N(delay) //nolint:gosec // jitter needs no crypto
		s.log.Debug().Err(err).Str("op", op).Int("attempt", attempt).Dur("wait", wait).Msg("dynamodb: retrying after a transaction conflict")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, conflictMaxDelay)
	}
}

// conditionFailed returns the item that failed a conditional write (nil
// when there was none), when err is a ConditionalCheckFailedException.
func conditionFailed(err error) (item, bool) {
	var ccf *types.ConditionalCheckFailedException
	if errors.As(err, &ccf) {
		return ccf.Item, true
	}
	return nil, false
}

// canceledReasons returns the cancellation reasons of a transaction that a
// condition canceled.
func canceledReasons(err error) ([]types.CancellationReason, bool) {
	var canceled *types.TransactionCanceledException
	if errors.As(err, &canceled) {
		return canceled.CancellationReasons, true
	}
	return nil, false
}

func reasonFailed(reasons []types.CancellationReason, i int) (item, bool) {
	if i >= len(reasons) || aws.ToString(reasons[i].Code) != reasonConditionalCheckFailed {
		return nil, false
	}
	return reasons[i].Item, true
}

// query runs in page by page, calling fn with each item until fn returns
// false or the pages end.
func (s *Store) query(ctx context.Context, in *ddb.QueryInput, fn func(it item) (bool, error)) error {
	in.TableName = s.table
	in.ConsistentRead = aws.Bool(true)
	for {
		out, err := s.api.Query(ctx, in)
		if err != nil {
			return err
		}
		for _, it := range out.Items {
			more, err := fn(it)
			if err != nil || !more {
				return err
			}
		}
		if len(out.LastEvaluatedKey) == 0 {
			return nil
		}
		in.ExclusiveStartKey = out.LastEvaluatedKey
	}
}

// getItem reads an item with a strongly consistent read; nil when missing.
func (s *Store) getItem(ctx context.Context, key item) (item, error) {
	out, err := s.api.GetItem(ctx, &ddb.GetItemInput{TableName: s.table, Key: key, ConsistentRead: aws.Bool(true)})
	if err != nil {
		return nil, err
	}
	return out.Item, nil
}

// --- connections ------------------------------------------------------------

// PutConnection creates or replaces a connection with one PutItem.
func (s *Store) PutConnection(ctx context.Context, c storage.Connection) error {
	if c.ID == "" {
		return errors.New("dynamodb: put connection: empty connection id")
	}
	err := s.write(ctx, "put connection", func() error {
		_, err := s.api.PutItem(ctx, &ddb.PutItemInput{TableName: s.table, Item: encodeConnection(c)})
		return err
	})
	if err != nil {
		return fmt.Errorf("dynamodb: put connection %s: %w", c.ID, err)
	}
	return nil
}

// GetConnection reads a connection with one GetItem.
func (s *Store) GetConnection(ctx context.Context, id string) (storage.Connection, error) {
	if id == "" {
		return storage.Connection{}, fmt.Errorf("dynamodb: get connection %q: %w", id, storage.ErrNotFound)
	}
	it, err := s.getItem(ctx, primaryKey(connPK(id), sortConnection))
	if err != nil {
		return storage.Connection{}, fmt.Errorf("dynamodb: get connection %s: %w", id, err)
	}
	if it == nil || expired(it, s.now()) {
		return storage.Connection{}, fmt.Errorf("dynamodb: get connection %s: %w", id, storage.ErrNotFound)
	}
	c, err := decodeConnection(it)
	if err != nil {
		return storage.Connection{}, fmt.Errorf("dynamodb: get connection %s: %w", id, err)
	}
	return c, nil
}

// DeleteConnection queries the connection's partition for the connection
// item and its subscriptions, then deletes both items of each subscription
// and the connection with BatchWriteItem. A connection stored by
// PutConnectionCounted is deleted last, with its member item and one from
// its principal's counter, in one transaction (see conncap.go). It is not
// atomic: a failure may leave some subscriptions, and calling it again
// removes them.
func (s *Store) DeleteConnection(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	var (
		deletes         []item
		tenant, subject string
		counted         bool
	)
	e := newExpr()
	err := s.query(ctx, &ddb.QueryInput{
		KeyConditionExpression: aws.String(e.n(AttrPK) + " = " + e.s(connPK(id))),
		ProjectionExpression: aws.String(e.n(AttrSK) + ", " + e.n(attrTenant) + ", " + e.n(attrSubject) + ", " +
			e.n(attrCounted)),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}, func(it item) (bool, error) {
		sk := (&reader{it: it}).str(AttrSK)
		if sk == sortConnection {
			tenant, subject, counted = countedOwner(it)
			return true, nil
		}
		if !strings.HasPrefix(sk, prefixSub) {
			return true, nil
		}
		rk := strings.TrimPrefix(sk, prefixSub)
		deletes = append(deletes,
			primaryKey(connPK(id), sk),
			primaryKey(prefixRequest+rk, prefixSub+id))
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("dynamodb: delete connection %s: %w", id, err)
	}
	// The connection item goes last: until its subscriptions are gone, the
	// connection stays visible.
	if !counted {
		deletes = append(deletes, primaryKey(connPK(id), sortConnection))
	}
	if err := s.deleteAll(ctx, deletes); err != nil {
		return fmt.Errorf("dynamodb: delete connection %s: %w", id, err)
	}
	if counted {
		if err := s.deleteCounted(ctx, id, tenant, subject); err != nil {
			return fmt.Errorf("dynamodb: delete connection %s: %w", id, err)
		}
	}
	return nil
}

// batchSize is BatchWriteItem's limit.
const batchSize = 25

// deleteAll deletes keys with BatchWriteItem, retrying unprocessed items.
func (s *Store) deleteAll(ctx context.Context, keys []item) error {
	for start := 0; start < len(keys); start += batchSize {
		batch := keys[start:min(start+batchSize, len(keys))]
		reqs := make([]types.WriteRequest, len(batch))
		for i, k := range batch {
			reqs[i] = types.WriteRequest{DeleteRequest: &types.DeleteRequest{Key: k}}
		}
		pending := map[string][]types.WriteRequest{*s.table: reqs}
		delay := conflictMinDelay
		for attempt := 1; len(pending) > 0; attempt++ {
			var out *ddb.BatchWriteItemOutput
			err := s.write(ctx, "batch delete", func() error {
				var err error
				out, err = s.api.BatchWriteItem(ctx, &ddb.BatchWriteItemInput{RequestItems: pending})
				return err
			})
			if err != nil {
				return err
			}
			pending = out.UnprocessedItems
			if len(pending) == 0 {
				break
			}
			if attempt == conflictRetries {
				return fmt.Errorf("%d items left unprocessed after %d attempts", len(pending[*s.table]), attempt)
			}
			t := time.NewTimer(delay/2 + rand.N(delay)) //nolint:gosec // jitter needs no crypto
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			delay = min(2*delay, conflictMaxDelay)
		}
	}
	return nil
}

// --- subscriptions ----------------------------------------------------------

// subscriptionItems returns the two items of a subscription: one in the
// request's partition (for Subscribers) and one in the connection's (for
// Subscriptions and DeleteConnection). Both carry the expiry and its TTL.
func subscriptionItems(k storage.Key, connID string, expiresAt time.Time) (byRequest, byConn item) {
	byRequest = primaryKey(requestPK(k), prefixSub+connID)
	byRequest[attrConnID] = str(connID)
	builder(byRequest).expiry(expiresAt)
	byConn = primaryKey(connPK(connID), prefixSub+k.String())
	byConn[attrRequestKey] = str(k.String())
	builder(byConn).expiry(expiresAt)
	return byRequest, byConn
}

// Subscribe writes the subscription's two items, with expiresAt and the TTL
// attribute when it is not zero, with one TransactWriteItems of two Puts.
// Subscribing again replaces both items, and so the expiry.
func (s *Store) Subscribe(ctx context.Context, k storage.Key, connID string, expiresAt time.Time) error {
	if connID == "" {
		return errors.New("dynamodb: subscribe: empty connection id")
	}
	byReq, byConn := subscriptionItems(k, connID, expiresAt)
	// The request's subs_version grows in the same transaction, so a
	// processor appending with the old version learns of the subscriber.
	e := newExpr()
	bump := &types.Update{
		TableName: s.table, Key: requestKey(k),
		UpdateExpression:         aws.String("ADD " + e.n(attrSubsVersion) + " " + e.v(num(1))),
		ConditionExpression:      aws.String("attribute_exists(" + e.n(AttrPK) + ")"),
		ExpressionAttributeNames: e.names, ExpressionAttributeValues: e.values,
	}
	subscribe := func(withBump bool) error {
		items := []types.TransactWriteItem{
			{Put: &types.Put{TableName: s.table, Item: byReq}},
			{Put: &types.Put{TableName: s.table, Item: byConn}},
		}
		if withBump {
			items = append(items, types.TransactWriteItem{Update: bump})
		}
		return s.write(ctx, "subscribe", func() error {
			_, err := s.api.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: items})
			return err
		})
	}
	err := subscribe(true)
	if reasons, ok := canceledReasons(err); ok {
		if _, failed := reasonFailed(reasons, 2); failed {
			err = subscribe(false) // no such request: nothing to version
		}
	}
	if err != nil {
		return fmt.Errorf("dynamodb: subscribe %s to %s: %w", connID, k, err)
	}
	return nil
}

// Unsubscribe deletes the subscription's two items with one
// TransactWriteItems of two Deletes.
func (s *Store) Unsubscribe(ctx context.Context, k storage.Key, connID string) error {
	if connID == "" {
		return nil
	}
	err := s.write(ctx, "unsubscribe", func() error {
		_, err := s.api.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Delete: &types.Delete{TableName: s.table, Key: primaryKey(requestPK(k), prefixSub+connID)}},
			{Delete: &types.Delete{TableName: s.table, Key: primaryKey(connPK(connID), prefixSub+k.String())}},
		}})
		return err
	})
	if err != nil {
		return fmt.Errorf("dynamodb: unsubscribe %s from %s: %w", connID, k, err)
	}
	return nil
}

// querySubs lists the sort keys under prefixSub of partition pk, without the
// prefix, leaving out the subscriptions that have expired.
func (s *Store) querySubs(ctx context.Context, pk string) ([]string, error) {
	var out []string
	now := s.now()
	e := newExpr()
	err := s.query(ctx, &ddb.QueryInput{
		KeyConditionExpression:    aws.String(e.n(AttrPK) + " = " + e.s(pk) + " AND begins_with(" + e.n(AttrSK) + ", " + e.s(prefixSub) + ")"),
		ProjectionExpression:      aws.String(e.n(AttrSK) + ", " + e.n(attrExpiresAt)),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}, func(it item) (bool, error) {
		if !expired(it, now) {
			out = append(out, strings.TrimPrefix((&reader{it: it}).str(AttrSK), prefixSub))
		}
		return true, nil
	})
	return out, err
}

// Subscribers queries the request's partition (one or more strongly
// consistent Query pages), leaving expired subscriptions out.
func (s *Store) Subscribers(ctx context.Context, k storage.Key) ([]string, error) {
	ids, err := s.querySubs(ctx, requestPK(k))
	if err != nil {
		return nil, fmt.Errorf("dynamodb: subscribers of %s: %w", k, err)
	}
	return ids, nil
}

// Subscriptions queries the connection's partition (one or more strongly
// consistent Query pages), leaving expired subscriptions out.
func (s *Store) Subscriptions(ctx context.Context, connID string) ([]storage.Key, error) {
	if connID == "" {
		return nil, nil
	}
	rks, err := s.querySubs(ctx, connPK(connID))
	if err != nil {
		return nil, fmt.Errorf("dynamodb: subscriptions of %s: %w", connID, err)
	}
	keys := make([]storage.Key, 0, len(rks))
	for _, rk := range rks {
		k, err := storage.ParseKey(rk)
		if err != nil {
			return nil, fmt.Errorf("dynamodb: subscriptions of %s: decoding key %q: %w", connID, rk, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// --- requests ---------------------------------------------------------------

// CreateRequest stores a request with one conditional PutItem. A request
// that has expired but that TTL has not deleted yet is replaced (its events
// and subscriptions are not deleted; they expire on their own). The old
// events carry the old request's expiry, so reads skip them and event
// writes take their seqs (see AppendEvent).
func (s *Store) CreateRequest(ctx context.Context, r storage.Request) error {
	e := newExpr()
	cond := "attribute_not_exists(" + e.n(AttrPK) + ") OR " + e.n(attrExpiresAt) + " < " + e.ms(s.now())
	if s.limits.MaxPending > 0 {
		return s.createCounted(ctx, r, &types.Put{
			TableName: s.table, Item: encodeRequest(r), ConditionExpression: aws.String(cond),
			ExpressionAttributeNames: e.names, ExpressionAttributeValues: e.values,
		})
	}
	err := s.write(ctx, "create request", func() error {
		_, err := s.api.PutItem(ctx, &ddb.PutItemInput{
			TableName:                 s.table,
			Item:                      encodeRequest(r),
			ConditionExpression:       aws.String(cond),
			ExpressionAttributeNames:  e.names,
			ExpressionAttributeValues: e.values,
		})
		return err
	})
	if _, ok := conditionFailed(err); ok {
		return fmt.Errorf("dynamodb: create request %s: %w", r.Key, storage.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("dynamodb: create request %s: %w", r.Key, err)
	}
	return nil
}

// GetRequest reads a request with one GetItem.
func (s *Store) GetRequest(ctx context.Context, k storage.Key) (storage.Request, error) {
	it, err := s.getItem(ctx, requestKey(k))
	if err != nil {
		return storage.Request{}, fmt.Errorf("dynamodb: get request %s: %w", k, err)
	}
	if it == nil || expired(it, s.now()) {
		return storage.Request{}, fmt.Errorf("dynamodb: get request %s: %w", k, storage.ErrNotFound)
	}
	r, err := decodeRequest(it)
	if err != nil {
		return storage.Request{}, fmt.Errorf("dynamodb: get request %s: %w", k, err)
	}
	return r, nil
}

// errRejected is returned by updateRequest when the condition failed; old
// is then the request as it was (nil when there is none).
var errRejected = errors.New("condition failed")

// updateRequest runs one conditional UpdateItem on request k and returns the
// request as updated. When the condition fails it returns the item as it was
// (nil when missing) and errRejected, with no extra read.
func (s *Store) updateRequest(ctx context.Context, op string, k storage.Key, e *expr, cond string) (item, error) {
	var out *ddb.UpdateItemOutput
	err := s.write(ctx, op, func() error {
		var err error
		out, err = s.api.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName:                           s.table,
			Key:                                 requestKey(k),
			UpdateExpression:                    e.update(),
			ConditionExpression:                 aws.String(cond),
			ExpressionAttributeNames:            e.namesOrNil(),
			ExpressionAttributeValues:           e.valuesOrNil(),
			ReturnValues:                        types.ReturnValueAllNew,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		})
		return err
	})
	if old, ok := conditionFailed(err); ok {
		return old, errRejected
	}
	if err != nil {
		return nil, err
	}
	return out.Attributes, nil
}

// rejection turns a failed condition on request k into ErrNotFound (no
// request, or an expired one) or ErrConflict.
func (s *Store) rejection(op string, k storage.Key, old item) error {
	if old == nil || expired(old, s.now()) {
		return fmt.Errorf("dynamodb: %s %s: %w", op, k, storage.ErrNotFound)
	}
	r := reader{it: old}
	return fmt.Errorf("dynamodb: %s %s: request is %s, attempt %d: %w",
		op, k, r.str(attrStatus), r.int(attrAttempt), storage.ErrConflict)
}

var (
	queuedStatus = string(storage.StatusQueued)
	running      = string(storage.StatusRunning)
	canceling    = string(storage.StatusCanceling)
)

// ClaimRequest claims with one conditional UpdateItem (ReturnValues
// ALL_NEW) in the common cases: a queued request, and any claim with
// Claim.Stalled (which adds one to stalls whichever branch of the
// condition holds). A failed condition returns the old item (ALL_OLD),
// which tells ErrNotFound from ErrConflict without a read.
//
// A takeover without Claim.Stalled (a running or canceling request whose
// lease passed) must add one to stalls where a queued claim must not, and
// an update expression cannot branch on the condition: the first write
// claims only a queued request, and when its ALL_OLD shows a takeover
// case, a second conditional UpdateItem takes it over. A takeover therefore
// costs two writes (the refused one is billed too); it only happens after
// a processor died.
//
// The status a claim sets is if_not_exists(claim_status, "running"): the
// internal claim_status attribute is "canceling" on canceled requests, so
// a canceling request stays canceling, in the same single write. The index
// partition is set the same way from claim_shard.
func (s *Store) ClaimRequest(ctx context.Context, k storage.Key, c storage.Claim) (storage.Request, error) {
	const op = "claim request"
	var it item
	var err error
	if s.limits.KeyConcurrency > 0 || len(s.limits.Actions) > 0 {
		it, err = s.claimCounted(ctx, k, c)
		if errors.Is(err, storage.ErrWaiting) {
			return storage.Request{}, err
		}
	} else {
		it, err = s.claimUncounted(ctx, k, c)
	}
	if errors.Is(err, errRejected) {
		return storage.Request{}, s.rejection(op, k, it)
	}
	if err != nil {
		return storage.Request{}, fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	r, err := decodeRequest(it)
	if err != nil {
		return storage.Request{}, fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	return r, nil
}

// claimUncounted is a claim with no concurrency limit. With
// Claim.Stalled both branches add a stall: one write. Without, only the
// queued branch first.
func (s *Store) claimUncounted(ctx context.Context, k storage.Key, c storage.Claim) (item, error) {
	it, err := s.claim(ctx, k, c, true, c.Stalled, c.Stalled)
	if errors.Is(err, errRejected) && !c.Stalled && s.takeoverCase(it, c.Now) {
		it, err = s.claim(ctx, k, c, false, true, true)
	}
	return it, err
}

// claim is one conditional UpdateItem of a claim whose condition allows a
// queued request (queued), a takeover (takeover) or both, adding one to
// stalls when stall is set.
func (s *Store) claim(ctx context.Context, k storage.Key, c storage.Claim, queued, takeover, stall bool) (item, error) {
	e, cond := s.claimExpr(k, c, queued, takeover, stall)
	return s.updateRequest(ctx, "claim request", k, e, cond)
}

// claimExpr is the update and condition of a claim (see claim).
func (s *Store) claimExpr(k storage.Key, c storage.Claim, queued, takeover, stall bool) (*expr, string) {
	e := newExpr()
	now := e.ms(c.Now)
	e.setTo(attrStatus, "if_not_exists("+e.n(attrClaimStatus)+", "+e.s(running)+")")
	e.setTo(AttrStatusShard, "if_not_exists("+e.n(attrClaimShard)+", "+e.s(statusShard(running, k))+")")
	e.setTo(AttrStatusTime, e.ms(c.LeaseUntil))
	e.setTime(attrLeaseUntil, c.LeaseUntil)
	e.setTime(attrUpdatedAt, c.Now)
	e.setTo(attrStartedAt, "if_not_exists("+e.n(attrStartedAt)+", "+now+")")
	e.increment(attrAttempt)
	if stall {
		e.increment(attrStalls)
	}
	var branches []string // DynamoDB refuses unused names: each branch makes its own
	if queued {
		st, nb := e.n(attrStatus), e.n(attrNotBefore)
		branches = append(branches, st+" = "+e.s(queuedStatus)+" AND (attribute_not_exists("+nb+") OR "+nb+" <= "+now+")")
	}
	if takeover {
		lease := e.n(attrLeaseUntil)
		branches = append(branches, e.statusIn(running, canceling)+" AND (attribute_not_exists("+lease+") OR "+lease+" < "+now+")")
	}
	// DynamoDB refuses redundant parentheses.
	either := "(" + branches[0] + ")"
	if len(branches) == 2 {
		either = "((" + branches[0] + ") OR (" + branches[1] + "))"
	}
	cond := e.alive(s.now()) + " AND " + either
	return e, cond
}

// takeoverCase reports whether old, the item a queued-only claim was
// refused on, is a live running or canceling request whose lease passed at
// now.
func (s *Store) takeoverCase(old item, now time.Time) bool {
	if old == nil || expired(old, s.now()) {
		return false
	}
	r := reader{it: old}
	if st := r.str(attrStatus); st != running && st != canceling {
		return false
	}
	lease := r.time(attrLeaseUntil)
	return r.err == nil && (lease.IsZero() || now.After(lease))
}

// ExtendLease is one conditional UpdateItem.
func (s *Store) ExtendLease(ctx context.Context, k storage.Key, attempt int, until time.Time) error {
	const op = "extend lease"
	e := newExpr()
	e.setTime(attrLeaseUntil, until)
	e.setTo(AttrStatusTime, e.ms(until))
	cond := e.alive(s.now()) + " AND " + e.statusIn(running, canceling) +
		" AND " + e.n(attrAttempt) + " = " + e.v(num(int64(attempt)))
	it, err := s.updateRequest(ctx, op, k, e, cond)
	if errors.Is(err, errRejected) {
		return s.rejection(op, k, it)
	}
	if err != nil {
		return fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	return nil
}

// RequeueRequest is one conditional UpdateItem. It clears the lease.
func (s *Store) RequeueRequest(ctx context.Context, k storage.Key, attempt int, notBefore time.Time) error {
	return s.requeue(ctx, "requeue request", k, attempt, notBefore, false)
}

// ContinueRequest is RequeueRequest that also adds one to continuations,
// in the same single UpdateItem.
func (s *Store) ContinueRequest(ctx context.Context, k storage.Key, attempt int, notBefore time.Time) error {
	return s.requeue(ctx, "continue request", k, attempt, notBefore, true)
}

// SaveCheckpoint is one conditional UpdateItem of the request item, fenced
// like ExtendLease. The checkpoint is not projected into any index, so it
// adds no index write; it does make the request item larger, and every
// later write of the item is billed by its size (1 WCU per KB).
func (s *Store) SaveCheckpoint(ctx context.Context, k storage.Key, attempt int, state json.RawMessage) error {
	const op = "save checkpoint"
	e := newExpr()
	e.setTo(attrCheckpoint, e.v(bin(state)))
	cond := e.alive(s.now()) + " AND " + e.statusIn(running, canceling) +
		" AND " + e.n(attrAttempt) + " = " + e.v(num(int64(attempt)))
	it, err := s.updateRequest(ctx, op, k, e, cond)
	if errors.Is(err, errRejected) {
		return s.rejection(op, k, it)
	}
	if err != nil {
		return fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	return nil
}

func (s *Store) requeue(ctx context.Context, op string, k storage.Key, attempt int, notBefore time.Time, continued bool) error {
	build := func(h holds) (*expr, string, []types.TransactWriteItem) {
		e := newExpr()
		if continued {
			e.increment(attrContinued)
		}
		e.setTo(attrStatus, e.s(queuedStatus))
		e.setTo(AttrStatusShard, e.s(statusShard(queuedStatus, k)))
		e.setTo(AttrStatusTime, e.ms(notBefore))
		e.setTime(attrNotBefore, notBefore)
		e.del(attrLeaseUntil)
		cond := e.alive(s.now()) + " AND " + e.n(attrStatus) + " = " + e.s(running) +
			" AND " + e.n(attrAttempt) + " = " + e.v(num(int64(attempt)))
		cond, txs := s.release(e, cond, h, false, s.now())
		return e, cond, txs
	}
	h, it, err := s.updateHolding(ctx, op, k, build, false)
	if errors.Is(err, errRejected) {
		return s.rejection(op, k, it)
	}
	if err != nil {
		return fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	s.released(ctx, h)
	return nil
}

// requestUpdate is the Update of request k in a transaction, returning
// the old item when its condition fails.
func (s *Store) requestUpdate(k storage.Key, e *expr, cond string) *types.Update {
	return &types.Update{
		TableName:                           s.table,
		Key:                                 requestKey(k),
		UpdateExpression:                    e.update(),
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            e.namesOrNil(),
		ExpressionAttributeValues:           e.valuesOrNil(),
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}
}

// errWrongGuess is a release refused because the request holds other
// counters than guessed; the old item tells which.
var errWrongGuess = errors.New("the request holds other counters")

// updateHolding runs build's update of request k for what k is guessed to
// hold (see assumed), and once more for what the refused item shows when
// the guess was wrong. It returns what the request held, and the old item
// with errRejected when the update was refused.
func (s *Store) updateHolding(ctx context.Context, op string, k storage.Key, build func(holds) (*expr, string, []types.TransactWriteItem), withPending bool) (holds, item, error) {
	h := s.assumed(ctx, k, withPending)
	it, err := s.updateReleasing(ctx, op, k, build, h, withPending)
	if errors.Is(err, errWrongGuess) {
		h = holdsOf(it, withPending)
		it, err = s.updateReleasing(ctx, op, k, build, h, withPending)
	}
	if errors.Is(err, errWrongGuess) {
		err = errRejected // it changed again meanwhile
	}
	return h, it, err
}

// updateReleasing runs the request update that build makes for the guess
// h: one UpdateItem when it releases no counter, else a transaction with
// the counters' updates. A refused condition returns the old item with
// errRejected, or errWrongGuess when the old item holds other counters.
func (s *Store) updateReleasing(ctx context.Context, op string, k storage.Key, build func(holds) (*expr, string, []types.TransactWriteItem), h holds, withPending bool) (item, error) {
	e, cond, txs := build(h)
	if len(txs) == 0 {
		return s.updateRequest(ctx, op, k, e, cond)
	}
	err := s.transact(ctx, op, append([]types.TransactWriteItem{{Update: s.requestUpdate(k, e, cond)}}, txs...))
	if reasons, ok := canceledReasons(err); ok {
		if old, failed := reasonFailed(reasons, 0); failed {
			if old != nil && holdsOf(old, withPending) != h {
				return old, errWrongGuess
			}
			return old, errRejected
		}
	}
	return nil, err
}

// CancelRequest is one conditional UpdateItem that moves a queued or running
// request to canceling. A request that is already canceling or finished is
// returned as it is, from the failed condition's ALL_OLD item, with no
// extra read.
func (s *Store) CancelRequest(ctx context.Context, k storage.Key, now time.Time) (storage.Request, error) {
	const op = "cancel request"
	e := newExpr()
	e.setTo(attrStatus, e.s(canceling))
	e.setTo(attrClaimStatus, e.s(canceling))
	shard := e.s(statusShard(canceling, k))
	e.setTo(AttrStatusShard, shard)
	e.setTo(attrClaimShard, shard)
	// Due when the lease passes; from the cancel when there is none.
	e.setTo(AttrStatusTime, "if_not_exists("+e.n(attrLeaseUntil)+", "+e.ms(now)+")")
	e.setTime(attrUpdatedAt, now)
	cond := e.alive(s.now()) + " AND " + e.statusIn(queuedStatus, running)
	it, err := s.updateRequest(ctx, op, k, e, cond)
	if errors.Is(err, errRejected) {
		if it == nil || expired(it, s.now()) {
			return storage.Request{}, fmt.Errorf("dynamodb: %s %s: %w", op, k, storage.ErrNotFound)
		}
		err = nil // canceling or finished: returned unchanged
	}
	if err != nil {
		return storage.Request{}, fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	r, err := decodeRequest(it)
	if err != nil {
		return storage.Request{}, fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	return r, nil
}

// FinishRequest is one TransactWriteItems: an Update of the request
// (condition: it exists, has not expired, is live and its attempt is
// f.Attempt; it also moves the request's index entry to the final status)
// and a Put of the terminal event (condition: its seq is free, or holds an
// expired event).
func (s *Store) FinishRequest(ctx context.Context, k storage.Key, f storage.Finish) error {
	const op = "finish request"
	if !f.Status.Final() {
		return fmt.Errorf("dynamodb: %s %s: status %q is not final", op, k, f.Status)
	}
	ev, err := encodeEvent(k, f.Event)
	if err != nil {
		return fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}

	now := s.now()
	build := func(h holds) (*expr, string, []types.TransactWriteItem) {
		e := newExpr()
		e.setTo(attrStatus, e.s(string(f.Status)))
		e.setTime(attrUpdatedAt, f.Now)
		if len(f.Result) > 0 {
			e.setTo(attrResult, e.v(bin(f.Result)))
		} else {
			e.del(attrResult)
		}
		if f.ResultChunks != 0 {
			e.setTo(attrResultChunks, e.v(num(int64(f.ResultChunks))))
		} else {
			e.del(attrResultChunks)
		}
		if f.Error != nil {
			e.setTo(attrError, e.v(encodeError(f.Error)))
		} else {
			e.del(attrError)
		}
		e.del(attrClaimStatus)
		e.del(attrClaimShard)
		e.setTo(AttrStatusShard, e.s(statusShard(string(f.Status), k)))
		e.setTo(AttrStatusTime, e.ms(f.Now))
		cond := e.alive(now) + " AND " + e.statusIn(queuedStatus, running, canceling) + " AND " + e.attemptIs(f.Attempt)
		cond, txs := s.release(e, cond, h, true, now)
		// The event's Put is the transaction's second item (transactError).
		return e, cond, append([]types.TransactWriteItem{{Put: s.putEvent(ev, now)}}, txs...)
	}
	h, old, err := s.updateHolding(ctx, op, k, build, true)
	if errors.Is(err, errRejected) {
		return s.rejection(op, k, old)
	}
	if err != nil {
		return s.transactError(op, k, f.Event.Seq, err)
	}
	s.released(ctx, h)
	return nil
}

// putEvent is the Put of an event item at now, the store's clock. Its seq
// must be free: no item, or only an expired one that TTL has not deleted
// yet (left by an expired request with the same key, which CreateRequest
// replaced without deleting its events).
func (s *Store) putEvent(ev item, now time.Time) *types.Put {
	pe := newExpr()
	return &types.Put{
		TableName: s.table,
		Item:      ev,
		ConditionExpression: aws.String("attribute_not_exists(" + pe.n(AttrPK) + ") OR " +
			pe.n(attrExpiresAt) + " < " + pe.ms(now)),
		ExpressionAttributeNames:  pe.names,
		ExpressionAttributeValues: pe.values,
	}
}

// transactError translates the error of a transaction whose first item is
// the request's condition and whose second is the event's Put.
func (s *Store) transactError(op string, k storage.Key, seq int64, err error) error {
	if reasons, ok := canceledReasons(err); ok {
		if old, failed := reasonFailed(reasons, 0); failed {
			return s.rejection(op, k, old)
		}
		if _, failed := reasonFailed(reasons, 1); failed {
			return fmt.Errorf("dynamodb: %s %s: seq %d is taken: %w", op, k, seq, storage.ErrConflict)
		}
	}
	return fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
}

// AppendEvent is exactly one TransactWriteItems and no read: a
// ConditionCheck of the request (an Update with the same condition when
// the event carries a checkpoint, which it saves) (it exists, has not expired, is live, its
// attempt is attempt and its subscriber version subsVersion; ALL_OLD on
// failure tells ErrNotFound, ErrConflict and a subscriber change apart)
// and a Put of the event (its seq is free, or holds an expired event). The
// event item has no index attribute, so it adds no index write.
func (s *Store) AppendEvent(ctx context.Context, k storage.Key, attempt int, ev storage.Event, subsVersion int64) error {
	const op = "append event"
	it, err := encodeEvent(k, ev)
	if err != nil {
		return fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	e := newExpr()
	sv := e.n(attrSubsVersion)
	version := sv + " = " + e.v(num(subsVersion))
	if subsVersion == 0 {
		version = "(attribute_not_exists(" + sv + ") OR " + version + ")"
	}
	now := s.now()
	cond := e.alive(now) + " AND " + e.statusIn(queuedStatus, running, canceling) + " AND " + e.attemptIs(attempt) + " AND " + version
	check := types.TransactWriteItem{ConditionCheck: &types.ConditionCheck{
		TableName:                           s.table,
		Key:                                 requestKey(k),
		ConditionExpression:                 aws.String(cond),
		ExpressionAttributeNames:            e.names,
		ExpressionAttributeValues:           e.values,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	}}
	if ev.Checkpoint != nil {
		// The same condition, on an Update that saves the checkpoint: the
		// transaction keeps its two items.
		e.setTo(attrCheckpoint, e.v(bin(ev.Checkpoint)))
		check = types.TransactWriteItem{Update: s.requestUpdate(k, e, cond)}
	}
	err = s.write(ctx, op, func() error {
		_, err := s.api.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			check,
			{Put: s.putEvent(it, now)},
		}})
		return err
	})
	if err != nil {
		if reasons, ok := canceledReasons(err); ok {
			if old, failed := reasonFailed(reasons, 0); failed && old != nil && !expired(old, s.now()) {
				r := reader{it: old}
				st := r.str(attrStatus)
				live := st == queuedStatus || st == running || st == canceling
				if cur := r.int(attrSubsVersion); cur != subsVersion && live && r.int(attrAttempt) == int64(attempt) {
					return fmt.Errorf("dynamodb: %s %s: %w", op, k, &storage.SubscribersChangedError{Version: cur})
				}
			}
		}
		return s.transactError(op, k, ev.Seq, err)
	}
	return nil
}

// expiredPage is the page size LastEvent reads once it met an expired
// event.
const expiredPage = 50

// eventRange returns the key condition of k's events with seq in [from, to].
func eventRange(k storage.Key, from, to int64) (*expr, string) {
	e := newExpr()
	return e, e.n(AttrPK) + " = " + e.s(requestPK(k)) + " AND " + e.n(AttrSK) +
		" BETWEEN " + e.s(eventSK(from)) + " AND " + e.s(eventSK(to))
}

// ReadEvents queries the request's partition between the event sort keys
// (strongly consistent Query pages). Events whose ExpiresAt has passed are
// skipped. It does not read the request: an unknown request has no events.
func (s *Store) ReadEvents(ctx context.Context, k storage.Key, after int64, limit int) ([]storage.Event, error) {
	const op = "read events"
	after = max(after, 0)
	if after == math.MaxInt64 {
		return nil, nil
	}
	e, cond := eventRange(k, after+1, math.MaxInt64)
	in := &ddb.QueryInput{
		KeyConditionExpression:    aws.String(cond),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}
	if limit > 0 && limit <= math.MaxInt32 {
		in.Limit = aws.Int32(int32(limit))
	}
	now := s.now()
	var out []storage.Event
	err := s.query(ctx, in, func(it item) (bool, error) {
		if expired(it, now) {
			return true, nil
		}
		ev, err := decodeEvent(it)
		if err != nil {
			return false, err
		}
		out = append(out, ev)
		return limit <= 0 || len(out) < limit, nil
	})
	if err != nil {
		return nil, fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	return out, nil
}

// LastEvent queries the request's events backwards with Limit 1 (one
// strongly consistent Query). Expired events are skipped: the pages after
// one that held only an expired event are larger, so that the expired
// events of an earlier request with the same key (see CreateRequest) cost
// few queries.
func (s *Store) LastEvent(ctx context.Context, k storage.Key) (storage.Event, error) {
	const op = "last event"
	e, cond := eventRange(k, 1, math.MaxInt64)
	now := s.now()
	var last *storage.Event
	in := &ddb.QueryInput{
		KeyConditionExpression:    aws.String(cond),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
		ScanIndexForward:          aws.Bool(false),
		Limit:                     aws.Int32(1),
	}
	err := s.query(ctx, in, func(it item) (bool, error) {
		if expired(it, now) {
			in.Limit = aws.Int32(expiredPage) // the next page, if any
			return true, nil
		}
		ev, err := decodeEvent(it)
		if err != nil {
			return false, err
		}
		last = &ev
		return false, nil
	})
	if err != nil {
		return storage.Event{}, fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	if last == nil {
		return storage.Event{}, fmt.Errorf("dynamodb: %s %s: no events: %w", op, k, storage.ErrNotFound)
	}
	return *last, nil
}

// --- due requests -----------------------------------------------------------

// Limits of ListDue.
const (
	// dueWorkers bounds the index queries ListDue runs at once.
	dueWorkers = 8
	// batchGetSize is BatchGetItem's limit of keys per call.
	batchGetSize = 100
)

// dueEntry is an index entry of a due request.
type dueEntry struct {
	at  int64  // status_time
	pk  string // the table's pk
	key item   // the request item's primary key
}

// ListDue queries [IndexStatus], never scans: one Query (more when it
// pages) for each live status and shard, 3 × [StatusShards] in all, with
// the sort key before before, at most dueWorkers at a time. Entries of
// requests that have expired are skipped (the index projects expires_at).
// With a limit it keeps the limit entries due first, then reads the
// requests with strongly consistent BatchGetItem calls (100 keys each)
// and keeps those still due: the index is eventually consistent, so an
// entry may lag its request by a moment. The result may therefore hold
// fewer than limit requests while more are due; a later call finds them.
func (s *Store) ListDue(ctx context.Context, before time.Time, limit int) ([]storage.Request, error) {
	const op = "list due"
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dynamodb: %s: %w", op, err)
	}
	now := s.now()
	// Stored times are milliseconds: t in ms is before before exactly when
	// it is below before rounded up to the millisecond.
	bound := before.UnixMilli()
	if before.Nanosecond()%int(time.Millisecond) != 0 {
		bound++
	}
	var parts []string
	for _, st := range []string{queuedStatus, running, canceling} {
		for n := range StatusShards {
			parts = append(parts, shardOf(st, n))
		}
	}
	found := make([][]dueEntry, len(parts))
	errs := make([]error, len(parts))
	sem := make(chan struct{}, dueWorkers)
	var wg sync.WaitGroup
	for i, part := range parts {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			found[i], errs[i] = s.queryDue(ctx, part, bound, limit, now)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("dynamodb: %s: %w", op, err)
	}
	var due []dueEntry
	for _, f := range found {
		due = append(due, f...)
	}
	slices.SortFunc(due, func(a, b dueEntry) int {
		if c := cmp.Compare(a.at, b.at); c != 0 {
			return c
		}
		return strings.Compare(a.pk, b.pk)
	})
	// A request that just changed status may briefly have an entry in its
	// old partition and one in its new (the index is updated
	// asynchronously): keep the first.
	seen := make(map[string]bool, len(due))
	due = slices.DeleteFunc(due, func(d dueEntry) bool {
		dup := seen[d.pk]
		seen[d.pk] = true
		return dup
	})
	if limit > 0 && len(due) > limit {
		due = due[:limit]
	}
	keys := make([]item, len(due))
	for i, d := range due {
		keys[i] = d.key
	}
	items, err := s.batchGet(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("dynamodb: %s: %w", op, err)
	}
	var out []storage.Request
	for _, d := range due {
		it := items[d.pk]
		if it == nil || expired(it, now) {
			continue
		}
		r, err := decodeRequest(it)
		if err != nil {
			return nil, fmt.Errorf("dynamodb: %s: %w", op, err)
		}
		if storage.Due(r, before) {
			out = append(out, r)
		}
	}
	return out, nil
}

// queryDue queries one partition of [IndexStatus] for the entries whose
// time is below bound (epoch ms), up to limit (≤ 0: all) unexpired ones,
// in time order. Index queries are eventually consistent.
func (s *Store) queryDue(ctx context.Context, part string, bound int64, limit int, now time.Time) ([]dueEntry, error) {
	e := newExpr()
	in := &ddb.QueryInput{
		TableName:                 s.table,
		IndexName:                 aws.String(IndexStatus),
		KeyConditionExpression:    aws.String(e.n(AttrStatusShard) + " = " + e.s(part) + " AND " + e.n(AttrStatusTime) + " < " + e.v(num(bound))),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}
	if limit > 0 {
		in.Limit = aws.Int32(int32(min(limit, math.MaxInt32))) //nolint:gosec // bounded by MaxInt32
	}
	var out []dueEntry
	for {
		page, err := s.api.Query(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("query %s %s: %w", IndexStatus, part, err)
		}
		for _, it := range page.Items {
			if expired(it, now) {
				continue
			}
			r := reader{it: it}
			d := dueEntry{at: r.int(AttrStatusTime), pk: r.str(AttrPK)}
			if r.err != nil {
				return nil, fmt.Errorf("index entry in %s: %w", part, r.err)
			}
			d.key = primaryKey(d.pk, r.str(AttrSK))
			out = append(out, d)
			if limit > 0 && len(out) == limit {
				return out, nil
			}
		}
		if len(page.LastEvaluatedKey) == 0 {
			return out, nil
		}
		in.ExclusiveStartKey = page.LastEvaluatedKey
	}
}

// batchGet reads the items of keys with strongly consistent BatchGetItem
// calls, retrying unprocessed keys, and returns them by pk (request items
// are the only items with a given pk and sk REQ). opts may set a
// projection.
func (s *Store) batchGet(ctx context.Context, keys []item, opts ...func(*types.KeysAndAttributes)) (map[string]item, error) {
	out := make(map[string]item, len(keys))
	for start := 0; start < len(keys); start += batchGetSize {
		batch := keys[start:min(start+batchGetSize, len(keys))]
		ka := types.KeysAndAttributes{Keys: batch, ConsistentRead: aws.Bool(true)}
		for _, o := range opts {
			o(&ka)
		}
		pending := map[string]types.KeysAndAttributes{*s.table: ka}
		delay := conflictMinDelay
		for attempt := 1; ; attempt++ {
			res, err := s.api.BatchGetItem(ctx, &ddb.BatchGetItemInput{RequestItems: pending})
			if err != nil {
				return nil, err
			}
			for _, it := range res.Responses[*s.table] {
				out[(&reader{it: it}).str(AttrPK)] = it
			}
			pending = res.UnprocessedKeys
			if len(pending) == 0 || len(pending[*s.table].Keys) == 0 {
				break
			}
			if attempt == conflictRetries {
				return nil, fmt.Errorf("%d keys left unprocessed after %d attempts", len(pending[*s.table].Keys), attempt)
			}
			t := time.NewTimer(delay/2 + rand.N(delay)) //nolint:gosec // jitter needs no crypto
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
			}
			delay = min(2*delay, conflictMaxDelay)
		}
	}
	return out, nil
}
