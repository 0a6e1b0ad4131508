package dynamodb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/storage/storagetest"
)

// limitedStore is a store on the shared table with limits, on a client
// that api may wrap.
func limitedStore(t testing.TB, l dynamodb.Limits, wrap func(dynamodb.API) dynamodb.API) *dynamodb.Store {
	t.Helper()
	requireTable(t)
	var api dynamodb.API = newClient(shared.cfg)
	if wrap != nil {
		api = wrap(api)
	}
	s, err := dynamodb.New(dynamodb.Config{Client: api, Table: shared.table, Limits: l})
	require.NoError(t, err)
	return s
}

// tenantKeys returns n keys of one new tenant (one concurrency key), each
// with a subject of its own unless sameSubject.
func tenantKeys(t testing.TB, n int, sameSubject bool) []storage.Key {
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	tenant := "lim-" + hex.EncodeToString(b[:])
	keys := make([]storage.Key, n)
	for i := range keys {
		subject := "s"
		if !sameSubject {
			subject = "s" + string(rune('a'+i))
		}
		keys[i] = storage.Key{Tenant: tenant, Subject: subject, ID: t.Name() + "-" + string(rune('a'+i))}
	}
	return keys
}

func newRequest(k storage.Key, now time.Time) storage.Request {
	return storage.Request{
		Key: k, Action: "work", Payload: json.RawMessage(`{}`), Status: storage.StatusQueued,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour),
	}
}

func claimAt(now time.Time) storage.Claim {
	return storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)}
}

