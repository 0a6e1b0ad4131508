package dynamodb_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// uniquePrincipal returns a tenant no other test uses.
func uniquePrincipal(t testing.TB) (tenant, subject string) {
	var b [8]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return t.Name() + "-" + hex.EncodeToString(b[:]), "subject|with|bars"
}

// TestSchemaPrincipalIndex: the principal index is keyed by principal and
// creation, and projects nothing that an event or a status change writes,
// so that neither writes the index.
func TestSchemaPrincipalIndex(t *testing.T) {
	t.Parallel()
	s := dynamodb.Schema("tbl")
	var gsi *types.GlobalSecondaryIndex
	for i := range s.GlobalSecondaryIndexes {
		if aws.ToString(s.GlobalSecondaryIndexes[i].IndexName) == dynamodb.IndexPrincipal {
			gsi = &s.GlobalSecondaryIndexes[i]
		}
	}
	require.NotNil(t, gsi)
	require.Equal(t, []types.KeySchemaElement{
		{AttributeName: aws.String(dynamodb.AttrPrincipalKey), KeyType: types.KeyTypeHash},
		{AttributeName: aws.String(dynamodb.AttrPrincipalTime), KeyType: types.KeyTypeRange},
	}, gsi.KeySchema)
	require.Equal(t, types.ProjectionTypeInclude, gsi.Projection.ProjectionType)
	require.Equal(t, []string{"expires_at"}, gsi.Projection.NonKeyAttributes)
	for _, d := range s.AttributeDefinitions {
		switch aws.ToString(d.AttributeName) {
		case dynamodb.AttrPrincipalKey, dynamodb.AttrPrincipalTime:
			require.Equal(t, types.ScalarAttributeTypeS, d.AttributeType)
		}
	}
}

// TestListOperations pins the calls of a listing: one query of the
// principal index (never a scan), one BatchGetItem of the page's requests
// and one LastEvent query per request listed.
func TestListOperations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tenant, subject := uniquePrincipal(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	for i := range 5 {
		k := storage.Key{Tenant: tenant, Subject: subject, ID: string(rune('a' + i))}
		require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued, CreatedAt: now.Add(time.Duration(i) * time.Second)}))
	}
	b.ops.take()

	page, err := b.store.ListRequests(ctx, tenant, subject, storage.ListQuery{Limit: 3})
	require.NoError(t, err)
	require.Len(t, page.Requests, 3)
	require.NotEmpty(t, page.Cursor)
	require.Equal(t, map[string]int{"Query": 1 + 3, "BatchGetItem": 1}, b.ops.take(), "index query, batch read, 3 last events")

	page, err = b.store.ListRequests(ctx, tenant, subject, storage.ListQuery{Limit: 3, Cursor: page.Cursor})
	require.NoError(t, err)
	require.Len(t, page.Requests, 2)
	require.Empty(t, page.Cursor)
	require.Equal(t, map[string]int{"Query": 1 + 2, "BatchGetItem": 1}, b.ops.take())

	page, err = b.store.ListRequests(ctx, tenant+"-nobody", subject, storage.ListQuery{})
	require.NoError(t, err)
	require.Empty(t, page.Requests)
	require.Equal(t, map[string]int{"Query": 1}, b.ops.take(), "nothing found: one query")
}

