package dynamodb

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/streamer-go/streamer/storage"
)

var _ storage.ConnectionCounter = (*Store)(nil)

// RecountInterval is how often, at most, PutConnectionCounted counts a
// principal's connections again when its counter refuses a connection: a
// refusal within this time of the last recount is answered from the
// counter alone, so a client that keeps connecting at its cap costs one
// refused transaction per attempt, not a recount.
const RecountInterval = time.Minute

// Items of the connection counter, in the principal's partition
// "PCONN#<tenant>|<subject>|" (the principal escaped as in
// [storage.Key.String], so no two principals share it).
const (
	prefixPrincipalConns = "PCONN#" // pk of a principal's counter partition
	sortConnCount        = "COUNT"  // sk of the counter item
	prefixMember         = "CONN#"  // sk prefix of a counted connection: CONN#<conn id>

	attrOpen      = "open"       // the counter: connections counted
	attrVersion   = "v"          // grows with every write of the counter
	attrCheckedAt = "checked_at" // the last recount, epoch ms
	attrCounted   = "counted"    // on a connection item: it is counted
)

func principalConnsPK(tenant, subject string) string {
	return prefixPrincipalConns + principalKey(tenant, subject)
}

// memberItem is the counter partition's item of a counted connection: its
// id and expiry (and TTL), so a recount lists the principal's connections
// with one Query.
func memberItem(c storage.Connection) item {
	it := primaryKey(principalConnsPK(c.Tenant, c.Subject), prefixMember+c.ID)
	it[attrConnID] = str(c.ID)
	builder(it).expiry(c.ExpiresAt)
	return it
}

// countedTx is the transaction of a counted put: the connection item, its
// member item (which must be new) and the counter, incremented unless it
// is at limit.
func (s *Store) countedTx(c storage.Connection, limit int) *ddb.TransactWriteItemsInput {
	conn := encodeConnection(c)
	conn[attrCounted] = &types.AttributeValueMemberBOOL{Value: true}
	member := newExpr()
	e := newExpr()
	e.add = append(e.add, e.n(attrOpen)+" "+e.v(num(1)), e.n(attrVersion)+" "+e.v(num(1)))
	open := e.n(attrOpen)
	return &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
		{Put: &types.Put{TableName: s.table, Item: conn}},
		{Put: &types.Put{
			TableName:                s.table,
			Item:                     memberItem(c),
			ConditionExpression:      aws.String("attribute_not_exists(" + member.n(AttrPK) + ")"),
			ExpressionAttributeNames: member.names,
		}},
		{Update: &types.Update{
			TableName:                           s.table,
			Key:                                 primaryKey(principalConnsPK(c.Tenant, c.Subject), sortConnCount),
			UpdateExpression:                    e.update(),
			ConditionExpression:                 aws.String("attribute_not_exists(" + open + ") OR " + open + " < " + e.v(num(int64(limit)))),
			ExpressionAttributeNames:            e.names,
			ExpressionAttributeValues:           e.values,
			ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
		}},
	}}
}

// PutConnectionCounted stores c and counts it against its principal, in
// one TransactWriteItems of three items: the connection item (marked
// counted), a member item in the principal's counter partition
// (PCONN#<principal>, CONN#<conn id>), which must be new, and the counter
// item (PCONN#<principal>, COUNT), whose open count grows by one on the
// condition that it is below limit. A connection already counted (its
// member item exists) is stored again with one PutItem, not counted twice.
//
// When the counter is at limit, the principal's connections are counted
// again (see [RecountInterval]): one strongly consistent Query of the
// counter partition, one strongly consistent BatchGetItem of the
// connection items of the unexpired members, and one transaction that sets
// the counter to the connections still there and unexpired, and deletes
// the member items of the others, on the condition that no write touched
// the counter since it refused (its version is the one the refusal
// returned). When the recount leaves room, the put is tried once more.
func (s *Store) PutConnectionCounted(ctx context.Context, c storage.Connection, limit int) error {
	const op = "put counted connection"
	if c.ID == "" {
		return fmt.Errorf("dynamodb: %s: empty connection id", op)
	}
	if limit < 1 {
		return fmt.Errorf("dynamodb: %s %s: limit %d is below 1", op, c.ID, limit)
	}
	for try := 1; ; try++ {
		old, err := s.putCounted(ctx, c, limit)
		if err != nil || old == nil {
			if err != nil {
				err = fmt.Errorf("dynamodb: %s %s: %w", op, c.ID, err)
			}
			return err
		}
		refused := fmt.Errorf("dynamodb: %s %s: %w (limit %d)", op, c.ID, storage.ErrTooManyConnections, limit)
		if try > 1 {
			return refused
		}
		r := reader{it: old}
		if checked := r.time(attrCheckedAt); !checked.IsZero() && s.now().Sub(checked) < RecountInterval {
			return refused
		}
		live, fixed, err := s.recount(ctx, c.Tenant, c.Subject, r.int(attrVersion))
		if err != nil {
			return fmt.Errorf("dynamodb: %s %s: recount: %w", op, c.ID, err)
		}
		if !fixed || live >= limit {
			return refused
		}
	}
}