func finishOK(attempt int, seq int64, now time.Time) storage.Finish {
	return storage.Finish{
		Attempt: attempt, Status: storage.StatusSucceeded, Result: json.RawMessage(`1`), Now: now,
		Event: storage.Event{Seq: seq, Type: "complete", Data: []byte(`1`), CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	}
}

// counter reads a counter item's field.
func counter(t testing.TB, pk, field string) string {
	t.Helper()
	out, err := newClient(shared.cfg).GetItem(context.Background(), &ddb.GetItemInput{
		TableName: aws.String(shared.table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{
			dynamodb.AttrPK: &types.AttributeValueMemberS{Value: pk},
			dynamodb.AttrSK: &types.AttributeValueMemberS{Value: "LIMIT"},
		},
	})
	require.NoError(t, err)
	if n, ok := out.Item[field].(*types.AttributeValueMemberN); ok {
		return n.Value
	}
	return ""
}

func pendingOf(k storage.Key) string {
	return "LIMIT#P#" + storage.Key{Tenant: k.Tenant, Subject: k.Subject}.String()
}

func runningOf(k storage.Key) string { return "LIMIT#R#" + storage.Key{Tenant: k.Tenant}.String() }

// requestItem reads a request's raw item.
func requestItem(t testing.TB, k storage.Key) map[string]types.AttributeValue {
	t.Helper()
	out, err := newClient(shared.cfg).GetItem(context.Background(), &ddb.GetItemInput{
		TableName: aws.String(shared.table), ConsistentRead: aws.Bool(true),
		Key: map[string]types.AttributeValue{
			dynamodb.AttrPK: &types.AttributeValueMemberS{Value: "REQ#" + k.String()},
			dynamodb.AttrSK: &types.AttributeValueMemberS{Value: "REQ"},
		},
	})
	require.NoError(t, err)
	return out.Item
}

func shardOf(it map[string]types.AttributeValue) string {
	v, _ := it[dynamodb.AttrStatusShard].(*types.AttributeValueMemberS)
	if v == nil {
		return ""
	}
	return v.Value
}

// TestConformanceWithLimits runs the storage conformance suite on a store
// whose limits are on but never reached: every request write goes through
// the counted (transactional) paths and keeps every guarantee.
func TestConformanceWithLimits(t *testing.T) {
	t.Parallel()
	s := limitedStore(t, dynamodb.Limits{MaxPending: 1 << 30, KeyConcurrency: 1 << 30,
		Actions: map[string]int{"generate_report": 1 << 30}}, nil) // the suite's action
	storagetest.Run(t, func(t *testing.T) storage.Store { return s })
}

func actionRequest(k storage.Key, action string, now time.Time) storage.Request {
	r := newRequest(k, now)
	r.Action = action
	return r
}

// TestActionConcurrency: an action limited to one run at once holds back
// its second request even from another tenant, parks it on the action's
// counter, and wakes it when the first ends; other actions run beside.
func TestActionConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	var b [6]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	action := "scarce-" + hex.EncodeToString(b[:])
	s := limitedStore(t, dynamodb.Limits{KeyConcurrency: 10, MaxPending: 10, Actions: map[string]int{action: 1}}, nil)
	first, second, other := tenantKeys(t, 1, true)[0], tenantKeys(t, 1, true)[0], tenantKeys(t, 1, true)[0]
	now := time.Now()
	require.NoError(t, s.CreateRequest(ctx, actionRequest(first, action, now)))
	require.NoError(t, s.CreateRequest(ctx, actionRequest(second, action, now)))
	require.NoError(t, s.CreateRequest(ctx, actionRequest(other, "plenty", now)))
	actionCounter := "LIMIT#A#" + storage.Key{ID: action}.String()

	a, err := s.ClaimRequest(ctx, first, claimAt(now))
	require.NoError(t, err)
	require.Equal(t, "1", counter(t, actionCounter, "running"))
	_, err = s.ClaimRequest(ctx, second, claimAt(now))
	require.ErrorIs(t, err, storage.ErrWaiting, "another tenant, the same limited action")
	require.Equal(t, "waiting#"+actionCounter, shardOf(requestItem(t, second)))
	require.Empty(t, counter(t, runningOf(second), "running"), "the refused claim took no slot of its tenant")
	_, err = s.ClaimRequest(ctx, other, claimAt(now))
	require.NoError(t, err, "an action without a limit runs")

	require.NoError(t, s.FinishRequest(ctx, first, finishOK(a.Attempt, 1, now)))
	require.Equal(t, "0", counter(t, actionCounter, "running"))
	require.Equal(t, "0", counter(t, runningOf(first), "running"))
	require.True(t, strings.HasPrefix(shardOf(requestItem(t, second)), "queued#"), "woken by the finish")
	c, err := s.ClaimRequest(ctx, second, claimAt(now))
	require.NoError(t, err)
	require.NoError(t, s.RequeueRequest(ctx, second, c.Attempt, now))
	require.Equal(t, "0", counter(t, actionCounter, "running"), "a requeue gives the action's slot back")
	require.Equal(t, "0", counter(t, runningOf(second), "running"))
}

func TestPendingQuota(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := limitedStore(t, dynamodb.Limits{MaxPending: 2}, nil)
	keys := tenantKeys(t, 4, true) // one principal
	now := time.Now()
	require.NoError(t, s.CreateRequest(ctx, newRequest(keys[0], now)))
	require.NoError(t, s.CreateRequest(ctx, newRequest(keys[1], now)))
	err := s.CreateRequest(ctx, newRequest(keys[2], now))
	require.ErrorIs(t, err, storage.ErrQuota)
	_, err = s.GetRequest(ctx, keys[2])
	require.ErrorIs(t, err, storage.ErrNotFound, "nothing stored over the quota")
	require.ErrorIs(t, s.CreateRequest(ctx, newRequest(keys[0], now)), storage.ErrExists, "a re-send is ErrExists, not a quota refusal")
	require.Equal(t, "2", counter(t, pendingOf(keys[0]), "pending"))

	other := tenantKeys(t, 1, true)[0]
	require.NoError(t, s.CreateRequest(ctx, newRequest(other, now)), "another principal has its own quota")

	// Finishing one (here canceled while queued, never claimed) frees a
	// place.
	c, err := s.CancelRequest(ctx, keys[0], now)
	require.NoError(t, err)
	require.NoError(t, s.FinishRequest(ctx, keys[0], storage.Finish{
		Attempt: c.Attempt, Status: storage.StatusCanceled, Now: now,
		Event: storage.Event{Seq: 1, Type: "error", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	}))
	require.Equal(t, "1", counter(t, pendingOf(keys[0]), "pending"))
	require.NoError(t, s.CreateRequest(ctx, newRequest(keys[2], now)))
	require.ErrorIs(t, s.CreateRequest(ctx, newRequest(keys[3], now)), storage.ErrQuota)
}

// TestConcurrencyLimitParksAndWakes: with one slot per key, the second
// request of a tenant is parked (not due, out of the queued partitions)
// until the first ends, which wakes it; another tenant is not held back.
func TestConcurrencyLimitParksAndWakes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := limitedStore(t, dynamodb.Limits{KeyConcurrency: 1, MaxPending: 10}, nil)
	keys := tenantKeys(t, 3, false)
	now := time.Now()
	for _, k := range keys {
		require.NoError(t, s.CreateRequest(ctx, newRequest(k, now)))
	}
	a, err := s.ClaimRequest(ctx, keys[0], claimAt(now))
	require.NoError(t, err)
	require.Equal(t, storage.StatusRunning, a.Status)
	require.Equal(t, "1", counter(t, runningOf(keys[0]), "running"))

	before := requestItem(t, keys[1])
	_, err = s.ClaimRequest(ctx, keys[1], claimAt(now))
	require.ErrorIs(t, err, storage.ErrWaiting)
	parked := requestItem(t, keys[1])
	require.Equal(t, "waiting#"+runningOf(keys[1]), shardOf(parked))
	b, err := s.GetRequest(ctx, keys[1])
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, b.Status, "a parked request stays queued")
	_, due, err := dynamodb.NewlyQueued(before, parked)
	require.NoError(t, err)
	require.False(t, due, "parking dispatches nothing")
	_, err = s.ClaimRequest(ctx, keys[2], claimAt(now.Add(time.Millisecond)))
	require.ErrorIs(t, err, storage.ErrWaiting, "a third request of the key waits too")

	other := tenantKeys(t, 1, false)[0]
	require.NoError(t, s.CreateRequest(ctx, newRequest(other, now)))
	_, err = s.ClaimRequest(ctx, other, claimAt(now))
	require.NoError(t, err, "another tenant has slots of its own")

	// An operator's listing of queued requests shows the parked ones (the
	// index is eventually consistent: poll).
	deadline := time.Now().Add(30 * time.Second)
	for {
		page, err := s.ListByStatus(ctx, storage.StatusQuery{Status: storage.StatusQueued, Tenant: keys[0].Tenant, Limit: 10})
		require.NoError(t, err)
		var ids []string
		for _, r := range page.Requests {
			ids = append(ids, r.Key.ID)
		}
		if len(ids) == 2 {
			require.ElementsMatch(t, []string{keys[1].ID, keys[2].ID}, ids)
			break
		}
		require.True(t, time.Now().Before(deadline), "queued listing shows %v", ids)
		time.Sleep(100 * time.Millisecond)
	}

	// The first run ends: the oldest parked request (keys[1]) is woken,
	// the other stays parked.
	require.NoError(t, s.FinishRequest(ctx, keys[0], finishOK(a.Attempt, 1, now)))
	require.Equal(t, "0", counter(t, runningOf(keys[0]), "running"))
	woken := requestItem(t, keys[1])
	require.True(t, strings.HasPrefix(shardOf(woken), "queued#"), "woken: %s", shardOf(woken))
	wk, due, err := dynamodb.NewlyQueued(parked, woken)
	require.NoError(t, err)
	require.True(t, due, "the wake dispatches the request")
	require.Equal(t, keys[1], wk)
	require.Equal(t, "waiting#"+runningOf(keys[2]), shardOf(requestItem(t, keys[2])))

	b, err = s.ClaimRequest(ctx, keys[1], claimAt(now))
	require.NoError(t, err)
	// A requeue (a retry's backoff) gives the slot back and wakes the next.
	require.NoError(t, s.RequeueRequest(ctx, keys[1], b.Attempt, now.Add(time.Minute)))
	require.Equal(t, "0", counter(t, runningOf(keys[1]), "running"))
	require.True(t, strings.HasPrefix(shardOf(requestItem(t, keys[2])), "queued#"))
	c, err := s.ClaimRequest(ctx, keys[2], claimAt(now))
	require.NoError(t, err)
	// A continuation too.
	require.NoError(t, s.ContinueRequest(ctx, keys[2], c.Attempt, now))
	require.Equal(t, "0", counter(t, runningOf(keys[2]), "running"))
}