// TestListIndexAttributes: a request item gets its principal index
// attributes when it is created and no write changes them; events,
// subscriptions and connections have none.
func TestListIndexAttributes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tenant, subject := uniquePrincipal(t)
	k := storage.Key{Tenant: tenant, Subject: subject, ID: "r1"}
	pk := "REQ#" + k.String()
	now := time.Now().UTC().Truncate(time.Millisecond)
	require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued, CreatedAt: now}))
	it := rawItem(t, b, pk, "REQ")
	want := map[string]types.AttributeValue{
		dynamodb.AttrPrincipalKey:  it[dynamodb.AttrPrincipalKey],
		dynamodb.AttrPrincipalTime: it[dynamodb.AttrPrincipalTime],
	}
	require.Equal(t, &types.AttributeValueMemberS{Value: storage.Key{Tenant: tenant, Subject: subject}.String()}, want[dynamodb.AttrPrincipalKey])
	require.IsType(t, &types.AttributeValueMemberS{}, want[dynamodb.AttrPrincipalTime])
	check := func(msg string) {
		t.Helper()
		it := rawItem(t, b, pk, "REQ")
		require.Equal(t, want[dynamodb.AttrPrincipalKey], it[dynamodb.AttrPrincipalKey], msg)
		require.Equal(t, want[dynamodb.AttrPrincipalTime], it[dynamodb.AttrPrincipalTime], msg)
	}
	_, err := b.store.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)
	check("claim")
	require.NoError(t, b.store.ExtendLease(ctx, k, 1, now.Add(2*time.Minute)))
	check("extend")
	require.NoError(t, b.store.AppendEvent(ctx, k, 1, storage.Event{Seq: 1, Type: "progress", Percentage: 5}, 0))
	check("event")
	require.NoError(t, b.store.Subscribe(ctx, k, t.Name()+"-conn", time.Time{}))
	check("subscribe")
	require.NoError(t, b.store.FinishRequest(ctx, k, storage.Finish{
		Attempt: 1, Event: storage.Event{Seq: 2, Type: "complete"}, Status: storage.StatusSucceeded, Now: now,
	}))
	check("finish")
	for _, other := range []map[string]types.AttributeValue{
		rawItem(t, b, pk, "EV#00000000000000000001"),
		rawItem(t, b, pk, "EV#00000000000000000002"),
		rawItem(t, b, pk, "SUB#"+t.Name()+"-conn"),
	} {
		require.NotEmpty(t, other)
		require.NotContains(t, other, dynamodb.AttrPrincipalKey)
		require.NotContains(t, other, dynamodb.AttrPrincipalTime)
	}
	require.NoError(t, b.store.PutConnection(ctx, storage.Connection{ID: t.Name() + "-c", Tenant: tenant, Subject: subject}))
	conn := rawItem(t, b, "CONN#"+t.Name()+"-c", "CONN")
	require.NotEmpty(t, conn)
	require.NotContains(t, conn, dynamodb.AttrPrincipalKey)
}

// TestListTimesBefore1970: the sort key orders times before the epoch, and
// the zero time, below later ones.
func TestListTimesBefore1970(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tenant, subject := uniquePrincipal(t)
	times := map[string]time.Time{
		"zero":   {},
		"1969":   time.UnixMilli(-1),
		"epoch":  time.UnixMilli(0),
		"now":    time.Now(),
		"before": time.UnixMilli(-86_400_000),
	}
	for id, at := range times {
		k := storage.Key{Tenant: tenant, Subject: subject, ID: id}
		require.NoError(t, b.store.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued, CreatedAt: at}))
	}
	var got []string
	q := storage.ListQuery{Limit: 2}
	for {
		page, err := b.store.ListRequests(ctx, tenant, subject, q)
		require.NoError(t, err)
		for _, r := range page.Requests {
			got = append(got, r.Key.ID)
		}
		if page.Cursor == "" {
			break
		}
		q.Cursor = page.Cursor
	}
	require.Equal(t, []string{"now", "epoch", "1969", "before", "zero"}, got)
}

