// Package dynamodb is the DynamoDB [ratelimit.Limiter], for the AWS runtime:
// each bucket is one item of the app's table (the one storage/dynamodb
// uses; no new table), so every Lambda instance shares it.
//
// # Design
//
// A bucket is the item pk = "RL#" + key, sk = "RL", holding its tokens, the
// time they were computed (updated, Unix nanoseconds), a version v, and a
// TTL. Take computes the refill client-side from the item's last state
// (the arithmetic of [ratelimit.Rule.Take]) and, when the take is allowed,
// writes the new state with one UpdateItem conditional on the version it
// read (attribute_not_exists(pk) for a new bucket). Two instances that read
// the same state cannot both write: the loser's condition fails, DynamoDB
// returns the winner's item with the failure
// (ReturnValuesOnConditionCheckFailure ALL_OLD), and the loser decides
// again from it, with no extra read (after a short random pause from its
// second loss on). A refused take writes nothing.
//
// Each Limiter keeps the last state it saw of each bucket (a bounded
// cache). A stale cached state can only hold more tokens than the item
// (every other writer took tokens; the refill is the same function of
// time), so a refusal decided from the cache is right and costs nothing,
// and an admission from the cache is tried as a conditional write that
// fails, with the item returned, if the cache was stale. Without a cached
// state, Take reads the item first (a strongly consistent GetItem).
//
// Per admitted request: one UpdateItem (1 write unit; the item is under
// 1 KB), plus one GetItem (1 read unit) the first time this instance sees
// the key, plus one failed UpdateItem per lost race (a failed conditional
// write is billed as a write). Per refused request: nothing when this
// instance has the key cached, else one GetItem. See BENCHMARKS.md.
//
// Items expire (TTL) one fill time after their last write, plus a minute:
// by then the bucket is full, the same as no item. The stream's filter
// (storage/dynamodb.StreamFilterPattern) passes only request items, so the
// buckets' writes invoke no processor.
package dynamodb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/streamer-go/streamer/ratelimit"
	sdynamo "github.com/streamer-go/streamer/storage/dynamodb"
)

// Item layout.
const (
	// KeyPrefix starts the partition key of every bucket item.
	KeyPrefix = "RL#"
	// SortKey is the sort key of every bucket item.
	SortKey = "RL"

	attrTokens  = "tokens"
	attrUpdated = "updated"
	attrVersion = "v"
)

// MaxKeyLen is the longest key stored as is, in bytes (a partition key may
// hold 2048): a longer key is stored as "sha256:" and its SHA-256 in hex.
const MaxKeyLen = 1024

// Defaults of [Config].
const (
	DefaultMaxCached   = 10_000
	DefaultMaxAttempts = 25
)

// API is the part of *dynamodb.Client that a [Limiter] uses.
type API interface {
	GetItem(ctx context.Context, in *ddb.GetItemInput, optFns ...func(*ddb.Options)) (*ddb.GetItemOutput, error)
	UpdateItem(ctx context.Context, in *ddb.UpdateItemInput, optFns ...func(*ddb.Options)) (*ddb.UpdateItemOutput, error)
}

// Config configures [New].
type Config struct {
	// Client talks to DynamoDB, usually a *dynamodb.Client. Required.
	Client API
	// Table is the app's table (storage/dynamodb.Schema). Required.
	Table string
	// Now is the clock. Nil means time.Now. Instances' clocks may differ a
	// little: a clock behind the last writer's refills nothing until it
	// catches up, so skew never admits more.
	Now func() time.Time
	// MaxCached bounds the buckets whose last state is cached. Zero means
	// [DefaultMaxCached].
	MaxCached int
	// MaxAttempts bounds the conditional writes of one Take. A take that
	// loses the race for its bucket that many times in a row is refused
	// (see [Limiter.Contended]): others are taking the tokens as fast as
	// they refill. Zero means [DefaultMaxAttempts].
	MaxAttempts int
}