// TestTakeoverKeepsTheSlot: a run that died holds its slot until a new run
// takes the request over; the takeover takes no second slot, and its
// finish gives the one slot back.
func TestTakeoverKeepsTheSlot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := limitedStore(t, dynamodb.Limits{KeyConcurrency: 1, MaxPending: 10}, nil)
	k := tenantKeys(t, 1, false)[0]
	now := time.Now()
	require.NoError(t, s.CreateRequest(ctx, newRequest(k, now)))
	first, err := s.ClaimRequest(ctx, k, claimAt(now))
	require.NoError(t, err)
	later := now.Add(2 * time.Minute) // past the first lease
	second, err := s.ClaimRequest(ctx, k, claimAt(later))
	require.NoError(t, err)
	require.Equal(t, first.Attempt+1, second.Attempt)
	require.Equal(t, 1, second.Stalls)
	require.Equal(t, "1", counter(t, runningOf(k), "running"))
	require.ErrorIs(t, s.FinishRequest(ctx, k, finishOK(first.Attempt, 1, later)), storage.ErrConflict, "the dead run is fenced")
	require.NoError(t, s.FinishRequest(ctx, k, finishOK(second.Attempt, 1, later)))
	require.Equal(t, "0", counter(t, runningOf(k), "running"))
	require.Equal(t, "0", counter(t, pendingOf(k), "pending"))
}