// TestListFilterIsBounded: with a status filter few requests pass, one
// call reads at most 200 requests and returns a cursor to go on with.
func TestListFilterIsBounded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	tenant, subject := uniquePrincipal(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	const n = 230
	// The running one is the oldest: the filter passes it last.
	keys := make([]storage.Key, n+1)
	var wg sync.WaitGroup
	errs := make([]error, n+1)
	sem := make(chan struct{}, 8)
	for i := range n + 1 {
		keys[i] = storage.Key{Tenant: tenant, Subject: subject, ID: "r" + string(rune('A'+i/26)) + string(rune('a'+i%26))}
		st := storage.StatusSucceeded
		if i == n {
			st = storage.StatusRunning
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = b.store.CreateRequest(ctx, storage.Request{Key: keys[i], Status: st, CreatedAt: now.Add(-time.Duration(i) * time.Second)})
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	b.ops.take()

	running := storage.ListQuery{Statuses: []storage.Status{storage.StatusRunning}, Limit: 5}
	page, err := b.store.ListRequests(ctx, tenant, subject, running)
	require.NoError(t, err)
	require.Empty(t, page.Requests, "the first 200 entries hold none")
	require.NotEmpty(t, page.Cursor, "but the listing goes on")
	ops := b.ops.take()
	require.Equal(t, map[string]int{"Query": 3, "BatchGetItem": 3}, ops, "rounds of 5, 100 and 95 entries")

	running.Cursor = page.Cursor
	page, err = b.store.ListRequests(ctx, tenant, subject, running)
	require.NoError(t, err)
	require.Len(t, page.Requests, 1)
	require.Equal(t, keys[n], page.Requests[0].Key)
	require.Empty(t, page.Cursor)
	require.Equal(t, map[string]int{"Query": 2 + 1, "BatchGetItem": 2}, b.ops.take(), "rounds of 5 and 25 entries, one last event")

	// Without the filter, a page of 100 is one round.
	page, err = b.store.ListRequests(ctx, tenant, subject, storage.ListQuery{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, page.Requests, storage.MaxListLimit)
	require.Equal(t, keys[:storage.MaxListLimit], keysOfPage(page))
	ops = b.ops.take()
	require.Equal(t, 1, ops["BatchGetItem"], "%v", ops)
	require.Equal(t, 1+storage.MaxListLimit, ops["Query"], "%v", ops)
}

func keysOfPage(p storage.ListPage) []storage.Key {
	out := make([]storage.Key, len(p.Requests))
	for i, r := range p.Requests {
		out[i] = r.Key
	}
	return out
}

// principalIndexAPI is a fake whose principal index holds, as a lagging
// index may, entries of another principal's request, of a request that no
// longer exists, a second entry of a request (at its old place: it was
// re-created) and the entry of a request re-created at a new place that
// the index does not show yet; the store lists none of them but the
// request's current entry. Its BatchGetItem refuses duplicate keys as
// DynamoDB does.
type principalIndexAPI struct {
	dynamodb.API // nil: calling anything else panics
	mu           sync.Mutex
	consistent   bool
}

// at is the principal_time of a request created at ms with id.
func at(ms int64, id string) string { return fmt.Sprintf("%020d#%s", uint64(ms)^(1<<63), id) }

func (f *principalIndexAPI) Query(_ context.Context, in *ddb.QueryInput, _ ...func(*ddb.Options)) (*ddb.QueryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.IndexName) != dynamodb.IndexPrincipal {
		// A LastEvent query: no events.
		return &ddb.QueryOutput{}, nil
	}
	if aws.ToBool(in.ConsistentRead) {
		f.consistent = true
	}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	entry := func(pk, at string) map[string]types.AttributeValue {
		return map[string]types.AttributeValue{"pk": s(pk), "sk": s("REQ"), dynamodb.AttrPrincipalTime: s(at)}
	}
	return &ddb.QueryOutput{Items: []map[string]types.AttributeValue{
		entry("REQ#t|s|mine", at(50, "mine")),
		entry("REQ#t|other|theirs", at(40, "theirs")),
		entry("REQ#t|s|gone", at(30, "gone")),
		entry("REQ#t|s|moved", at(20, "moved")),
		entry("REQ#t|s|mine", at(10, "mine")),
	}}, nil
}

// created are the creation times of the fake's request items.
var created = map[string]int64{"REQ#t|s|mine": 50, "REQ#t|other|theirs": 40, "REQ#t|s|moved": 60}

func (f *principalIndexAPI) BatchGetItem(_ context.Context, in *ddb.BatchGetItemInput, _ ...func(*ddb.Options)) (*ddb.BatchGetItemOutput, error) {
	var items []map[string]types.AttributeValue
	for table, ka := range in.RequestItems {
		if !aws.ToBool(ka.ConsistentRead) {
			return nil, errors.New("want a consistent read")
		}
		seen := map[string]bool{}
		for _, k := range ka.Keys {
			pk := k["pk"].(*types.AttributeValueMemberS).Value
			if seen[pk] {
				return nil, errors.New("ValidationException: Provided list of item keys contains duplicates")
			}
			seen[pk] = true
			ms, ok := created[pk]
			if !ok {
				continue
			}
			items = append(items, map[string]types.AttributeValue{
				"pk":         &types.AttributeValueMemberS{Value: pk},
				"sk":         &types.AttributeValueMemberS{Value: "REQ"},
				"status":     &types.AttributeValueMemberS{Value: "running"},
				"created_at": &types.AttributeValueMemberN{Value: strconv.FormatInt(ms, 10)},
			})
		}
		return &ddb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{table: items}}, nil
	}
	return &ddb.BatchGetItemOutput{}, nil
}

func TestListSkipsForeignStaleAndVanishedEntries(t *testing.T) {
	t.Parallel()
	api := &principalIndexAPI{}
	s, err := dynamodb.New(dynamodb.Config{Client: api, Table: "streamer"})
	require.NoError(t, err)
	page, err := s.ListRequests(t.Context(), "t", "s", storage.ListQuery{})
	require.NoError(t, err)
	require.Equal(t, []storage.Key{{Tenant: "t", Subject: "s", ID: "mine"}}, keysOfPage(page))
	require.Empty(t, page.Cursor)
	require.False(t, api.consistent, "index queries cannot be consistent reads")

	for _, c := range []string{"%%", storage.ListPos{CreatedMS: 1, ID: strings.Repeat("x", 1100)}.Cursor()} {
		_, err = s.ListRequests(t.Context(), "t", "s", storage.ListQuery{Cursor: c})
		require.ErrorIs(t, err, storage.ErrBadCursor)
	}
}

// capacityMeter asks every call of a client for its consumed capacity
// (ReturnConsumedCapacity INDEXES) and adds it up, by table and index.
type capacityMeter struct {
	mu    sync.Mutex
	units map[string]float64 // "table" or an index name -> capacity units
}

func (m *capacityMeter) register(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("consumedCapacity",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			const all = types.ReturnConsumedCapacityIndexes
			switch p := in.Parameters.(type) {
			case *ddb.PutItemInput:
				p.ReturnConsumedCapacity = all
			case *ddb.UpdateItemInput:
				p.ReturnConsumedCapacity = all
			case *ddb.TransactWriteItemsInput:
				p.ReturnConsumedCapacity = all
			case *ddb.QueryInput:
				p.ReturnConsumedCapacity = all
			case *ddb.GetItemInput:
				p.ReturnConsumedCapacity = all
			case *ddb.BatchGetItemInput:
				p.ReturnConsumedCapacity = all
			case *ddb.BatchWriteItemInput:
				p.ReturnConsumedCapacity = all
			}
			out, md, err := next.HandleInitialize(ctx, in)
			var cc []types.ConsumedCapacity
			switch r := out.Result.(type) {
			case *ddb.PutItemOutput:
				cc = append(cc, deref(r.ConsumedCapacity)...)
			case *ddb.UpdateItemOutput:
				cc = append(cc, deref(r.ConsumedCapacity)...)
			case *ddb.TransactWriteItemsOutput:
				cc = r.ConsumedCapacity
			case *ddb.QueryOutput:
				cc = append(cc, deref(r.ConsumedCapacity)...)
			case *ddb.GetItemOutput:
				cc = append(cc, deref(r.ConsumedCapacity)...)
			case *ddb.BatchGetItemOutput:
				cc = r.ConsumedCapacity
			case *ddb.BatchWriteItemOutput:
				cc = r.ConsumedCapacity
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.units == nil {
				m.units = map[string]float64{}
			}
			for _, c := range cc {
				if c.Table != nil {
					m.units["table"] += aws.ToFloat64(c.Table.CapacityUnits)
				}
				for name, g := range c.GlobalSecondaryIndexes {
					m.units[name] += aws.ToFloat64(g.CapacityUnits)
				}
			}
			return out, md, err
		}), middleware.Before)
}