// putCounted runs the counted put's transaction. It returns the counter
// item as it was when it refused the connection (nil when the connection
// is stored).
func (s *Store) putCounted(ctx context.Context, c storage.Connection, limit int) (item, error) {
	tx := s.countedTx(c, limit)
	err := s.write(ctx, "put counted connection", func() error {
		_, err := s.api.TransactWriteItems(ctx, tx)
		return err
	})
	if err == nil {
		return nil, nil
	}
	reasons, ok := canceledReasons(err)
	if !ok {
		return nil, err
	}
	if _, failed := reasonFailed(reasons, 1); failed {
		// Counted already: store the connection again, still counted.
		conn := tx.TransactItems[0].Put.Item
		err := s.write(ctx, "put counted connection", func() error {
			_, err := s.api.PutItem(ctx, &ddb.PutItemInput{TableName: s.table, Item: conn})
			return err
		})
		return nil, err
	}
	if old, failed := reasonFailed(reasons, 2); failed {
		if old == nil {
			old = item{}
		}
		return old, nil
	}
	return nil, err
}

// maxRecountDeletes bounds the member items one recount deletes (the
// transaction holds 100 items, the counter's update among them); the
// others are deleted by a later recount, or by TTL.
const maxRecountDeletes = 99

// recount counts the principal's connections from its member items and
// the connection items, and sets the counter to it on the condition that
// the counter's version is still version (then fixed is true). A member
// whose connection item is gone or expired is deleted in the same write.
func (s *Store) recount(ctx context.Context, tenant, subject string, version int64) (live int, fixed bool, err error) {
	pk := principalConnsPK(tenant, subject)
	now := s.now()
	var members, keys []item
	e := newExpr()
	err = s.query(ctx, &ddb.QueryInput{
		KeyConditionExpression:    aws.String(e.n(AttrPK) + " = " + e.s(pk) + " AND begins_with(" + e.n(AttrSK) + ", " + e.s(prefixMember) + ")"),
		ProjectionExpression:      aws.String(e.n(AttrSK) + ", " + e.n(attrConnID) + ", " + e.n(attrExpiresAt)),
		ExpressionAttributeNames:  e.names,
		ExpressionAttributeValues: e.values,
	}, func(it item) (bool, error) {
		members = append(members, it)
		if !expired(it, now) {
			keys = append(keys, primaryKey(connPK((&reader{it: it}).str(attrConnID)), sortConnection))
		}
		return true, nil
	})
	if err != nil {
		return 0, false, err
	}
	conns, err := s.batchGet(ctx, keys, func(ka *types.KeysAndAttributes) {
		p := newExpr()
		ka.ProjectionExpression = aws.String(p.n(AttrPK) + ", " + p.n(attrExpiresAt))
		ka.ExpressionAttributeNames = p.names
	})
	if err != nil {
		return 0, false, err
	}
	var dead []types.TransactWriteItem
	for _, m := range members {
		id := (&reader{it: m}).str(attrConnID)
		if conn := conns[connPK(id)]; conn != nil && !expired(m, now) && !expired(conn, now) {
			live++
			continue
		}
		if len(dead) < maxRecountDeletes {
			dead = append(dead, types.TransactWriteItem{Delete: &types.Delete{
				TableName: s.table, Key: primaryKey(pk, (&reader{it: m}).str(AttrSK)),
			}})
		}
	}
	u := newExpr()
	u.setTo(attrOpen, u.v(num(int64(live))))
	u.setTo(attrCheckedAt, u.ms(now))
	u.add = append(u.add, u.n(attrVersion)+" "+u.v(num(1)))
	cond := u.n(attrVersion) + " = " + u.v(num(version))
	if version == 0 {
		cond = "(attribute_not_exists(" + u.n(attrVersion) + ") OR " + cond + ")"
	}
	items := append([]types.TransactWriteItem{{Update: &types.Update{
		TableName: s.table, Key: primaryKey(pk, sortConnCount),
		UpdateExpression: u.update(), ConditionExpression: aws.String(cond),
		ExpressionAttributeNames: u.names, ExpressionAttributeValues: u.values,
	}}}, dead...)
	err = s.write(ctx, "recount connections", func() error {
		_, err := s.api.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: items})
		return err
	})
	if reasons, ok := canceledReasons(err); ok {
		if _, failed := reasonFailed(reasons, 0); failed {
			// Another write counted or freed a connection meanwhile: its
			// count stands, and this refusal with it.
			return live, false, nil
		}
	}
	if err != nil {
		return 0, false, err
	}
	return live, true, nil
}