// TestLimitsTurnedOn: requests created and claimed with limits off are
// finished and re-queued by a store with limits on without touching the
// counters (they never counted them).
func TestLimitsTurnedOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	off := limitedStore(t, dynamodb.Limits{}, nil)
	on := limitedStore(t, dynamodb.Limits{KeyConcurrency: 5, MaxPending: 5}, nil)
	keys := tenantKeys(t, 2, true)
	now := time.Now()
	for _, k := range keys {
		require.NoError(t, off.CreateRequest(ctx, newRequest(k, now)))
	}
	a, err := off.ClaimRequest(ctx, keys[0], claimAt(now))
	require.NoError(t, err)
	require.NoError(t, on.RequeueRequest(ctx, keys[0], a.Attempt, now))
	a, err = off.ClaimRequest(ctx, keys[0], claimAt(now.Add(time.Second)))
	require.NoError(t, err)
	require.NoError(t, on.FinishRequest(ctx, keys[0], finishOK(a.Attempt, 1, now)))
	require.Empty(t, counter(t, runningOf(keys[0]), "running"), "no counter was touched")
	require.Empty(t, counter(t, pendingOf(keys[0]), "pending"))

	// Created uncounted, claimed counted: the finish releases the slot
	// only.
	b, err := on.ClaimRequest(ctx, keys[1], claimAt(now))
	require.NoError(t, err)
	require.Equal(t, "1", counter(t, runningOf(keys[1]), "running"))
	require.NoError(t, on.FinishRequest(ctx, keys[1], finishOK(b.Attempt, 1, now)))
	require.Equal(t, "0", counter(t, runningOf(keys[1]), "running"))
	require.Empty(t, counter(t, pendingOf(keys[1]), "pending"))
}

// lostWakes fails every query of a waiting partition, as a processor that
// died between its finish and its wake would leave things.
type lostWakes struct {
	dynamodb.API
	mu   sync.Mutex
	lost int
}

func (l *lostWakes) Query(ctx context.Context, in *ddb.QueryInput, opts ...func(*ddb.Options)) (*ddb.QueryOutput, error) {
	for _, v := range in.ExpressionAttributeValues {
		if s, ok := v.(*types.AttributeValueMemberS); ok && strings.HasPrefix(s.Value, "waiting#") {
			l.mu.Lock()
			l.lost++
			l.mu.Unlock()
			return nil, errors.New("injected: the wake was lost")
		}
	}
	return l.API.Query(ctx, in, opts...)
}

// TestWakeWaitingIsTheBackstop: when the wake after a finish is lost, the
// reaper's WakeWaiting finds the key (marked when its request was parked)
// and wakes the request; a key with nothing parked is unmarked.
func TestWakeWaitingIsTheBackstop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	lw := &lostWakes{}
	l := dynamodb.Limits{KeyConcurrency: 1, MaxPending: 10}
	s := limitedStore(t, l, func(api dynamodb.API) dynamodb.API { lw.API = api; return lw })
	reaper := limitedStore(t, l, nil)
	keys := tenantKeys(t, 2, false)
	now := time.Now()
	for _, k := range keys {
		require.NoError(t, s.CreateRequest(ctx, newRequest(k, now)))
	}
	a, err := s.ClaimRequest(ctx, keys[0], claimAt(now))
	require.NoError(t, err)
	_, err = s.ClaimRequest(ctx, keys[1], claimAt(now))
	require.ErrorIs(t, err, storage.ErrWaiting)
	require.NoError(t, s.FinishRequest(ctx, keys[0], finishOK(a.Attempt, 1, now)))
	lw.mu.Lock()
	require.Positive(t, lw.lost, "the wake was attempted and lost")
	lw.mu.Unlock()
	require.Equal(t, "waiting#"+runningOf(keys[1]), shardOf(requestItem(t, keys[1])), "still parked")

	// The index is eventually consistent: poll with a deadline.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := reaper.WakeWaiting(ctx, time.Now())
		require.NoError(t, err)
		if strings.HasPrefix(shardOf(requestItem(t, keys[1])), "queued#") {
			break
		}
		require.True(t, time.Now().Before(deadline), "WakeWaiting never woke the parked request")
		time.Sleep(100 * time.Millisecond)
	}
	b, err := reaper.ClaimRequest(ctx, keys[1], claimAt(now))
	require.NoError(t, err)
	require.NoError(t, reaper.FinishRequest(ctx, keys[1], finishOK(b.Attempt, 1, now)))

	// Nothing parked any more: the key leaves the marked partition.
	for {
		_, err := reaper.WakeWaiting(ctx, time.Now())
		require.NoError(t, err)
		out, err := newClient(shared.cfg).GetItem(ctx, &ddb.GetItemInput{
			TableName: aws.String(shared.table), ConsistentRead: aws.Bool(true),
			Key: map[string]types.AttributeValue{
				dynamodb.AttrPK: &types.AttributeValueMemberS{Value: runningOf(keys[0])},
				dynamodb.AttrSK: &types.AttributeValueMemberS{Value: "LIMIT"},
			},
		})
		require.NoError(t, err)
		if shardOf(out.Item) == "" {
			break
		}
		require.True(t, time.Now().Before(deadline), "the key stayed marked")
		time.Sleep(100 * time.Millisecond)
	}
}

