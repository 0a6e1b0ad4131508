package dynamodb

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.Waker = (*Store)(nil)

// Limits are the quotas a [Store] enforces in the same writes that change
// a request, so that they hold across every router and processor Lambda
// (the embedded runtime counts in memory instead). Zero or negative turns
// a limit off; docs/fairness.md gives the design and its costs.
type Limits struct {
	// MaxPending is how many queued plus running requests one principal
	// (tenant and subject) may have. CreateRequest over it stores nothing
	// and returns [storage.ErrQuota].
	MaxPending int
	// KeyConcurrency is how many requests of one concurrency key (the
	// tenant, or the subject when the principal has no tenant) may run at
	// once. ClaimRequest over it parks the request and returns
	// [storage.ErrWaiting]; the run that frees a slot wakes the oldest
	// parked request of its key, and [Store.WakeWaiting] (the reaper)
	// wakes any a lost wake left behind.
	KeyConcurrency int
	// Actions caps how many requests of an action run at once, across
	// every tenant, by action name (streamer.ActionOptions.Concurrency);
	// actions not in it have no limit of their own. The claim of a
	// request whose action is limited reads the request first (to learn
	// its action), then takes a slot of both counters in one transaction,
	// and is parked on whichever is full.
	Actions map[string]int
}

// Counter items: one per principal (pending) and one per concurrency key
// (running), in partitions of their own.
const (
	prefixLimit = "LIMIT#" // pk prefix of counter items
	sortLimit   = "LIMIT"  // sk of counter items

	attrPending = "pending" // counter: queued plus running requests
	attrRunning = "running" // counter: running requests

	// Request attributes: the counters a request holds a unit of.
	attrHoldsPending = "holds_pending"
	attrSlot         = "slot"
	attrActionSlot   = "action_slot"
	// attrWaitingSince is when a request was first parked; it stays, so
	// a request woken and parked again keeps its place.
	attrWaitingSince = "waiting_since"

	// prefixWaiting is the index partition of a key's parked requests:
	// waiting#<counter pk>, ordered by attrWaitingSince.
	prefixWaiting = "waiting#"
	// partitionWaitingKeys is the index partition of counter items whose
	// key has (or had) parked requests: the reaper's backstop reads it.
	partitionWaitingKeys = "waiting_keys"

	// counterLife is how long a counter item outlives its last write.
	// TTL deleting a forgotten counter resets what a lost write left in
	// it. Requests must not live longer (Retention).
	counterLife = 30 * 24 * time.Hour
)

// pendingPK is the counter item of k's principal.
func pendingPK(k storage.Key) string {
	return prefixLimit + "P#" + storage.Key{Tenant: k.Tenant, Subject: k.Subject}.String()
}

// slotPK is the counter item of k's concurrency key: its tenant, or its
// subject when it has no tenant (the embedded worker's lanes use the same
// key).
func slotPK(k storage.Key) string {
	ck := storage.Key{Tenant: k.Tenant}
	if k.Tenant == "" {
		ck = storage.Key{Subject: k.Subject}
	}
	return prefixLimit + "R#" + ck.String()
}

// actionPK is the counter item of an action's running requests.
func actionPK(action string) string {
	return prefixLimit + "A#" + storage.Key{ID: action}.String()
}

// holds names the counters a request holds a unit of ("" for none).
type holds struct{ slot, action, pending string }

// holdsOf reads what request item it holds; withPending leaves the pending
// counter out when false (a requeue keeps it).
func holdsOf(it item, withPending bool) holds {
	r := reader{it: it}
	h := holds{slot: r.str(attrSlot), action: r.str(attrActionSlot)}
	if withPending {
		h.pending = r.str(attrHoldsPending)
	}
	return h
}

// assumed is what a run of k holds when every limit of the store applied
// to it: the first guess of a release, corrected from the refused item
// when it is wrong (a request created or claimed with limits off, or
// canceled before it ran).
func (s *Store) assumed(ctx context.Context, k storage.Key, withPending bool) holds {
	if len(s.limits.Actions) > 0 {
		// Which action counter it holds depends on its action: read it
		// (one read, with per-action limits only) rather than guess.
		if it, err := s.getItem(ctx, requestKey(k)); err == nil && it != nil {
			return holdsOf(it, withPending)
		}
	}
	var h holds
	if s.limits.KeyConcurrency > 0 {
		h.slot = slotPK(k)
	}
	if withPending && s.limits.MaxPending > 0 {
		h.pending = pendingPK(k)
	}
	return h
}