// Limiter is a [ratelimit.Limiter] on a DynamoDB table. It is safe for
// concurrent use.
type Limiter struct {
	api         API
	table       *string
	now         func() time.Time
	maxCached   int
	maxAttempts int

	mu        sync.Mutex
	cache     map[string]cached
	contended atomic.Int64
}

// cached is the last state seen of a bucket item, v its version.
type cached struct {
	st ratelimit.State
	v  int64
}

// New validates cfg and returns a Limiter. It makes no call to DynamoDB.
func New(cfg Config) (*Limiter, error) {
	if cfg.Client == nil {
		return nil, errors.New("ratelimit/dynamodb: Config.Client is required")
	}
	if cfg.Table == "" {
		return nil, errors.New("ratelimit/dynamodb: Config.Table is required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxCached <= 0 {
		cfg.MaxCached = DefaultMaxCached
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	return &Limiter{
		api: cfg.Client, table: aws.String(cfg.Table), now: cfg.Now,
		maxCached: cfg.MaxCached, maxAttempts: cfg.MaxAttempts, cache: map[string]cached{},
	}, nil
}

// Take implements [ratelimit.Limiter].
func (l *Limiter) Take(ctx context.Context, key string, rule ratelimit.Rule, n int) (ratelimit.Decision, error) {
	r, err := ratelimit.Check(key, rule, n)
	if err != nil {
		return ratelimit.Decision{}, err
	}
	if len(key) > MaxKeyLen {
		sum := sha256.Sum256([]byte(key))
		key = "sha256:" + hex.EncodeToString(sum[:])
	}
	cur, ok := l.cached(key)
	if !ok {
		if cur, err = l.read(ctx, key); err != nil {
			return ratelimit.Decision{}, err
		}
	}
	for attempt := range l.maxAttempts {
		if attempt > 1 {
			// Lost twice in a row: others are taking the same bucket. A
			// random pause spreads the racers out.
			if err := pause(ctx, attempt); err != nil {
				return ratelimit.Decision{}, err
			}
		}
		now := l.now()
		st, d := r.Take(cur.st, now, n)
		if !d.Allowed {
			l.remember(key, cur)
			return d, nil
		}
		next := cached{st: st, v: cur.v + 1}
		old, won, err := l.write(ctx, key, cur.v, next, r)
		if err != nil {
			return ratelimit.Decision{}, err
		}
		if won {
			l.remember(key, next)
			return d, nil
		}
		cur = old
	}
	// Lost every race: other instances take the tokens as fast as they
	// refill. Refusing is safe (it never admits too many), and the bucket
	// is all but empty.
	l.forget(key)
	l.contended.Add(1)
	return ratelimit.Decision{RetryAfter: time.Duration(math.Ceil(float64(n) * float64(r.Per) / r.Rate))}, nil
}

// Contended returns how many takes were refused because they lost the
// race for their bucket [Config.MaxAttempts] times in a row.
func (l *Limiter) Contended() int64 { return l.contended.Load() }

// pause sleeps a random time below min(2^attempt, 50) ms, or until ctx
// is done.
func pause(ctx context.Context, attempt int) error {
	limit := min(time.Millisecond<<min(attempt, 6), 50*time.Millisecond)
	t := time.NewTimer(rand.N(limit))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("ratelimit/dynamodb: %w", context.Cause(ctx))
	}
}

func (l *Limiter) itemKey(key string) map[string]types.AttributeValue {
	return map[string]types.AttributeValue{
		sdynamo.AttrPK: &types.AttributeValueMemberS{Value: KeyPrefix + key},
		sdynamo.AttrSK: &types.AttributeValueMemberS{Value: SortKey},
	}
}

// read returns the bucket's stored state; version 0 when there is none.
func (l *Limiter) read(ctx context.Context, key string) (cached, error) {
	out, err := l.api.GetItem(ctx, &ddb.GetItemInput{
		TableName: l.table, Key: l.itemKey(key), ConsistentRead: aws.Bool(true),
		ProjectionExpression: aws.String("#t, #u, #v"),
		ExpressionAttributeNames: map[string]string{
			"#t": attrTokens, "#u": attrUpdated, "#v": attrVersion,
		},
	})
	if err != nil {
		return cached{}, fmt.Errorf("ratelimit/dynamodb: read bucket: %w", err)
	}
	return decode(out.Item)
}

// write stores next if the item's version is still v (absent when v is
// 0). When another writer got there first it returns the item's state now
// and false.
func (l *Limiter) write(ctx context.Context, key string, v int64, next cached, r ratelimit.Rule) (cached, bool, error) {
	cond := "#v = :v"
	vals := map[string]types.AttributeValue{
		":t":   num(strconv.FormatFloat(next.st.Tokens, 'g', -1, 64)),
		":u":   num(strconv.FormatInt(next.st.Updated.UnixNano(), 10)),
		":nv":  num(strconv.FormatInt(next.v, 10)),
		":ttl": num(strconv.FormatInt(next.st.Updated.Add(r.FillTime()+time.Minute).Unix()+1, 10)),
	}
	if v == 0 {
		cond = "attribute_not_exists(#v)"
	} else {
		vals[":v"] = num(strconv.FormatInt(v, 10))
	}
	_, err := l.api.UpdateItem(ctx, &ddb.UpdateItemInput{
		TableName:           l.table,
		Key:                 l.itemKey(key),
		UpdateExpression:    aws.String("SET #t = :t, #u = :u, #v = :nv, #ttl = :ttl"),
		ConditionExpression: aws.String(cond),
		ExpressionAttributeNames: map[string]string{
			"#t": attrTokens, "#u": attrUpdated, "#v": attrVersion, "#ttl": sdynamo.AttrTTL,
		},
		ExpressionAttributeValues:           vals,
		ReturnValuesOnConditionCheckFailure: types.ReturnValuesOnConditionCheckFailureAllOld,
	})
	if err == nil {
		return cached{}, true, nil
	}
	var ccf *types.ConditionalCheckFailedException
	if !errors.As(err, &ccf) {
		return cached{}, false, fmt.Errorf("ratelimit/dynamodb: write bucket: %w", err)
	}
	if ccf.Item == nil {
		// No item came back (an endpoint that does not return it): read.
		cur, err := l.read(ctx, key)
		return cur, false, err
	}
	cur, err := decode(ccf.Item)
	return cur, false, err
}

func num(s string) types.AttributeValue { return &types.AttributeValueMemberN{Value: s} }

// decode reads a bucket item; an absent one (nil) is a new bucket.
func decode(it map[string]types.AttributeValue) (cached, error) {
	if it == nil {
		return cached{}, nil
	}
	get := func(name string) (string, error) {
		n, ok := it[name].(*types.AttributeValueMemberN)
		if !ok {
			return "", fmt.Errorf("ratelimit/dynamodb: bucket item has no number %s", name)
		}
		return n.Value, nil
	}
	var c cached
	s, err := get(attrVersion)
	if err == nil {
		c.v, err = strconv.ParseInt(s, 10, 64)
	}
	if err != nil {
		return cached{}, err
	}
	if s, err = get(attrTokens); err == nil {
		c.st.Tokens, err = strconv.ParseFloat(s, 64)
	}
	if err != nil {
		return cached{}, err
	}
	var ns int64
	if s, err = get(attrUpdated); err == nil {
		ns, err = strconv.ParseInt(s, 10, 64)
	}
	if err != nil {
		return cached{}, err
	}
	c.st.Updated = time.Unix(0, ns)
	return c, nil
}

func (l *Limiter) cached(key string) (cached, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.cache[key]
	return c, ok
}

// remember caches c unless a newer version is cached already. At the
// bound it drops an arbitrary entry: a dropped bucket costs one read next
// time, never a wrong decision.
func (l *Limiter) remember(key string, c cached) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.cache[key]; ok {
		if old.v > c.v {
			return
		}
	} else if len(l.cache) >= l.maxCached {
		for k := range l.cache {
			delete(l.cache, k)
			break
		}
	}
	l.cache[key] = c
}

func (l *Limiter) forget(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.cache, key)
}

var _ ratelimit.Limiter = (*Limiter)(nil)