func deref(c *types.ConsumedCapacity) []types.ConsumedCapacity {
	if c == nil {
		return nil
	}
	return []types.ConsumedCapacity{*c}
}

// take returns the units since the last take and resets them.
func (m *capacityMeter) take() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.units
	m.units = nil
	return out
}

// TestListCost measures, with the capacity DynamoDB reports, what the
// principal index costs: one index write unit per request, at its
// creation, and none for its claim, events, lease renewals and finish; and
// what one page of a listing reads. BENCHMARKS.md quotes these figures.
func TestListCost(t *testing.T) {
	t.Parallel()
	requireTable(t)
	meter := &capacityMeter{}
	client := newClient(shared.cfg, func(o *ddb.Options) { o.APIOptions = append(o.APIOptions, meter.register) })
	s, err := dynamodb.New(dynamodb.Config{Client: client, Table: shared.table})
	require.NoError(t, err)
	ctx := t.Context()
	tenant, subject := uniquePrincipal(t)
	now := time.Now().UTC().Truncate(time.Millisecond)

	const requests, events = 20, 4
	for i := range requests {
		k := storage.Key{Tenant: tenant, Subject: subject, ID: fmt.Sprintf("01J%023d", i)}
		require.NoError(t, s.CreateRequest(ctx, storage.Request{
			Key: k, Action: "delay", Payload: []byte(`{"ms":200,"steps":4}`), Fingerprint: strings.Repeat("f", 64),
			Principal: []byte(`{"tenant":"acme","sub":"alice","scopes":["read"]}`), ConnectionID: "ZmFrZS1jb25uLWlk=",
			Endpoint: "https://abc.execute-api.eu-west-1.amazonaws.com/dev", Status: storage.StatusQueued,
			CreatedAt: now.Add(time.Duration(i) * time.Millisecond), UpdatedAt: now, ExpiresAt: now.Add(24 * time.Hour),
		}))
		created := meter.take()
		require.InDelta(t, 1, created[dynamodb.IndexPrincipal], 0, "create: one principal index write unit: %v", created)

		_, err := s.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
		require.NoError(t, err)
		require.NoError(t, s.ExtendLease(ctx, k, 1, now.Add(2*time.Minute)))
		for seq := int64(1); seq <= events; seq++ {
			data := []byte(fmt.Sprintf(`{"type":"progress","request_id":%q,"seq":%d,"percentage":%d,"message":"step %d of 4","timestamp":1}`, k.ID, seq, 25*seq, seq))
			require.NoError(t, s.AppendEvent(ctx, k, 1, storage.Event{Seq: seq, Type: "progress", Percentage: float64(25 * seq), Message: "step", Data: data, CreatedAt: now}, 0))
		}
		if i%2 == 0 {
			require.NoError(t, s.FinishRequest(ctx, k, storage.Finish{
				Attempt: 1, Event: storage.Event{Seq: events + 1, Type: "complete", Percentage: 100, Data: []byte(`{"type":"complete","seq":5,"result":{"steps":4}}`), CreatedAt: now},
				Status: storage.StatusSucceeded, Result: []byte(`{"steps":4}`), Now: now,
			}))
		}
		after := meter.take()
		require.Zero(t, after[dynamodb.IndexPrincipal], "claim, lease renewal, events and finish write no principal index entry: %v", after)
	}

	page, err := s.ListRequests(ctx, tenant, subject, storage.ListQuery{Limit: requests})
	require.NoError(t, err)
	require.Len(t, page.Requests, requests)
	read := meter.take()
	t.Logf("one page of %d requests reads: %v", requests, read)
	// 21 entries (the page and one to tell whether more follow) of about
	// 240 bytes here: two 4 KB eventually consistent reads.
	require.LessOrEqual(t, read[dynamodb.IndexPrincipal], 1.0, "the page's index entries")
	require.InDelta(t, 2*requests, read["table"], 0, "one strongly consistent unit per request item and one per last event")
}