// release adds to the request's update e and condition cond the release of
// h: the attributes are removed, and must hold what h says (so a wrong
// guess is refused, not miscounted). It returns the counter updates that
// go in the same transaction.
func (s *Store) release(e *expr, cond string, h holds, withPending bool, now time.Time) (string, []types.TransactWriteItem) {
	var txs []types.TransactWriteItem
	one := func(attr, counter, field string, on bool) {
		if !on {
			return
		}
		if counter == "" {
			cond += " AND attribute_not_exists(" + e.n(attr) + ")"
			return
		}
		cond += " AND " + e.n(attr) + " = " + e.s(counter)
		e.del(attr)
		txs = append(txs, types.TransactWriteItem{Update: s.counterUpdate(counter, field, -1, 0, now)})
	}
	one(attrSlot, h.slot, attrRunning, s.limits.KeyConcurrency > 0 || h.slot != "")
	one(attrActionSlot, h.action, attrRunning, len(s.limits.Actions) > 0 || h.action != "")
	one(attrHoldsPending, h.pending, attrPending, withPending && (s.limits.MaxPending > 0 || h.pending != ""))
	return cond, txs
}

// counterUpdate adds delta to a counter item's field, refused when limit
// > 0 and the field is at the limit already. Every write pushes the
// counter's expiry to counterLife from now.
func (s *Store) counterUpdate(pk, field string, delta int64, limit int, now time.Time) *types.Update {
	e := newExpr()
	var cond *string
	if limit > 0 {
		f := e.n(field)
		cond = aws.String("attribute_not_exists(" + f + ") OR " + f + " < " + e.v(num(int64(limit))))
	}
	e.add = append(e.add, e.n(field)+" "+e.v(num(delta)))
	exp := now.Add(counterLife)
	e.setTo(attrExpiresAt, e.ms(exp))
	e.setTo(AttrTTL, e.v(ttlSeconds(exp)))
	return &types.Update{
		TableName:                 s.table,
		Key:                       primaryKey(pk, sortLimit),
		UpdateExpression:          e.update(),
		ConditionExpression:       cond,
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}
}

// transact runs one TransactWriteItems (retried on transaction conflicts).
func (s *Store) transact(ctx context.Context, op string, items []types.TransactWriteItem) error {
	return s.write(ctx, op, func() error {
		_, err := s.api.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: items})
		return err
	})
}

// createCounted is CreateRequest with the pending quota: a transaction of
// the request's Put and the principal's counter.
func (s *Store) createCounted(ctx context.Context, r storage.Request, put *types.Put) error {
	pk := pendingPK(r.Key)
	put.Item[attrHoldsPending] = str(pk)
	err := s.transact(ctx, "create request", []types.TransactWriteItem{
		{Put: put},
		{Update: s.counterUpdate(pk, attrPending, 1, s.limits.MaxPending, s.now())},
	})
	if reasons, ok := canceledReasons(err); ok {
		if _, failed := reasonFailed(reasons, 0); failed {
			return fmt.Errorf("dynamodb: create request %s: %w", r.Key, storage.ErrExists)
		}
		if _, failed := reasonFailed(reasons, 1); failed {
			return fmt.Errorf("dynamodb: create request %s: the principal has %d queued or running requests: %w",
				r.Key, s.limits.MaxPending, storage.ErrQuota)
		}
	}
	if err != nil {
		return fmt.Errorf("dynamodb: create request %s: %w", r.Key, err)
	}
	return nil
}