// TestConcurrentClaimsStayWithinTheLimit: 8 processors claim 24 requests
// of one tenant at once against a limit of 3; at no time do more than 3
// run, and every request runs once all are done.
func TestConcurrentClaimsStayWithinTheLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const limit, n, workers = 3, 24, 8
	s := limitedStore(t, dynamodb.Limits{KeyConcurrency: limit, MaxPending: n}, nil)
	keys := tenantKeys(t, n, false)
	now := time.Now()
	for _, k := range keys {
		require.NoError(t, s.CreateRequest(ctx, newRequest(k, now)))
	}
	var mu sync.Mutex
	running, peak, done := 0, 0, map[storage.Key]bool{}
	work := make(chan storage.Key, n*4)
	for _, k := range keys {
		work <- k
	}
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				mu.Lock()
				finished := len(done) == n
				mu.Unlock()
				if finished {
					return
				}
				var k storage.Key
				select {
				case k = <-work:
				case <-time.After(200 * time.Millisecond):
					// Parked requests come back when a run ends
					// (here: re-offered, as the stream would).
					for _, k := range keys {
						mu.Lock()
						d := done[k]
						mu.Unlock()
						if !d {
							select {
							case work <- k:
							default:
							}
						}
					}
					continue
				}
				r, err := s.ClaimRequest(ctx, k, claimAt(time.Now()))
				if err != nil {
					continue // parked, or claimed by another worker
				}
				mu.Lock()
				running++
				peak = max(peak, running)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond) // overlap the runs
				mu.Lock()
				running--
				mu.Unlock()
				if err := s.FinishRequest(ctx, k, finishOK(r.Attempt, 1, time.Now())); err == nil {
					mu.Lock()
					done[k] = true
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	require.Len(t, done, n, "every request ran")
	require.LessOrEqual(t, peak, limit, "never more than the limit at once")
	require.Equal(t, "0", counter(t, runningOf(keys[0]), "running"))
}

// cancelBeforeRead cancels a request just before the store's first
// GetItem, as a client's cancel landing between a counted claim's
// transaction and its read-back would.
type cancelBeforeRead struct {
	dynamodb.API
	once   sync.Once
	cancel func()
}

func (c *cancelBeforeRead) GetItem(ctx context.Context, in *ddb.GetItemInput, opts ...func(*ddb.Options)) (*ddb.GetItemOutput, error) {
	c.once.Do(c.cancel)
	return c.API.GetItem(ctx, in, opts...)
}

// TestClaimReturnsTheRequestAsClaimed: a cancel between the claim's
// transaction and its read-back does not make the claim look like the
// claim of a canceled request: the run opens (started event) and then sees
// the cancel, as with a single-write claim.
func TestClaimReturnsTheRequestAsClaimed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := dynamodb.Limits{KeyConcurrency: 5, MaxPending: 5}
	other := limitedStore(t, l, nil)
	k := tenantKeys(t, 1, false)[0]
	now := time.Now()
	require.NoError(t, other.CreateRequest(ctx, newRequest(k, now)))
	cb := &cancelBeforeRead{}
	cb.cancel = func() {
		_, err := other.CancelRequest(ctx, k, now)
		require.NoError(t, err)
	}
	s := limitedStore(t, l, func(api dynamodb.API) dynamodb.API { cb.API = api; return cb })
	r, err := s.ClaimRequest(ctx, k, claimAt(now))
	require.NoError(t, err)
	require.Equal(t, storage.StatusRunning, r.Status, "as claimed")
	require.Equal(t, 1, r.Attempt)
	got, err := other.GetRequest(ctx, k)
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceling, got.Status, "the cancel is stored")
}