// OpenConnections reads the principal's counter item (one strongly
// consistent GetItem): 0 when it has none.
func (s *Store) OpenConnections(ctx context.Context, tenant, subject string) (int, error) {
	it, err := s.getItem(ctx, primaryKey(principalConnsPK(tenant, subject), sortConnCount))
	if err != nil {
		return 0, fmt.Errorf("dynamodb: open connections: %w", err)
	}
	r := reader{it: it}
	n := r.int(attrOpen)
	if r.err != nil {
		return 0, fmt.Errorf("dynamodb: open connections: %w", r.err)
	}
	return int(n), nil
}

// deleteCounted deletes a counted connection's item, its member item and
// one from its principal's counter, in one transaction: the member item
// must exist (a recount that found the connection gone already deleted it
// and fixed the counter) and the counter be positive. When either
// condition fails, the connection item (and the member item, if any) is
// deleted without touching the counter.
func (s *Store) deleteCounted(ctx context.Context, id, tenant, subject string) error {
	pk := principalConnsPK(tenant, subject)
	m, u := newExpr(), newExpr()
	u.add = append(u.add, u.n(attrOpen)+" "+u.v(num(-1)), u.n(attrVersion)+" "+u.v(num(1)))
	err := s.write(ctx, "delete counted connection", func() error {
		_, err := s.api.TransactWriteItems(ctx, &ddb.TransactWriteItemsInput{TransactItems: []types.TransactWriteItem{
			{Delete: &types.Delete{TableName: s.table, Key: primaryKey(connPK(id), sortConnection)}},
			{Delete: &types.Delete{
				TableName: s.table, Key: primaryKey(pk, prefixMember+id),
				ConditionExpression:      aws.String("attribute_exists(" + m.n(AttrPK) + ")"),
				ExpressionAttributeNames: m.names,
			}},
			{Update: &types.Update{
				TableName: s.table, Key: primaryKey(pk, sortConnCount),
				UpdateExpression:          u.update(),
				ConditionExpression:       aws.String(u.n(attrOpen) + " > " + u.v(num(0))),
				ExpressionAttributeNames:  u.names,
				ExpressionAttributeValues: u.values,
			}},
		}})
		return err
	})
	if _, ok := canceledReasons(err); ok && !isTxConflict(err) {
		return s.deleteAll(ctx, []item{primaryKey(pk, prefixMember+id), primaryKey(connPK(id), sortConnection)})
	}
	return err
}

// countedOwner reads the connection item of DeleteConnection's Query: its
// principal, and whether it is counted.
func countedOwner(it item) (tenant, subject string, counted bool) {
	r := reader{it: it}
	b, ok := it[attrCounted].(*types.AttributeValueMemberBOOL)
	return r.str(attrTenant), r.str(attrSubject), ok && b.Value
}