// claimCounted is ClaimRequest with the concurrency limit. A queued request
// is claimed in a transaction with its key's counter (the request then
// holds a slot: attrSlot), read back with one GetItem, since transactions
// return no values. A takeover keeps the slot the dead run held. A key at
// its limit parks the request.
func (s *Store) claimCounted(ctx context.Context, k storage.Key, c storage.Claim) (item, error) {
	if c.Stalled {
		// The reaper's claim: mostly a takeover of a dead run, which
		// keeps its slots; one UpdateItem, as without limits. A queued
		// request it finds takes its slots below.
		it, err := s.claim(ctx, k, c, false, true, true)
		if !errors.Is(err, errRejected) || it == nil || (&reader{it: it}).str(attrStatus) != queuedStatus {
			return it, err
		}
	}
	// The counters to take: the key's, and the action's when it is
	// limited (which takes one read to learn the action).
	type take struct {
		attr, pk string
		limit    int
	}
	var takes []take
	if s.limits.KeyConcurrency > 0 {
		takes = append(takes, take{attrSlot, slotPK(k), s.limits.KeyConcurrency})
	}
	if len(s.limits.Actions) > 0 {
		it, err := s.getItem(ctx, requestKey(k))
		if err != nil {
			return nil, err
		}
		if it == nil {
			return nil, errRejected
		}
		action := (&reader{it: it}).str(attrAction)
		if n := s.limits.Actions[action]; n > 0 {
			takes = append(takes, take{attrActionSlot, actionPK(action), n})
		}
	}
	if len(takes) == 0 {
		return s.claimUncounted(ctx, k, c)
	}
	e, cond := s.claimExpr(k, c, true, false, c.Stalled)
	items := make([]types.TransactWriteItem, 1, 1+len(takes))
	for _, t := range takes {
		e.setTo(t.attr, e.s(t.pk))
		cond += " AND attribute_not_exists(" + e.n(t.attr) + ")"
		items = append(items, types.TransactWriteItem{Update: s.counterUpdate(t.pk, attrRunning, 1, t.limit, c.Now)})
	}
	items[0] = types.TransactWriteItem{Update: s.requestUpdate(k, e, cond)}
	err := s.transact(ctx, "claim request", items)
	if err == nil {
		it, err := s.getItem(ctx, requestKey(k))
		if err != nil {
			return nil, err
		}
		if it == nil {
			return nil, errRejected
		}
		// The claim found the request queued and made it running; a
		// cancel that landed between the transaction and this read made
		// it canceling since. The claim returns the request as claimed
		// (as a single UpdateItem's ALL_NEW would), so the run opens as
		// any run does and then notices the cancel.
		if (&reader{it: it}).str(attrStatus) == canceling {
			it[attrStatus] = str(running)
		}
		return it, nil
	}
	reasons, ok := canceledReasons(err)
	if !ok {
		return nil, err
	}
	if old, failed := reasonFailed(reasons, 0); failed {
		if s.takeoverCase(old, c.Now) {
			return s.claim(ctx, k, c, false, true, true)
		}
		return old, errRejected
	}
	for i, t := range takes {
		if _, failed := reasonFailed(reasons, i+1); failed {
			return nil, s.park(ctx, k, t.pk, t.limit, c.Now)
		}
	}
	return nil, err
}

// park leaves a queued request queued, out of the due partitions and in
// its key's waiting partition, where the run that frees a slot finds it.
// The key is marked for the reaper first, so a request is never parked
// unmarked. A slot freed between the refused claim and the park would
// leave the request asleep: park reads the counter again and wakes the
// key's oldest parked requests when a slot is free.
func (s *Store) park(ctx context.Context, k storage.Key, slot string, limit int, now time.Time) error {
	const op = "park request"
	me := newExpr()
	me.setTo(AttrStatusShard, me.s(partitionWaitingKeys))
	me.setTo(AttrStatusTime, me.ms(now))
	err := s.write(ctx, op, func() error {
		_, err := s.api.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName: s.table, Key: primaryKey(slot, sortLimit),
			UpdateExpression: me.update(), ExpressionAttributeNames: me.names, ExpressionAttributeValues: me.values,
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("dynamodb: %s %s: mark key: %w", op, k, err)
	}
	e := newExpr()
	since := "if_not_exists(" + e.n(attrWaitingSince) + ", " + e.ms(now) + ")"
	e.setTo(attrWaitingSince, since)
	e.setTo(AttrStatusShard, e.s(prefixWaiting+slot))
	e.setTo(AttrStatusTime, since)
	cond := e.alive(s.now()) + " AND " + e.n(attrStatus) + " = " + e.s(queuedStatus) +
		" AND attribute_not_exists(" + e.n(attrSlot) + ") AND attribute_not_exists(" + e.n(attrActionSlot) + ")"
	it, err := s.updateRequest(ctx, op, k, e, cond)
	if errors.Is(err, errRejected) {
		return s.rejection(op, k, it) // claimed or canceled meanwhile
	}
	if err != nil {
		return fmt.Errorf("dynamodb: %s %s: %w", op, k, err)
	}
	if free, err := s.freeSlots(ctx, slot, limit); err == nil && free > 0 {
		if _, err := s.wake(ctx, slot, free, now); err != nil {
			s.log.Warn().Err(err).Str("key", slot).Msg("waking parked requests failed; the reaper will")
		}
	}
	return fmt.Errorf("dynamodb: claim request %s: %w", k, storage.ErrWaiting)
}

// freeSlots reads a key's counter: how many more requests may run.
func (s *Store) freeSlots(ctx context.Context, slot string, limit int) (int, error) {
	it, err := s.getItem(ctx, primaryKey(slot, sortLimit))
	if err != nil {
		return 0, err
	}
	r := reader{it: it}
	running := r.int(attrRunning)
	if r.err != nil {
		return 0, r.err
	}
	return limit - int(running), nil
}

// limitOf is the limit of a counter item: its action's, or the key's.
func (s *Store) limitOf(pk string) int {
	if rest, ok := strings.CutPrefix(pk, prefixLimit+"A#"); ok {
		if k, err := storage.ParseKey(rest); err == nil {
			return s.limits.Actions[k.ID]
		}
		return 0
	}
	return s.limits.KeyConcurrency
}

// wake moves up to n of a key's parked requests, oldest first, back to the
// queue: the write's stream record dispatches each (see [NewlyQueued]).
func (s *Store) wake(ctx context.Context, slot string, n int, now time.Time) (int, error) {
	entries, err := s.queryDue(ctx, prefixWaiting+slot, math.MaxInt64, n, now)
	if err != nil {
		return 0, err
	}
	woken := 0
	for _, d := range entries {
		k, err := storage.ParseKey(strings.TrimPrefix(d.pk, prefixRequest))
		if err != nil {
			return woken, fmt.Errorf("dynamodb: parked entry %q: %w", d.pk, err)
		}
		e := newExpr()
		e.setTo(AttrStatusShard, e.s(statusShard(queuedStatus, k)))
		e.setTo(AttrStatusTime, e.ms(now))
		cond := e.alive(s.now()) + " AND " + e.n(attrStatus) + " = " + e.s(queuedStatus) +
			" AND " + e.n(AttrStatusShard) + " = " + e.s(prefixWaiting+slot)
		_, err = s.updateRequest(ctx, "wake request", k, e, cond)
		switch {
		case errors.Is(err, errRejected):
			// Canceled or woken by another run meanwhile.
		case err != nil:
			return woken, fmt.Errorf("dynamodb: wake request %s: %w", k, err)
		default:
			woken++
		}
	}
	return woken, nil
}

// released wakes the next parked request of the slot a run gave back.
// A failure is logged: the reaper's [Store.WakeWaiting] catches up.
func (s *Store) released(ctx context.Context, h holds) {
	for _, slot := range []string{h.slot, h.action} {
		if slot == "" || s.limitOf(slot) <= 0 {
			continue
		}
		if _, err := s.wake(ctx, slot, 1, s.now()); err != nil {
			s.log.Warn().Err(err).Str("key", slot).Msg("waking the next parked request failed; the reaper will")
		}
	}
}

// WakeWaiting implements [storage.Waker]: for each key marked as having
// parked requests, it reads the key's counter and wakes as many parked
// requests as it has free slots; a key with none left is unmarked (unless
// it was marked again meanwhile). Cost: one index query, and per marked
// key one GetItem plus one index query; writes only for what it wakes or
// unmarks.
func (s *Store) WakeWaiting(ctx context.Context, now time.Time) (int, error) {
	if s.limits.KeyConcurrency <= 0 && len(s.limits.Actions) == 0 {
		return 0, nil
	}
	keys, err := s.queryDue(ctx, partitionWaitingKeys, math.MaxInt64, 0, now)
	if err != nil {
		return 0, fmt.Errorf("dynamodb: wake waiting: %w", err)
	}
	total := 0
	var errs []error
	for _, d := range keys {
		limit := s.limitOf(d.pk)
		if limit <= 0 {
			continue // a limit turned off since: nothing parks there now
		}
		free, err := s.freeSlots(ctx, d.pk, limit)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if free <= 0 {
			continue
		}
		waiting, err := s.queryDue(ctx, prefixWaiting+d.pk, math.MaxInt64, 1, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if len(waiting) == 0 {
			s.unmark(ctx, d)
			continue
		}
		n, err := s.wake(ctx, d.pk, free, now)
		total += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return total, errors.Join(errs...)
}

// unmark takes a key with no parked request out of partitionWaitingKeys,
// unless a park marked it again after d was read.
func (s *Store) unmark(ctx context.Context, d dueEntry) {
	e := newExpr()
	e.del(AttrStatusShard)
	e.del(AttrStatusTime)
	cond := e.n(AttrStatusTime) + " = " + e.v(num(d.at))
	err := s.write(ctx, "unmark key", func() error {
		_, err := s.api.UpdateItem(ctx, &ddb.UpdateItemInput{
			TableName: s.table, Key: d.key, UpdateExpression: e.update(),
			ConditionExpression: aws.String(cond), ExpressionAttributeNames: e.names, ExpressionAttributeValues: e.values,
		})
		return err
	})
	if _, failed := conditionFailed(err); err != nil && !failed {
		s.log.Warn().Err(err).Str("key", d.pk).Msg("unmarking a key failed")
	}
}

// parked reports whether a request image is parked (in a waiting
// partition of the status index).
func parked(image item) bool {
	v, _ := image[AttrStatusShard].(*types.AttributeValueMemberS)
	return v != nil && strings.HasPrefix(v.Value, prefixWaiting)
}
