package storagetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
)

// Run runs the conformance suite against the stores newStore returns.
// newStore is called once per subtest, from that subtest; it may return a
// fresh store or a shared one, and should register any cleanup with
// t.Cleanup. Every subtest calls t.Parallel.
func Run(t *testing.T, newStore func(t *testing.T) storage.Store) {
	t.Helper()
	for _, g := range groups() {
		t.Run(g.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					st := newStore(t)
					require.NotNil(t, st, "newStore returned nil")
					c.fn(t, newEnv(t, st))
				})
			}
		})
	}
}

type testCase struct {
	name string
	fn   func(t *testing.T, e *env)
}

type group struct {
	name  string
	cases []testCase
}

func groups() []group {
	return []group{
		{"Connection", []testCase{
			{"PutGet", testConnPutGet},
			{"Replace", testConnReplace},
			{"GetMissing", testConnGetMissing},
			{"Delete", testConnDelete},
			{"DeleteRemovesSubscriptions", testConnDeleteRemovesSubscriptions},
			{"Expired", testConnExpired},
		}},
		{"Subscription", []testCase{
			{"Idempotent", testSubIdempotent},
			{"Many", testSubMany},
			{"Unsubscribe", testSubUnsubscribe},
			{"Empty", testSubEmpty},
			{"OwnConnectionNotImplicit", testSubOwnConnection},
			{"KeyEncoding", testSubKeyEncoding},
			{"Expired", testSubExpired},
			{"Resubscribe", testSubResubscribe},
		}},
		{"Request", []testCase{
			{"CreateGet", testReqCreateGet},
			{"TraceParentKept", testReqTraceParentKept},
			{"CreateMinimal", testReqCreateMinimal},
			{"CreateExists", testReqCreateExists},
			{"GetMissing", testReqGetMissing},
			{"Expired", testReqExpired},
			{"KeyEncoding", testReqKeyEncoding},
			{"PrincipalScope", testReqPrincipalScope},
			{"Isolation", testReqIsolation},
		}},
		{"Claim", []testCase{
			{"Queued", testClaimQueued},
			{"NotBefore", testClaimNotBefore},
			{"Twice", testClaimTwice},
			{"ExpiredLeaseRunning", testClaimExpiredLeaseRunning},
			{"ExpiredLeaseCanceling", testClaimExpiredLeaseCanceling},
			{"CanceledWhileQueued", testClaimCanceledWhileQueued},
			{"Finished", testClaimFinished},
			{"Unknown", testClaimUnknown},
			{"Concurrent", testClaimConcurrent},
		}},
		{"ExtendLease", []testCase{
			{"Extends", testExtendLease},
			{"WrongAttempt", testExtendWrongAttempt},
			{"Canceling", testExtendCanceling},
			{"Queued", testExtendQueued},
			{"Finished", testExtendFinished},
			{"Unknown", testExtendUnknown},
		}},
		{"Requeue", []testCase{
			{"Requeues", testRequeue},
			{"WrongAttempt", testRequeueWrongAttempt},
			{"Canceling", testRequeueCanceling},
			{"Queued", testRequeueQueued},
			{"Finished", testRequeueFinished},
			{"Unknown", testRequeueUnknown},
		}},
		{"Cancel", []testCase{
			{"Queued", testCancelQueued},
			{"Running", testCancelRunning},
			{"Canceling", testCancelCanceling},
			{"Finished", testCancelFinished},
			{"Unknown", testCancelUnknown},
		}},
		{"Finish", []testCase{
			{"Succeeded", testFinishSucceeded},
			{"Failed", testFinishFailed},
			{"Chunked", testFinishChunked},
			{"Canceled", testFinishCanceled},
			{"Twice", testFinishTwice},
			{"SeqTaken", testFinishSeqTaken},
			{"Unknown", testFinishUnknown},
			{"Concurrent", testFinishConcurrent},
			{"WrongAttempt", testFinishWrongAttempt},
		}},
		{"Checkpoint", []testCase{
			{"SaveAndClaim", testCheckpointSave},
			{"WithEvent", testCheckpointWithEvent},
			{"Fenced", testCheckpointFenced},
			{"Continue", testCheckpointContinue},
			{"StartedAtKept", testCheckpointStartedAt},
		}},
		{"Fencing", []testCase{
			{"SupersededRun", testFencingSuperseded},
			{"CanceledTakeover", testFencingCanceledTakeover},
		}},
		{"Stalls", []testCase{
			{"Queued", testStallsQueued},
			{"Takeover", testStallsTakeover},
			{"Stalled", testStallsStalled},
			{"Rejected", testStallsRejected},
		}},
		{"Event", []testCase{
			{"AppendRead", testEventAppendRead},
			{"Order", testEventOrder},
			{"SeqTaken", testEventSeqTaken},
			{"SubscribersChanged", testEventSubscribersChanged},
			{"AfterFinish", testEventAfterFinish},
			{"UnknownRequest", testEventUnknownRequest},
			{"LastEvent", testEventLast},
			{"LargeData", testEventLargeData},
			{"Isolation", testEventIsolation},
			{"WrongAttempt", testEventWrongAttempt},
			{"RecreatedAfterExpiry", testEventRecreatedAfterExpiry},
		}},
		{"Lister", []testCase{
			{"ListUnfinished", testListUnfinished},
		}},
		{"DueLister", []testCase{
			{"ListDue", testListDue},
			{"Limit", testListDueLimit},
		}},
		{"PrincipalLister", principalListerCases()},
		{"ConnectionCounter", connectionCounterCases()},
		{"StatusLister", statusListerCases()},
		{"Sweeper", []testCase{
			{"Sweep", testSweep},
		}},
		{"Context", []testCase{
			{"Canceled", testContextCanceled},
		}},
	}
}

// env is one subtest's store, context, unique prefix and base time.
type env struct {
	s   storage.Store
	ctx context.Context
	// p makes the subtest's keys and connection ids unique.
	p string
	// now is the subtest's base time, wall-clock now at ms precision.
	now time.Time
}

func newEnv(t *testing.T, s storage.Store) *env {
	var b [8]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return &env{
		s:   s,
		ctx: t.Context(),
		p:   "st" + hex.EncodeToString(b[:]) + "-",
		now: time.Now().UTC().Truncate(time.Millisecond),
	}
}

// at returns the base time moved by d.
func (e *env) at(d time.Duration) time.Time { return e.now.Add(d) }

// later returns an expiry so far ahead that nothing expires it during the
// suite, not even the Sweeper test's sweep two hours ahead.
func (e *env) later() time.Time { return e.at(1000 * time.Hour) }

// key returns a key unique to the subtest.
func (e *env) key(name string) storage.Key {
	return storage.Key{Tenant: e.p + "tenant", Subject: "subject", ID: e.p + name}
}

// conn returns a connection id unique to the subtest.
func (e *env) conn(name string) string { return e.p + "conn-" + name }

// request returns a queued request with every common field set.
func (e *env) request(k storage.Key) storage.Request {
	return storage.Request{
		Key:          k,
		Action:       "generate_report",
		Payload:      json.RawMessage(`{"startDate": "2024-01-01", "n": [1, 2, 3]}`),
		Metadata:     map[string]string{"k": "v", "trace": "abc"},
		Fingerprint:  "fp-" + k.ID,
		TraceParent:  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		Principal:    []byte{0, 1, 2, 0xfe, 0xff},
		ConnectionID: e.conn("origin"),
		Endpoint:     "https://abc.execute-api.eu-west-1.amazonaws.com/dev",
		Status:       storage.StatusQueued,
		CreatedAt:    e.now,
		UpdatedAt:    e.now,
	}
}

// create stores a queued request under k and returns it.
func (e *env) create(t *testing.T, k storage.Key) storage.Request {
	t.Helper()
	r := e.request(k)
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
	return r
}

// claim claims k at base time + d with a one minute lease.
func (e *env) claim(t *testing.T, k storage.Key, d time.Duration) storage.Request {
	t.Helper()
	r, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(d), LeaseUntil: e.at(d + time.Minute)})
	require.NoError(t, err)
	return r
}

// get returns the stored request k.
func (e *env) get(t *testing.T, k storage.Key) storage.Request {
	t.Helper()
	r, err := e.s.GetRequest(e.ctx, k)
	require.NoError(t, err)
	return r
}

// events returns the whole event log of k.
func (e *env) events(t *testing.T, k storage.Key) []storage.Event {
	t.Helper()
	evs, err := e.s.ReadEvents(e.ctx, k, 0, 0)
	require.NoError(t, err)
	return evs
}

// progress returns a progress event.
func (e *env) progress(seq int64, pct float64) storage.Event {
	return storage.Event{
		Seq:        seq,
		Type:       "progress",
		Percentage: pct,
		Message:    "step",
		Data:       []byte(`{"type":"progress","seq":` + itoa(seq) + `}`),
		CreatedAt:  e.now,
	}
}

// terminal returns a terminal event of type typ.
func (e *env) terminal(seq int64, typ string) storage.Event {
	return storage.Event{
		Seq:        seq,
		Type:       typ,
		Percentage: 100,
		Message:    "done",
		Data:       []byte(`{"type":"` + typ + `","seq":` + itoa(seq) + `}`),
		CreatedAt:  e.now,
	}
}

// succeed returns a Finish of the run claimed as attempt that succeeds with
// result at seq.
func (e *env) succeed(attempt int, seq int64, result string) storage.Finish {
	return storage.Finish{
		Attempt: attempt,
		Event:   e.terminal(seq, "complete"),
		Status:  storage.StatusSucceeded,
		Result:  json.RawMessage(result),
		Now:     e.at(5 * time.Second),
	}
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// --- comparison helpers ---------------------------------------------------

// ms normalises a time for comparison: ms precision, UTC, no monotonic
// reading. The zero time stays zero.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Millisecond).UTC()
}

func bytesOrNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func normRequest(r storage.Request) storage.Request {
	r.Payload = bytesOrNil(r.Payload)
	if len(r.Metadata) == 0 {
		r.Metadata = nil
	}
	r.Principal = bytesOrNil(r.Principal)
	r.Result = bytesOrNil(r.Result)
	r.Checkpoint = bytesOrNil(r.Checkpoint)
	r.StartedAt = ms(r.StartedAt)
	if r.Error != nil {
		ei := *r.Error
		ei.Details = bytesOrNil(ei.Details)
		r.Error = &ei
	}
	r.NotBefore = ms(r.NotBefore)
	r.LeaseUntil = ms(r.LeaseUntil)
	r.CreatedAt = ms(r.CreatedAt)
	r.UpdatedAt = ms(r.UpdatedAt)
	r.ExpiresAt = ms(r.ExpiresAt)
	return r
}

func normConn(c storage.Connection) storage.Connection {
	c.Principal = bytesOrNil(c.Principal)
	c.ConnectedAt = ms(c.ConnectedAt)
	c.ExpiresAt = ms(c.ExpiresAt)
	return c
}

func normEvent(ev storage.Event) storage.Event {
	ev.Data = bytesOrNil(ev.Data)
	ev.CreatedAt = ms(ev.CreatedAt)
	ev.ExpiresAt = ms(ev.ExpiresAt)
	return ev
}

func requireRequest(t *testing.T, want, got storage.Request, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, normRequest(want), normRequest(got), msgAndArgs...)
}

func requireConn(t *testing.T, want, got storage.Connection) {
	t.Helper()
	require.Equal(t, normConn(want), normConn(got))
}

func requireEvents(t *testing.T, want, got []storage.Event) {
	t.Helper()
	w := make([]storage.Event, len(want))
	for i, ev := range want {
		w[i] = normEvent(ev)
	}
	g := make([]storage.Event, len(got))
	for i, ev := range got {
		g[i] = normEvent(ev)
	}
	require.Equal(t, w, g)
}

func seqs(evs []storage.Event) []int64 {
	out := make([]int64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Seq
	}
	return out
}

// requireNotFoundOrConflict accepts either sentinel, for operations on an
// unknown request whose error the contract leaves open.
func requireNotFoundOrConflict(t *testing.T, err error) {
	t.Helper()
	require.Error(t, err)
	require.True(t, errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrConflict),
		"want ErrNotFound or ErrConflict, got %v", err)
}

// --- connections ----------------------------------------------------------

func (e *env) connection(id string) storage.Connection {
	return storage.Connection{
		ID:          id,
		Tenant:      e.p + "tenant",
		Subject:     "subject",
		Principal:   []byte{0, 1, 0xfe, 0xff},
		Endpoint:    "https://abc.execute-api.eu-west-1.amazonaws.com/dev",
		ConnectedAt: e.now,
		ExpiresAt:   e.at(1000 * time.Hour),
	}
}

func testConnPutGet(t *testing.T, e *env) {
	for _, id := range []string{e.conn("plain"), e.conn("a|b%7C|%"), e.conn("")} {
		c := e.connection(id)
		require.NoError(t, e.s.PutConnection(e.ctx, c))
		got, err := e.s.GetConnection(e.ctx, id)
		require.NoError(t, err)
		requireConn(t, c, got)
	}

	// Zero optional fields round-trip as zero.
	c := storage.Connection{ID: e.conn("minimal")}
	require.NoError(t, e.s.PutConnection(e.ctx, c))
	got, err := e.s.GetConnection(e.ctx, c.ID)
	require.NoError(t, err)
	requireConn(t, c, got)
}

func testConnReplace(t *testing.T, e *env) {
	c := e.connection(e.conn("a"))
	require.NoError(t, e.s.PutConnection(e.ctx, c))

	c.Endpoint = "https://other.example/prod"
	c.Principal = []byte("other")
	c.Subject = "other-subject"
	c.ConnectedAt = e.at(time.Second)
	require.NoError(t, e.s.PutConnection(e.ctx, c))

	got, err := e.s.GetConnection(e.ctx, c.ID)
	require.NoError(t, err)
	requireConn(t, c, got)
}

func testConnGetMissing(t *testing.T, e *env) {
	_, err := e.s.GetConnection(e.ctx, e.conn("missing"))
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testConnDelete(t *testing.T, e *env) {
	c := e.connection(e.conn("a"))
	other := e.connection(e.conn("b"))
	require.NoError(t, e.s.PutConnection(e.ctx, c))
	require.NoError(t, e.s.PutConnection(e.ctx, other))

	require.NoError(t, e.s.DeleteConnection(e.ctx, c.ID))
	_, err := e.s.GetConnection(e.ctx, c.ID)
	require.ErrorIs(t, err, storage.ErrNotFound)

	// Other connections are untouched.
	got, err := e.s.GetConnection(e.ctx, other.ID)
	require.NoError(t, err)
	requireConn(t, other, got)

	// Deleting a missing connection is fine, twice too.
	require.NoError(t, e.s.DeleteConnection(e.ctx, c.ID))
	require.NoError(t, e.s.DeleteConnection(e.ctx, e.conn("never-existed")))
}

func testConnDeleteRemovesSubscriptions(t *testing.T, e *env) {
	gone, stay := e.conn("gone"), e.conn("stay")
	k1, k2 := e.key("r1"), e.key("r2")
	e.create(t, k1)
	require.NoError(t, e.s.PutConnection(e.ctx, e.connection(gone)))
	require.NoError(t, e.s.PutConnection(e.ctx, e.connection(stay)))
	require.NoError(t, e.s.Subscribe(e.ctx, k1, gone, e.later()))
	require.NoError(t, e.s.Subscribe(e.ctx, k2, gone, time.Time{}))
	require.NoError(t, e.s.Subscribe(e.ctx, e.key("r3"), gone, e.at(-time.Minute)))
	require.NoError(t, e.s.Subscribe(e.ctx, k1, stay, e.later()))

	require.NoError(t, e.s.DeleteConnection(e.ctx, gone))

	subs, err := e.s.Subscribers(e.ctx, k1)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{stay}, subs)
	subs, err = e.s.Subscribers(e.ctx, k2)
	require.NoError(t, err)
	require.Empty(t, subs)
	keys, err := e.s.Subscriptions(e.ctx, gone)
	require.NoError(t, err)
	require.Empty(t, keys)
	keys, err = e.s.Subscriptions(e.ctx, stay)
	require.NoError(t, err)
	require.ElementsMatch(t, []storage.Key{k1}, keys)

	// The request itself is untouched.
	e.get(t, k1)

	// Subscribing the same connection again starts from nothing: only the
	// new subscription is listed.
	k4 := e.key("r4")
	require.NoError(t, e.s.Subscribe(e.ctx, k4, gone, e.later()))
	keys, err = e.s.Subscriptions(e.ctx, gone)
	require.NoError(t, err)
	require.ElementsMatch(t, []storage.Key{k4}, keys)
}

func testConnExpired(t *testing.T, e *env) {
	expired := e.connection(e.conn("expired"))
	expired.ExpiresAt = e.at(-time.Minute)
	require.NoError(t, e.s.PutConnection(e.ctx, expired))
	_, err := e.s.GetConnection(e.ctx, expired.ID)
	require.ErrorIs(t, err, storage.ErrNotFound)

	forever := e.connection(e.conn("forever"))
	forever.ExpiresAt = time.Time{}
	require.NoError(t, e.s.PutConnection(e.ctx, forever))
	got, err := e.s.GetConnection(e.ctx, forever.ID)
	require.NoError(t, err)
	requireConn(t, forever, got)
	require.True(t, got.ExpiresAt.IsZero())
}

// --- subscriptions --------------------------------------------------------

func testSubIdempotent(t *testing.T, e *env) {
	k, c := e.key("r"), e.conn("a")
	require.NoError(t, e.s.Subscribe(e.ctx, k, c, e.later()))
	require.NoError(t, e.s.Subscribe(e.ctx, k, c, e.later()))

	subs, err := e.s.Subscribers(e.ctx, k)
	require.NoError(t, err)
	require.Equal(t, []string{c}, subs)
	keys, err := e.s.Subscriptions(e.ctx, c)
	require.NoError(t, err)
	require.Equal(t, []storage.Key{k}, keys)
}

func testSubMany(t *testing.T, e *env) {
	k1, k2 := e.key("r1"), e.key("r2")
	a, b, c := e.conn("a"), e.conn("b"), e.conn("c")
	for _, id := range []string{a, b, c} {
		require.NoError(t, e.s.Subscribe(e.ctx, k1, id, e.later()))
	}
	require.NoError(t, e.s.Subscribe(e.ctx, k2, a, e.later()))

	subs, err := e.s.Subscribers(e.ctx, k1)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{a, b, c}, subs)
	subs, err = e.s.Subscribers(e.ctx, k2)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{a}, subs)

	keys, err := e.s.Subscriptions(e.ctx, a)
	require.NoError(t, err)
	require.ElementsMatch(t, []storage.Key{k1, k2}, keys)
	keys, err = e.s.Subscriptions(e.ctx, b)
	require.NoError(t, err)
	require.ElementsMatch(t, []storage.Key{k1}, keys)
}

func testSubUnsubscribe(t *testing.T, e *env) {
	k1, k2 := e.key("r1"), e.key("r2")
	a, b := e.conn("a"), e.conn("b")
	require.NoError(t, e.s.Subscribe(e.ctx, k1, a, e.later()))
	require.NoError(t, e.s.Subscribe(e.ctx, k1, b, e.later()))
	require.NoError(t, e.s.Subscribe(e.ctx, k2, a, e.later()))

	require.NoError(t, e.s.Unsubscribe(e.ctx, k1, a))

	subs, err := e.s.Subscribers(e.ctx, k1)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{b}, subs)
	keys, err := e.s.Subscriptions(e.ctx, a)
	require.NoError(t, err)
	require.ElementsMatch(t, []storage.Key{k2}, keys)

	// A missing subscription is not an error.
	require.NoError(t, e.s.Unsubscribe(e.ctx, k1, a))
	require.NoError(t, e.s.Unsubscribe(e.ctx, e.key("unknown"), e.conn("unknown")))

	require.NoError(t, e.s.Unsubscribe(e.ctx, k1, b))
	subs, err = e.s.Subscribers(e.ctx, k1)
	require.NoError(t, err)
	require.Empty(t, subs)
}

func testSubEmpty(t *testing.T, e *env) {
	subs, err := e.s.Subscribers(e.ctx, e.key("none"))
	require.NoError(t, err)
	require.Empty(t, subs)
	keys, err := e.s.Subscriptions(e.ctx, e.conn("none"))
	require.NoError(t, err)
	require.Empty(t, keys)
}

func testSubOwnConnection(t *testing.T, e *env) {
	k := e.key("r")
	r := e.create(t, k)
	subs, err := e.s.Subscribers(e.ctx, k)
	require.NoError(t, err)
	require.Empty(t, subs, "the request's ConnectionID is not an implicit subscriber")

	require.NoError(t, e.s.Subscribe(e.ctx, k, r.ConnectionID, e.later()))
	subs, err = e.s.Subscribers(e.ctx, k)
	require.NoError(t, err)
	require.Equal(t, []string{r.ConnectionID}, subs)
}

func testSubKeyEncoding(t *testing.T, e *env) {
	c := e.conn("a|b%7C")
	var all []storage.Key
	for _, pair := range e.collidingKeys() {
		for _, k := range pair {
			require.NoError(t, e.s.Subscribe(e.ctx, k, c, e.later()))
			all = append(all, k)
		}
		// Only the first key of the pair gets a second subscriber.
		require.NoError(t, e.s.Subscribe(e.ctx, pair[0], e.conn("first"), e.later()))
	}
	keys, err := e.s.Subscriptions(e.ctx, c)
	require.NoError(t, err)
	require.ElementsMatch(t, all, keys)

	for _, pair := range e.collidingKeys() {
		subs, err := e.s.Subscribers(e.ctx, pair[0])
		require.NoError(t, err)
		require.ElementsMatch(t, []string{c, e.conn("first")}, subs, "key %q", pair[0].String())
		subs, err = e.s.Subscribers(e.ctx, pair[1])
		require.NoError(t, err)
		require.ElementsMatch(t, []string{c}, subs, "key %q", pair[1].String())
	}
}

// testSubExpired checks that an expired subscription is listed neither way,
// while a zero expiry never expires.
func testSubExpired(t *testing.T, e *env) {
	k1, k2 := e.key("r1"), e.key("r2")
	expired, forever, live := e.conn("expired"), e.conn("forever"), e.conn("live")
	require.NoError(t, e.s.Subscribe(e.ctx, k1, expired, e.at(-time.Minute)))
	require.NoError(t, e.s.Subscribe(e.ctx, k2, expired, e.at(-time.Hour)))
	require.NoError(t, e.s.Subscribe(e.ctx, k1, forever, time.Time{}))
	require.NoError(t, e.s.Subscribe(e.ctx, k1, live, e.at(time.Hour)))
	// Only expired subscriptions: listed as none.
	require.NoError(t, e.s.Subscribe(e.ctx, e.key("r3"), e.conn("other"), e.at(-time.Second)))

	subs, err := e.s.Subscribers(e.ctx, k1)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{forever, live}, subs)
	subs, err = e.s.Subscribers(e.ctx, k2)
	require.NoError(t, err)
	require.Empty(t, subs, "an expired subscription is not a subscriber")
	subs, err = e.s.Subscribers(e.ctx, e.key("r3"))
	require.NoError(t, err)
	require.Empty(t, subs)

	keys, err := e.s.Subscriptions(e.ctx, expired)
	require.NoError(t, err)
	require.Empty(t, keys, "an expired subscription is not listed")
	keys, err = e.s.Subscriptions(e.ctx, forever)
	require.NoError(t, err)
	require.Equal(t, []storage.Key{k1}, keys)
	keys, err = e.s.Subscriptions(e.ctx, live)
	require.NoError(t, err)
	require.Equal(t, []storage.Key{k1}, keys)

	// Unsubscribing an expired subscription is not an error.
	require.NoError(t, e.s.Unsubscribe(e.ctx, k1, expired))
	subs, err = e.s.Subscribers(e.ctx, k1)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{forever, live}, subs)
}

// testSubResubscribe checks that subscribing again with a later expiry
// extends the subscription, here past its old expiry, and that doing so
// twice lists it once.
func testSubResubscribe(t *testing.T, e *env) {
	k, c := e.key("r"), e.conn("a")
	require.NoError(t, e.s.Subscribe(e.ctx, k, c, e.at(-time.Minute)))
	subs, err := e.s.Subscribers(e.ctx, k)
	require.NoError(t, err)
	require.Empty(t, subs)

	for range 2 {
		require.NoError(t, e.s.Subscribe(e.ctx, k, c, e.at(time.Hour)))
		subs, err = e.s.Subscribers(e.ctx, k)
		require.NoError(t, err)
		require.Equal(t, []string{c}, subs, "the subscription is extended")
		keys, err := e.s.Subscriptions(e.ctx, c)
		require.NoError(t, err)
		require.Equal(t, []storage.Key{k}, keys)
	}

	// Extending to never.
	require.NoError(t, e.s.Subscribe(e.ctx, k, c, time.Time{}))
	subs, err = e.s.Subscribers(e.ctx, k)
	require.NoError(t, err)
	require.Equal(t, []string{c}, subs)
}

// --- requests -------------------------------------------------------------

// collidingKeys returns pairs of distinct keys that a naive encoding would
// map to the same string.
func (e *env) collidingKeys() [][2]storage.Key {
	p := e.p
	return [][2]storage.Key{
		{{Tenant: p + "a|b", Subject: "c", ID: p + "1"}, {Tenant: p + "a", Subject: "b|c", ID: p + "1"}},
		{{Tenant: p + "a%7Cb", Subject: "c", ID: p + "2"}, {Tenant: p + "a|b", Subject: "c", ID: p + "2"}},
		{{Tenant: "", Subject: p + "x", ID: p + "3"}, {Tenant: p + "x", Subject: "", ID: p + "3"}},
		{{Tenant: p, Subject: "s|a", ID: "b" + p}, {Tenant: p, Subject: "s", ID: "a|b" + p}},
		{{Tenant: p + "%", Subject: "x", ID: p + "5"}, {Tenant: p + "%25", Subject: "x", ID: p + "5"}},
		{{Tenant: p + "|", Subject: "", ID: p + "6"}, {Tenant: p, Subject: "|", ID: p + "6"}},
	}
}

func testReqCreateGet(t *testing.T, e *env) {
	k := e.key("full")
	r := storage.Request{
		Key:          k,
		Action:       "generate_report",
		Payload:      json.RawMessage("{\"a\" : [1, 2.50, \"x\"],\n \"b\": null }"),
		Metadata:     map[string]string{"k": "v", "empty": "", "uni": "héllo ✓"},
		Fingerprint:  "sha256:abc",
		TraceParent:  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		Principal:    []byte{0, 0xff, 'p', 0},
		ConnectionID: e.conn("origin"),
		Endpoint:     "https://abc.execute-api.eu-west-1.amazonaws.com/dev",
		Status:       storage.StatusRunning,
		Attempt:      3,
		Stalls:       2,
		NotBefore:    e.at(time.Second),
		LeaseUntil:   e.at(time.Minute + 123*time.Millisecond),
		Result:       json.RawMessage(`{"ok": true}`),
		ResultChunks: 7,
		Error: &storage.ErrorInfo{
			Code:      "INTERNAL",
			Message:   "boom",
			Details:   json.RawMessage(`{"why":"because"}`),
			Retryable: true,
		},
		CreatedAt: e.at(-time.Hour),
		UpdatedAt: e.at(-time.Minute),
		ExpiresAt: e.at(1000 * time.Hour),
	}
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
	got := e.get(t, k)
	requireRequest(t, r, got)
	require.Equal(t, []byte(r.Payload), []byte(got.Payload), "payload is kept byte for byte")
	for _, tm := range [][2]time.Time{
		{r.NotBefore, got.NotBefore}, {r.LeaseUntil, got.LeaseUntil},
		{r.CreatedAt, got.CreatedAt}, {r.UpdatedAt, got.UpdatedAt}, {r.ExpiresAt, got.ExpiresAt},
	} {
		require.True(t, tm[0].Equal(tm[1]), "time %v != %v", tm[0], tm[1])
	}
}

// testReqTraceParentKept checks that the trace context stored with a
// request comes back from every read and outlives every state change, so
// that each run continues the admission's trace.
func testReqTraceParentKept(t *testing.T, e *env) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	k := e.key("traced")
	r := e.request(k)
	r.TraceParent = tp
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
	require.Equal(t, tp, e.get(t, k).TraceParent)
	claimed := e.claim(t, k, 0)
	require.Equal(t, tp, claimed.TraceParent, "the claim returns it")
	require.NoError(t, e.s.RequeueRequest(e.ctx, k, claimed.Attempt, e.now))
	again, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(time.Second), LeaseUntil: e.at(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, tp, again.TraceParent, "a requeued request keeps it")
	require.NoError(t, e.s.ContinueRequest(e.ctx, k, again.Attempt, e.at(time.Second)))
	third, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Second), LeaseUntil: e.at(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, tp, third.TraceParent, "a continued request keeps it")
	require.NoError(t, e.s.FinishRequest(e.ctx, k, storage.Finish{
		Attempt: third.Attempt, Status: storage.StatusSucceeded, Now: e.at(3 * time.Second),
		Event: storage.Event{Seq: 1, Type: "complete", Data: []byte(`{}`), CreatedAt: e.at(3 * time.Second)},
	}))
	require.Equal(t, tp, e.get(t, k).TraceParent, "a finished request keeps it")

	// A request stored without one has none.
	k2 := e.key("untraced")
	r2 := e.request(k2)
	r2.TraceParent = ""
	require.NoError(t, e.s.CreateRequest(e.ctx, r2))
	require.Empty(t, e.get(t, k2).TraceParent)
}

func testReqCreateMinimal(t *testing.T, e *env) {
	k := e.key("minimal")
	r := storage.Request{Key: k, Status: storage.StatusQueued}
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
	got := e.get(t, k)
	requireRequest(t, r, got)
	require.Nil(t, got.Error)
	require.True(t, got.CreatedAt.IsZero())
	require.True(t, got.ExpiresAt.IsZero())
}

func testReqCreateExists(t *testing.T, e *env) {
	k := e.key("r")
	first := e.create(t, k)

	second := e.request(k)
	second.Action = "other"
	second.Payload = json.RawMessage(`"other"`)
	second.Status = storage.StatusRunning
	second.Attempt = 5
	err := e.s.CreateRequest(e.ctx, second)
	require.ErrorIs(t, err, storage.ErrExists)

	requireRequest(t, first, e.get(t, k), "nothing is overwritten")
}

func testReqGetMissing(t *testing.T, e *env) {
	_, err := e.s.GetRequest(e.ctx, e.key("missing"))
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testReqExpired(t *testing.T, e *env) {
	k := e.key("expired")
	r := e.request(k)
	r.ExpiresAt = e.at(-time.Minute)
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
	_, err := e.s.GetRequest(e.ctx, k)
	require.ErrorIs(t, err, storage.ErrNotFound)

	k = e.key("forever")
	r = e.request(k)
	require.True(t, r.ExpiresAt.IsZero())
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
	requireRequest(t, r, e.get(t, k))
}

func testReqKeyEncoding(t *testing.T, e *env) {
	for i, pair := range e.collidingKeys() {
		require.NotEqual(t, pair[0], pair[1])
		a, b := e.request(pair[0]), e.request(pair[1])
		a.Action, b.Action = "first", "second"
		a.Payload, b.Payload = json.RawMessage(`1`), json.RawMessage(`2`)
		require.NoError(t, e.s.CreateRequest(e.ctx, a), "pair %d", i)
		require.NoError(t, e.s.CreateRequest(e.ctx, b), "pair %d: keys %q and %q collide", i, pair[0].String(), pair[1].String())
		requireRequest(t, a, e.get(t, pair[0]), "pair %d", i)
		requireRequest(t, b, e.get(t, pair[1]), "pair %d", i)

		// Events and state are independent too.
		require.NoError(t, e.s.AppendEvent(e.ctx, pair[0], 0, e.progress(1, 10), 0))
		evs, err := e.s.ReadEvents(e.ctx, pair[1], 0, 0)
		require.NoError(t, err)
		require.Empty(t, evs, "pair %d", i)
		_, err = e.s.LastEvent(e.ctx, pair[1])
		require.ErrorIs(t, err, storage.ErrNotFound, "pair %d", i)
		e.claim(t, pair[1], 0)
		require.Equal(t, storage.StatusQueued, e.get(t, pair[0]).Status, "pair %d", i)
	}
}

func testReqPrincipalScope(t *testing.T, e *env) {
	id := e.p + "shared-id"
	keys := []storage.Key{
		{Tenant: e.p + "t1", Subject: "alice", ID: id},
		{Tenant: e.p + "t2", Subject: "alice", ID: id},
		{Tenant: e.p + "t1", Subject: "bob", ID: id},
	}
	for i, k := range keys {
		r := e.request(k)
		r.Action = "action-" + itoa(int64(i))
		require.NoError(t, e.s.CreateRequest(e.ctx, r))
	}
	for i, k := range keys {
		require.Equal(t, "action-"+itoa(int64(i)), e.get(t, k).Action)
	}

	// Claim the first, finish the second: the third is untouched.
	e.claim(t, keys[0], 0)
	require.NoError(t, e.s.FinishRequest(e.ctx, keys[1], e.succeed(0, 1, `"done"`)))

	require.Equal(t, storage.StatusRunning, e.get(t, keys[0]).Status)
	require.Equal(t, storage.StatusSucceeded, e.get(t, keys[1]).Status)
	third := e.get(t, keys[2])
	require.Equal(t, storage.StatusQueued, third.Status)
	require.Equal(t, 0, third.Attempt)
	require.Empty(t, e.events(t, keys[0]))
	require.Len(t, e.events(t, keys[1]), 1)
	require.Empty(t, e.events(t, keys[2]))
}

func testReqIsolation(t *testing.T, e *env) {
	k := e.key("r")
	r := e.request(k)
	r.Result = json.RawMessage(`{"x":1}`)
	r.Error = &storage.ErrorInfo{Code: "C", Message: "m", Details: json.RawMessage(`[1]`)}
	want := e.request(k)
	want.Result = json.RawMessage(`{"x":1}`)
	want.Error = &storage.ErrorInfo{Code: "C", Message: "m", Details: json.RawMessage(`[1]`)}
	require.NoError(t, e.s.CreateRequest(e.ctx, r))

	// Mutating what was written does not change the store.
	r.Payload[0] = 'X'
	r.Metadata["k"] = "changed"
	r.Principal[0] = 9
	r.Result[0] = 'X'
	r.Error.Code = "changed"
	r.Error.Details[0] = 'X'
	got := e.get(t, k)
	requireRequest(t, want, got)

	// Mutating what was read does not change the store.
	got.Payload[0] = 'X'
	got.Metadata["k"] = "changed"
	got.Metadata["new"] = "new"
	got.Principal[0] = 9
	got.Result[0] = 'X'
	got.Error.Code = "changed"
	got.Error.Details[0] = 'X'
	requireRequest(t, want, e.get(t, k))

	c := e.connection(e.conn("a"))
	require.NoError(t, e.s.PutConnection(e.ctx, c))
	wantConn := c
	wantConn.Principal = append([]byte(nil), c.Principal...)
	c.Principal[0] = 9
	gotConn, err := e.s.GetConnection(e.ctx, c.ID)
	require.NoError(t, err)
	requireConn(t, wantConn, gotConn)
	gotConn.Principal[0] = 9
	gotConn, err = e.s.GetConnection(e.ctx, c.ID)
	require.NoError(t, err)
	requireConn(t, wantConn, gotConn)
}

// --- claim ----------------------------------------------------------------

func testClaimQueued(t *testing.T, e *env) {
	k := e.key("r")
	r := e.create(t, k)

	got, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(time.Second), LeaseUntil: e.at(time.Minute)})
	require.NoError(t, err)

	want := r
	want.Status = storage.StatusRunning
	want.Attempt = 1
	want.LeaseUntil = e.at(time.Minute)
	want.UpdatedAt = e.at(time.Second)
	want.StartedAt = e.at(time.Second)
	requireRequest(t, want, got, "ClaimRequest returns the request as claimed")
	requireRequest(t, want, e.get(t, k), "the claim is stored")
}

func testClaimNotBefore(t *testing.T, e *env) {
	k := e.key("r")
	r := e.request(k)
	r.NotBefore = e.at(10 * time.Second)
	require.NoError(t, e.s.CreateRequest(e.ctx, r))

	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.now, LeaseUntil: e.at(time.Minute)})
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, r, e.get(t, k), "a failed claim changes nothing")

	got, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(11 * time.Second), LeaseUntil: e.at(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, storage.StatusRunning, got.Status)
	require.Equal(t, 1, got.Attempt)
}

func testClaimTwice(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	first := e.claim(t, k, 0)

	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(time.Second), LeaseUntil: e.at(2 * time.Minute)})
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, first, e.get(t, k))
}

func testClaimExpiredLeaseRunning(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	first := e.claim(t, k, 0) // lease until +1m
	require.Equal(t, 1, first.Attempt)

	got, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Minute), LeaseUntil: e.at(3 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, storage.StatusRunning, got.Status)
	require.Equal(t, 2, got.Attempt)
	require.True(t, got.LeaseUntil.Equal(e.at(3*time.Minute)), "lease %v", got.LeaseUntil)
	requireRequest(t, got, e.get(t, k))

	// The new lease holds.
	_, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2*time.Minute + time.Second), LeaseUntil: e.at(time.Hour)})
	require.ErrorIs(t, err, storage.ErrConflict)
}

func testClaimExpiredLeaseCanceling(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	canceling, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceling, canceling.Status)

	// While the lease holds, it cannot be claimed.
	_, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Second), LeaseUntil: e.at(time.Hour)})
	require.ErrorIs(t, err, storage.ErrConflict)

	got, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Minute), LeaseUntil: e.at(3 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceling, got.Status, "a canceling request stays canceling")
	require.Equal(t, 2, got.Attempt)
	require.True(t, got.LeaseUntil.Equal(e.at(3*time.Minute)))
	requireRequest(t, got, e.get(t, k))
}

func testClaimCanceledWhileQueued(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	_, err := e.s.CancelRequest(e.ctx, k, e.now)
	require.NoError(t, err)

	// A canceling request that never ran has no lease: it is claimable, so
	// a worker can finish it as canceled.
	got, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(time.Second), LeaseUntil: e.at(time.Minute)})
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceling, got.Status)
	require.Equal(t, 1, got.Attempt)
}

func testClaimFinished(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `true`)))
	before := e.get(t, k)

	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(time.Hour), LeaseUntil: e.at(2 * time.Hour)})
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, before, e.get(t, k))
}

func testClaimUnknown(t *testing.T, e *env) {
	_, err := e.s.ClaimRequest(e.ctx, e.key("unknown"), storage.Claim{Now: e.now, LeaseUntil: e.at(time.Minute)})
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testClaimConcurrent(t *testing.T, e *env) {
	const n = 16
	k := e.key("r")
	e.create(t, k)

	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.now, LeaseUntil: e.at(time.Minute)})
		})
	}
	close(start)
	wg.Wait()

	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
			continue
		}
		assert.ErrorIs(t, err, storage.ErrConflict)
	}
	require.Equal(t, 1, wins, "exactly one claim wins")
	got := e.get(t, k)
	require.Equal(t, 1, got.Attempt)
	require.Equal(t, storage.StatusRunning, got.Status)
}

// --- extend lease ---------------------------------------------------------

func testExtendLease(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0) // lease until +1m

	require.NoError(t, e.s.ExtendLease(e.ctx, k, 1, e.at(5*time.Minute)))
	got := e.get(t, k)
	require.True(t, got.LeaseUntil.Equal(e.at(5*time.Minute)), "lease %v", got.LeaseUntil)
	require.Equal(t, storage.StatusRunning, got.Status)
	require.Equal(t, claimed.Attempt, got.Attempt)

	// The extended lease holds past the old one.
	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Minute), LeaseUntil: e.at(time.Hour)})
	require.ErrorIs(t, err, storage.ErrConflict)

	// After a takeover, the old attempt cannot extend.
	_, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(6 * time.Minute), LeaseUntil: e.at(7 * time.Minute)})
	require.NoError(t, err)
	err = e.s.ExtendLease(e.ctx, k, 1, e.at(time.Hour))
	require.ErrorIs(t, err, storage.ErrConflict)
	require.True(t, e.get(t, k).LeaseUntil.Equal(e.at(7*time.Minute)))
	require.NoError(t, e.s.ExtendLease(e.ctx, k, 2, e.at(8*time.Minute)))
	require.True(t, e.get(t, k).LeaseUntil.Equal(e.at(8*time.Minute)))
}

func testExtendWrongAttempt(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0)
	for _, attempt := range []int{0, 2, -1} {
		err := e.s.ExtendLease(e.ctx, k, attempt, e.at(time.Hour))
		require.ErrorIs(t, err, storage.ErrConflict, "attempt %d", attempt)
	}
	requireRequest(t, claimed, e.get(t, k))
}

func testExtendCanceling(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	_, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
	require.NoError(t, err)

	require.NoError(t, e.s.ExtendLease(e.ctx, k, 1, e.at(5*time.Minute)))
	got := e.get(t, k)
	require.Equal(t, storage.StatusCanceling, got.Status)
	require.True(t, got.LeaseUntil.Equal(e.at(5*time.Minute)))
}

func testExtendQueued(t *testing.T, e *env) {
	k := e.key("r")
	r := e.create(t, k)
	err := e.s.ExtendLease(e.ctx, k, 0, e.at(time.Hour))
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, r, e.get(t, k))
}

func testExtendFinished(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `1`)))
	before := e.get(t, k)
	err := e.s.ExtendLease(e.ctx, k, 1, e.at(time.Hour))
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, before, e.get(t, k))
}

func testExtendUnknown(t *testing.T, e *env) {
	requireNotFoundOrConflict(t, e.s.ExtendLease(e.ctx, e.key("unknown"), 1, e.at(time.Hour)))
}

// --- requeue --------------------------------------------------------------

func testRequeue(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)

	nb := e.at(30 * time.Second)
	require.NoError(t, e.s.RequeueRequest(e.ctx, k, 1, nb))
	got := e.get(t, k)
	require.Equal(t, storage.StatusQueued, got.Status)
	require.True(t, got.NotBefore.Equal(nb), "not before %v", got.NotBefore)
	require.Equal(t, 1, got.Attempt, "requeue keeps the attempt count")

	// Not claimable before NotBefore, even though the old lease has expired.
	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Second), LeaseUntil: e.at(time.Hour)})
	require.ErrorIs(t, err, storage.ErrConflict)
	_, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(29 * time.Second), LeaseUntil: e.at(time.Hour)})
	require.ErrorIs(t, err, storage.ErrConflict)

	again, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(31 * time.Second), LeaseUntil: e.at(2 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, storage.StatusRunning, again.Status)
	require.Equal(t, 2, again.Attempt)

	// The old attempt cannot requeue any more.
	require.ErrorIs(t, e.s.RequeueRequest(e.ctx, k, 1, nb), storage.ErrConflict)
}

func testRequeueWrongAttempt(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0)
	for _, attempt := range []int{0, 2} {
		err := e.s.RequeueRequest(e.ctx, k, attempt, e.at(time.Minute))
		require.ErrorIs(t, err, storage.ErrConflict, "attempt %d", attempt)
	}
	requireRequest(t, claimed, e.get(t, k))
}

func testRequeueCanceling(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	canceling, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
	require.NoError(t, err)

	err = e.s.RequeueRequest(e.ctx, k, 1, e.at(time.Minute))
	require.ErrorIs(t, err, storage.ErrConflict, "a canceling request is not requeued")
	got := e.get(t, k)
	require.Equal(t, storage.StatusCanceling, got.Status)
	requireRequest(t, canceling, got)
}

func testRequeueQueued(t *testing.T, e *env) {
	k := e.key("r")
	r := e.create(t, k)
	err := e.s.RequeueRequest(e.ctx, k, 0, e.at(time.Minute))
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, r, e.get(t, k))
}

func testRequeueFinished(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `1`)))
	before := e.get(t, k)
	err := e.s.RequeueRequest(e.ctx, k, 1, e.at(time.Minute))
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, before, e.get(t, k))
}

func testRequeueUnknown(t *testing.T, e *env) {
	requireNotFoundOrConflict(t, e.s.RequeueRequest(e.ctx, e.key("unknown"), 1, e.at(time.Minute)))
}

// --- cancel ---------------------------------------------------------------

func testCancelQueued(t *testing.T, e *env) {
	k := e.key("r")
	r := e.create(t, k)
	got, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
	require.NoError(t, err)

	want := r
	want.Status = storage.StatusCanceling
	want.UpdatedAt = e.at(time.Second)
	requireRequest(t, want, got, "CancelRequest returns the request as updated")
	requireRequest(t, want, e.get(t, k))
}

func testCancelRunning(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0)
	got, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
	require.NoError(t, err)

	want := claimed
	want.Status = storage.StatusCanceling
	want.UpdatedAt = e.at(time.Second)
	requireRequest(t, want, got, "attempt and lease are kept")
	requireRequest(t, want, e.get(t, k))
}

func testCancelCanceling(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	_, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
	require.NoError(t, err)
	got, err := e.s.CancelRequest(e.ctx, k, e.at(2*time.Second))
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceling, got.Status)
	require.Equal(t, storage.StatusCanceling, e.get(t, k).Status)
}

func testCancelFinished(t *testing.T, e *env) {
	for _, st := range []storage.Status{storage.StatusSucceeded, storage.StatusFailed, storage.StatusCanceled} {
		k := e.key("r-" + string(st))
		e.create(t, k)
		e.claim(t, k, 0)
		f := e.succeed(1, 1, `{"v":1}`)
		f.Status = st
		if st != storage.StatusSucceeded {
			f.Event.Type = "error"
			f.Result = nil
			f.Error = &storage.ErrorInfo{Code: "CANCELED", Message: "canceled"}
		}
		require.NoError(t, e.s.FinishRequest(e.ctx, k, f))
		before := e.get(t, k)

		got, err := e.s.CancelRequest(e.ctx, k, e.at(time.Hour))
		require.NoError(t, err, "canceling a finished request is not an error")
		require.True(t, got.Status.Final())
		requireRequest(t, before, got, "a finished request is returned unchanged")
		requireRequest(t, before, e.get(t, k))
	}
}

func testCancelUnknown(t *testing.T, e *env) {
	_, err := e.s.CancelRequest(e.ctx, e.key("unknown"), e.now)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

// --- finish ---------------------------------------------------------------

func testFinishSucceeded(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0)
	p1, p2 := e.progress(1, 10), e.progress(2, 50)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 1, p1, 0))
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 1, p2, 0))

	f := e.succeed(1, 3, "{\"ok\": true, \"n\":  1}")
	require.NoError(t, e.s.FinishRequest(e.ctx, k, f))

	want := claimed
	want.Status = storage.StatusSucceeded
	want.Result = f.Result
	want.UpdatedAt = f.Now
	got := e.get(t, k)
	requireRequest(t, want, got)
	require.Equal(t, []byte(f.Result), []byte(got.Result), "result is kept byte for byte")

	requireEvents(t, []storage.Event{p1, p2, f.Event}, e.events(t, k))
	last, err := e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	requireEvents(t, []storage.Event{f.Event}, []storage.Event{last})
	require.True(t, last.Terminal())
}

func testFinishFailed(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0)
	f := storage.Finish{
		Attempt: 1,
		Event:   e.terminal(1, "error"),
		Status:  storage.StatusFailed,
		Error: &storage.ErrorInfo{
			Code:      "INTERNAL",
			Message:   "it broke",
			Details:   json.RawMessage(`{"retry_after":5}`),
			Retryable: true,
		},
		Now: e.at(3 * time.Second),
	}
	require.NoError(t, e.s.FinishRequest(e.ctx, k, f))

	want := claimed
	want.Status = storage.StatusFailed
	want.Error = f.Error
	want.UpdatedAt = f.Now
	requireRequest(t, want, e.get(t, k))
	requireEvents(t, []storage.Event{f.Event}, e.events(t, k))
}

func testFinishChunked(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	var want []storage.Event
	for i := int64(1); i <= 3; i++ {
		ev := storage.Event{Seq: i, Type: "result_chunk", Data: []byte(`{"index":` + itoa(i-1) + `}`), CreatedAt: e.now}
		require.NoError(t, e.s.AppendEvent(e.ctx, k, 1, ev, 0))
		want = append(want, ev)
	}
	f := storage.Finish{Attempt: 1, Event: e.terminal(4, "complete"), Status: storage.StatusSucceeded, ResultChunks: 3, Now: e.at(time.Second)}
	require.NoError(t, e.s.FinishRequest(e.ctx, k, f))

	got := e.get(t, k)
	require.Equal(t, storage.StatusSucceeded, got.Status)
	require.Equal(t, 3, got.ResultChunks)
	require.Empty(t, got.Result)
	requireEvents(t, append(want, f.Event), e.events(t, k))
}

func testFinishCanceled(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	_, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
	require.NoError(t, err)

	f := storage.Finish{
		Attempt: 1,
		Event:   e.terminal(1, "error"),
		Status:  storage.StatusCanceled,
		Error:   &storage.ErrorInfo{Code: "CANCELED", Message: "canceled by client"},
		Now:     e.at(2 * time.Second),
	}
	require.NoError(t, e.s.FinishRequest(e.ctx, k, f))
	got := e.get(t, k)
	require.Equal(t, storage.StatusCanceled, got.Status)
	require.Equal(t, f.Error, got.Error)
	requireEvents(t, []storage.Event{f.Event}, e.events(t, k))
}

func testFinishTwice(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `"first"`)))
	before := e.get(t, k)
	beforeEvents := e.events(t, k)

	second := storage.Finish{
		Attempt: 1,
		Event:   e.terminal(2, "error"),
		Status:  storage.StatusFailed,
		Error:   &storage.ErrorInfo{Code: "INTERNAL", Message: "second"},
		Now:     e.at(time.Hour),
	}
	require.ErrorIs(t, e.s.FinishRequest(e.ctx, k, second), storage.ErrConflict)
	// Same seq as the stored terminal event, and a finish that succeeds again.
	require.ErrorIs(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `"again"`)), storage.ErrConflict)

	requireRequest(t, before, e.get(t, k), "nothing changes")
	requireEvents(t, beforeEvents, e.events(t, k))
	last, err := e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	require.Equal(t, int64(1), last.Seq)
}

func testFinishSeqTaken(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0)
	p1 := e.progress(1, 10)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 1, p1, 0))

	require.ErrorIs(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `"x"`)), storage.ErrConflict)
	requireRequest(t, claimed, e.get(t, k), "the request stays live")
	requireEvents(t, []storage.Event{p1}, e.events(t, k))

	// With a free seq it finishes.
	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 2, `"x"`)))
	require.Equal(t, storage.StatusSucceeded, e.get(t, k).Status)
}

func testFinishUnknown(t *testing.T, e *env) {
	k := e.key("unknown")
	requireNotFoundOrConflict(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `1`)))
	_, err := e.s.GetRequest(e.ctx, k)
	require.ErrorIs(t, err, storage.ErrNotFound, "finishing an unknown request creates nothing")
}

func testFinishConcurrent(t *testing.T, e *env) {
	const n = 8
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)

	errs := make([]error, n)
	finishes := make([]storage.Finish, n)
	for i := range n {
		// Distinct seqs: only the request's state can stop the losers.
		finishes[i] = e.succeed(1, int64(i+1), `{"winner":`+itoa(int64(i))+`}`)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = e.s.FinishRequest(e.ctx, k, finishes[i])
		})
	}
	close(start)
	wg.Wait()

	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "two finishes won: %d and %d", winner, i)
			winner = i
			continue
		}
		require.ErrorIs(t, err, storage.ErrConflict)
	}
	require.NotEqual(t, -1, winner, "no finish won")

	evs := e.events(t, k)
	require.Len(t, evs, 1, "exactly one terminal event")
	requireEvents(t, []storage.Event{finishes[winner].Event}, evs)
	got := e.get(t, k)
	require.Equal(t, storage.StatusSucceeded, got.Status)
	require.Equal(t, []byte(finishes[winner].Result), []byte(got.Result))
}

// testFinishWrongAttempt: a finish fenced with an attempt other than the
// request's conflicts and writes nothing, whether the request was claimed
// or not; a finish without a claim (a cancel) passes attempt 0.
func testFinishWrongAttempt(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0)
	p1 := e.progress(1, 10)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 1, p1, 0))
	for _, attempt := range []int{0, 2, -1} {
		err := e.s.FinishRequest(e.ctx, k, e.succeed(attempt, 2, `"x"`))
		require.ErrorIs(t, err, storage.ErrConflict, "attempt %d", attempt)
	}
	requireRequest(t, claimed, e.get(t, k), "nothing is written")
	requireEvents(t, []storage.Event{p1}, e.events(t, k))
	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 2, `"x"`)))
	require.Equal(t, storage.StatusSucceeded, e.get(t, k).Status)

	// Never claimed: the request's attempt is 0.
	q := e.key("canceled")
	e.create(t, q)
	canceling, err := e.s.CancelRequest(e.ctx, q, e.at(time.Second))
	require.NoError(t, err)
	cancel := storage.Finish{
		Attempt: 1,
		Event:   e.terminal(1, "error"),
		Status:  storage.StatusCanceled,
		Error:   &storage.ErrorInfo{Code: "CANCELED", Message: "canceled"},
		Now:     e.at(2 * time.Second),
	}
	require.ErrorIs(t, e.s.FinishRequest(e.ctx, q, cancel), storage.ErrConflict)
	requireRequest(t, canceling, e.get(t, q), "nothing is written")
	require.Empty(t, e.events(t, q))
	cancel.Attempt = 0
	require.NoError(t, e.s.FinishRequest(e.ctx, q, cancel))
	require.Equal(t, storage.StatusCanceled, e.get(t, q).Status)
	requireEvents(t, []storage.Event{cancel.Event}, e.events(t, q))
}

// --- fencing --------------------------------------------------------------

// testFencingSuperseded: a run whose lease passed and whose request was
// claimed again (attempt 2) can write nothing more, while the new run
// writes as usual.
func testFencingSuperseded(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	first := e.claim(t, k, 0) // attempt 1, lease until +1m
	require.Equal(t, 1, first.Attempt)
	p1 := e.progress(1, 10)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 1, p1, 0))

	second, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Minute), LeaseUntil: e.at(3 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, 2, second.Attempt)

	// Attempt 1 wakes up: every write of its run is refused, even with a
	// free seq.
	err = e.s.AppendEvent(e.ctx, k, 1, e.progress(2, 20), 0)
	require.ErrorIs(t, err, storage.ErrConflict, "append of the old run")
	require.ErrorIs(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 2, `"old"`)), storage.ErrConflict, "finish of the old run")
	require.ErrorIs(t, e.s.ExtendLease(e.ctx, k, 1, e.at(time.Hour)), storage.ErrConflict, "lease of the old run")
	require.ErrorIs(t, e.s.RequeueRequest(e.ctx, k, 1, e.at(time.Hour)), storage.ErrConflict, "requeue of the old run")
	requireRequest(t, second, e.get(t, k), "the old run wrote nothing")
	requireEvents(t, []storage.Event{p1}, e.events(t, k))

	// Attempt 2 writes.
	p2 := e.progress(2, 20)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 2, p2, 0))
	require.NoError(t, e.s.ExtendLease(e.ctx, k, 2, e.at(4*time.Minute)))
	require.True(t, e.get(t, k).LeaseUntil.Equal(e.at(4*time.Minute)))
	f := e.succeed(2, 3, `"new"`)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, f))
	got := e.get(t, k)
	require.Equal(t, storage.StatusSucceeded, got.Status)
	require.Equal(t, 2, got.Attempt)
	require.Equal(t, []byte(`"new"`), []byte(got.Result))
	requireEvents(t, []storage.Event{p1, p2, f.Event}, e.events(t, k))
}

// testFencingCanceledTakeover: fencing holds for a canceling request taken
// over: only the new run may finish it as canceled.
func testFencingCanceledTakeover(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	_, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
	require.NoError(t, err)
	second, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Minute), LeaseUntil: e.at(3 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceling, second.Status)

	f := storage.Finish{
		Attempt: 1,
		Event:   e.terminal(1, "error"),
		Status:  storage.StatusCanceled,
		Error:   &storage.ErrorInfo{Code: "CANCELED", Message: "canceled"},
		Now:     e.at(2*time.Minute + time.Second),
	}
	require.ErrorIs(t, e.s.FinishRequest(e.ctx, k, f), storage.ErrConflict)
	require.ErrorIs(t, e.s.ExtendLease(e.ctx, k, 1, e.at(time.Hour)), storage.ErrConflict)
	requireRequest(t, second, e.get(t, k))
	require.Empty(t, e.events(t, k))

	f.Attempt = 2
	require.NoError(t, e.s.FinishRequest(e.ctx, k, f))
	require.Equal(t, storage.StatusCanceled, e.get(t, k).Status)
	requireEvents(t, []storage.Event{f.Event}, e.events(t, k))
}

// --- stalls ---------------------------------------------------------------

// requireStalls checks the claimed request's Stalls and that the claim
// stored it.
func (e *env) requireStalls(t *testing.T, want int, claimed storage.Request, msg string) {
	t.Helper()
	require.Equal(t, want, claimed.Stalls, "%s: as claimed", msg)
	require.Equal(t, want, e.get(t, claimed.Key).Stalls, "%s: as stored", msg)
}

// testStallsQueued: claiming a queued request is not a stall, nor is
// claiming it again after a requeue.
func testStallsQueued(t *testing.T, e *env) {
	k := e.key("r")
	r := e.create(t, k)
	require.Zero(t, r.Stalls)
	claimed := e.claim(t, k, 0)
	e.requireStalls(t, 0, claimed, "claim of a queued request")

	require.NoError(t, e.s.RequeueRequest(e.ctx, k, 1, e.at(30*time.Second)))
	again, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(31 * time.Second), LeaseUntil: e.at(2 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, 2, again.Attempt)
	e.requireStalls(t, 0, again, "claim after a requeue")
}

// testStallsTakeover: each takeover of a running or canceling request
// whose lease passed counts one stall.
func testStallsTakeover(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0) // lease until +1m

	got, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Minute), LeaseUntil: e.at(3 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, 2, got.Attempt)
	e.requireStalls(t, 1, got, "first takeover")

	got, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(4 * time.Minute), LeaseUntil: e.at(5 * time.Minute)})
	require.NoError(t, err)
	e.requireStalls(t, 2, got, "second takeover")

	_, err = e.s.CancelRequest(e.ctx, k, e.at(4*time.Minute+time.Second))
	require.NoError(t, err)
	got, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(6 * time.Minute), LeaseUntil: e.at(7 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, storage.StatusCanceling, got.Status)
	require.Equal(t, 4, got.Attempt)
	e.requireStalls(t, 3, got, "takeover of a canceling request")
}

// testStallsStalled: a claim with Claim.Stalled counts one stall, from
// queued too, and at most one when it is also a takeover.
func testStallsStalled(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	got, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.now, LeaseUntil: e.at(time.Minute), Stalled: true})
	require.NoError(t, err)
	require.Equal(t, storage.StatusRunning, got.Status)
	require.Equal(t, 1, got.Attempt)
	e.requireStalls(t, 1, got, "stalled claim of a queued request")

	got, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Minute), LeaseUntil: e.at(3 * time.Minute), Stalled: true})
	require.NoError(t, err)
	require.Equal(t, 2, got.Attempt)
	e.requireStalls(t, 2, got, "stalled takeover: one stall, not two")

	require.NoError(t, e.s.RequeueRequest(e.ctx, k, 2, e.at(3*time.Minute)))
	got, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(4 * time.Minute), LeaseUntil: e.at(5 * time.Minute), Stalled: true})
	require.NoError(t, err)
	require.Equal(t, 3, got.Attempt)
	e.requireStalls(t, 3, got, "stalled claim of a requeued request")

	require.NoError(t, e.s.RequeueRequest(e.ctx, k, 3, e.at(5*time.Minute)))
	got, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(6 * time.Minute), LeaseUntil: e.at(7 * time.Minute)})
	require.NoError(t, err)
	e.requireStalls(t, 3, got, "plain claim of a requeued request")
}

// testStallsRejected: a claim that is refused counts no stall.
func testStallsRejected(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	claimed := e.claim(t, k, 0) // lease until +1m
	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(time.Second), LeaseUntil: e.at(time.Hour), Stalled: true})
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, claimed, e.get(t, k), "a refused claim changes nothing")

	nb := e.key("not-before")
	r := e.request(nb)
	r.NotBefore = e.at(time.Hour)
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
	_, err = e.s.ClaimRequest(e.ctx, nb, storage.Claim{Now: e.now, LeaseUntil: e.at(time.Minute), Stalled: true})
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, r, e.get(t, nb))

	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `1`)))
	before := e.get(t, k)
	_, err = e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(time.Hour), LeaseUntil: e.at(2 * time.Hour), Stalled: true})
	require.ErrorIs(t, err, storage.ErrConflict)
	requireRequest(t, before, e.get(t, k))
}

// --- events ---------------------------------------------------------------

func testEventAppendRead(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	var all []storage.Event
	for i := int64(1); i <= 10; i++ {
		ev := storage.Event{
			Seq:        i,
			Type:       "progress",
			Percentage: float64(i)*10 - 0.5,
			Message:    "step ✓ " + itoa(i),
			Data:       []byte(`{"type":"progress","seq":` + itoa(i) + `}`),
			CreatedAt:  e.at(time.Duration(i) * time.Millisecond),
		}
		if i%2 == 0 {
			ev.ExpiresAt = e.at(1000 * time.Hour)
		}
		require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, ev, 0))
		all = append(all, ev)
	}

	for _, tc := range []struct {
		after int64
		limit int
		want  []storage.Event
	}{
		{0, 0, all},
		{0, -1, all},
		{0, 100, all},
		{-5, 0, all},
		{3, 0, all[3:]},
		{3, 2, all[3:5]},
		{0, 1, all[:1]},
		{9, 5, all[9:]},
		{10, 0, nil},
		{50, 3, nil},
	} {
		got, err := e.s.ReadEvents(e.ctx, k, tc.after, tc.limit)
		require.NoError(t, err, "after %d limit %d", tc.after, tc.limit)
		if len(tc.want) == 0 {
			require.Empty(t, got, "after %d limit %d", tc.after, tc.limit)
			continue
		}
		requireEvents(t, tc.want, got)
	}
}

func testEventOrder(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	// Out of order and across byte boundaries of the seq's encoding.
	for _, seq := range []int64{256, 1, 65536, 2, 255, 257, 1 << 33} {
		require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, e.progress(seq, 1), 0))
	}
	require.Equal(t, []int64{1, 2, 255, 256, 257, 65536, 1 << 33}, seqs(e.events(t, k)))

	got, err := e.s.ReadEvents(e.ctx, k, 255, 2)
	require.NoError(t, err)
	require.Equal(t, []int64{256, 257}, seqs(got))

	last, err := e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	require.Equal(t, int64(1<<33), last.Seq)
}

// testEventSubscribersChanged: every Subscribe to a request advances its
// SubsVersion, and AppendEvent refuses a stale version, writing nothing,
// with the current one in the error.
func testEventSubscribersChanged(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	r, err := e.s.GetRequest(e.ctx, k)
	require.NoError(t, err)
	require.Zero(t, r.SubsVersion)

	require.NoError(t, e.s.Subscribe(e.ctx, k, e.conn("a"), e.later()))
	require.NoError(t, e.s.Subscribe(e.ctx, k, e.conn("a"), e.later()))
	r, err = e.s.GetRequest(e.ctx, k)
	require.NoError(t, err)
	require.Equal(t, int64(2), r.SubsVersion, "each Subscribe advances the version")

	err = e.s.AppendEvent(e.ctx, k, 0, e.progress(1, 10), 0)
	require.ErrorIs(t, err, storage.ErrSubscribersChanged)
	require.NotErrorIs(t, err, storage.ErrConflict)
	var sce *storage.SubscribersChangedError
	require.ErrorAs(t, err, &sce)
	require.Equal(t, int64(2), sce.Version)
	require.Empty(t, e.events(t, k), "nothing written")

	require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, e.progress(1, 10), 2))
	require.Len(t, e.events(t, k), 1)

	// Subscribing to a request that does not exist is still fine.
	require.NoError(t, e.s.Subscribe(e.ctx, e.key("missing"), e.conn("b"), e.later()))
}

func testEventSeqTaken(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	first := e.progress(1, 10)
	first.Message = "first"
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, first, 0))

	second := e.progress(1, 20)
	second.Message = "second"
	require.ErrorIs(t, e.s.AppendEvent(e.ctx, k, 0, second, 0), storage.ErrConflict)
	requireEvents(t, []storage.Event{first}, e.events(t, k))
}

func testEventAfterFinish(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	f := e.succeed(1, 1, `1`)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, f))

	require.ErrorIs(t, e.s.AppendEvent(e.ctx, k, 1, e.progress(2, 99), 0), storage.ErrConflict)
	requireEvents(t, []storage.Event{f.Event}, e.events(t, k))
}

func testEventUnknownRequest(t *testing.T, e *env) {
	k := e.key("unknown")
	require.ErrorIs(t, e.s.AppendEvent(e.ctx, k, 0, e.progress(1, 1), 0), storage.ErrNotFound)

	evs, err := e.s.ReadEvents(e.ctx, k, 0, 0)
	if err != nil {
		require.ErrorIs(t, err, storage.ErrNotFound)
	}
	require.Empty(t, evs)

	_, err = e.s.LastEvent(e.ctx, k)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testEventLast(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	_, err := e.s.LastEvent(e.ctx, k)
	require.ErrorIs(t, err, storage.ErrNotFound, "empty log")

	var ev storage.Event
	for i := int64(1); i <= 3; i++ {
		ev = e.progress(i, float64(i))
		require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, ev, 0))
		last, err := e.s.LastEvent(e.ctx, k)
		require.NoError(t, err)
		requireEvents(t, []storage.Event{ev}, []storage.Event{last})
	}

	// The highest seq, not the latest written.
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, e.progress(5, 5), 0))
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, e.progress(4, 4), 0))
	last, err := e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	require.Equal(t, int64(5), last.Seq)
}

func testEventLargeData(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	data := make([]byte, 200<<10)
	_, err := rand.Read(data)
	require.NoError(t, err)
	data[0], data[len(data)-1] = 0, 0

	ev := e.progress(1, 50)
	ev.Data = data
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, ev, 0))

	evs := e.events(t, k)
	require.Len(t, evs, 1)
	require.Equal(t, data, evs[0].Data, "data round-trips byte for byte")
	last, err := e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	require.Equal(t, data, last.Data)
}

func testEventIsolation(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	ev := e.progress(1, 10)
	want := ev
	want.Data = append([]byte(nil), ev.Data...)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 0, ev, 0))

	ev.Data[0] = 'X'
	evs := e.events(t, k)
	requireEvents(t, []storage.Event{want}, evs)
	evs[0].Data[0] = 'X'
	last, err := e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	last.Data[1] = 'X'
	requireEvents(t, []storage.Event{want}, e.events(t, k))
}

// testEventWrongAttempt: an append fenced with an attempt other than the
// request's conflicts and writes nothing; the fence is checked before the
// subscriber version, so a superseded run is told to stop, not to re-read
// the subscribers.
func testEventWrongAttempt(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	require.ErrorIs(t, e.s.AppendEvent(e.ctx, k, 1, e.progress(1, 1), 0), storage.ErrConflict, "never claimed: attempt 0")
	e.claim(t, k, 0)
	require.NoError(t, e.s.Subscribe(e.ctx, k, e.conn("a"), e.later()))
	for _, attempt := range []int{0, 2, -1} {
		err := e.s.AppendEvent(e.ctx, k, attempt, e.progress(1, 1), 0)
		require.ErrorIs(t, err, storage.ErrConflict, "attempt %d", attempt)
		require.NotErrorIs(t, err, storage.ErrSubscribersChanged, "attempt %d", attempt)
	}
	require.Empty(t, e.events(t, k), "nothing written")
	ev := e.progress(1, 1)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 1, ev, 1))
	requireEvents(t, []storage.Event{ev}, e.events(t, k))
}

// testEventRecreatedAfterExpiry: a request created again after an earlier
// one with the same key expired, before anything deleted the old items,
// starts with an empty log: reads leave the old run's events out and their
// seqs are free. Expiry is by the store's clock, so the old request expires
// in real time.
func testEventRecreatedAfterExpiry(t *testing.T, e *env) {
	var k storage.Key
	var exp time.Time
	// The old run's writes must land before it expires: a slow store gets
	// a longer window.
	for window := time.Second; ; window *= 2 {
		require.LessOrEqual(t, window, 32*time.Second, "the store is too slow to set up a request before it expires")
		k = e.key("r-" + window.String())
		exp = time.Now().Add(window).Truncate(time.Millisecond)
		if setupExpiring(t, e, k, exp) && time.Now().Before(exp) {
			break
		}
	}
	deadline := time.Now().Add(time.Minute)
	for {
		_, err := e.s.GetRequest(e.ctx, k)
		if errors.Is(err, storage.ErrNotFound) {
			break
		}
		require.NoError(t, err)
		require.True(t, time.Now().Before(deadline), "the request never expired (ExpiresAt %v)", exp)
		time.Sleep(50 * time.Millisecond)
	}
	evs, err := e.s.ReadEvents(e.ctx, k, 0, 0)
	if err != nil {
		require.ErrorIs(t, err, storage.ErrNotFound)
	}
	require.Empty(t, evs, "the expired request's events are gone")

	fresh := e.request(k)
	fresh.Action = "again"
	require.NoError(t, e.s.CreateRequest(e.ctx, fresh))
	claimed := e.claim(t, k, 0)
	require.Equal(t, 1, claimed.Attempt, "a fresh request")
	require.Equal(t, "again", claimed.Action)
	_, err = e.s.LastEvent(e.ctx, k)
	require.ErrorIs(t, err, storage.ErrNotFound, "a fresh request has no events")

	p1 := e.progress(1, 10)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, 1, p1, 0), "seq 1 is free again")
	requireEvents(t, []storage.Event{p1}, e.events(t, k))
	last, err := e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	requireEvents(t, []storage.Event{p1}, []storage.Event{last})

	f := e.succeed(1, 2, `"again"`)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, f), "seq 2 is free again")
	requireEvents(t, []storage.Event{p1, f.Event}, e.events(t, k))
	last, err = e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	requireEvents(t, []storage.Event{f.Event}, []storage.Event{last})
	require.Equal(t, storage.StatusSucceeded, e.get(t, k).Status)
}

// setupExpiring creates k expiring at exp, claims it and appends four
// events expiring with it (more than the next run writes). It reports
// false when the request expired before the setup was done.
func setupExpiring(t *testing.T, e *env, k storage.Key, exp time.Time) bool {
	t.Helper()
	r := e.request(k)
	r.ExpiresAt = exp
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.now, LeaseUntil: e.at(time.Minute)})
	if errors.Is(err, storage.ErrNotFound) {
		return false
	}
	require.NoError(t, err)
	for seq := int64(1); seq <= 4; seq++ {
		ev := e.progress(seq, float64(seq))
		ev.Message = "old run"
		ev.ExpiresAt = exp
		err := e.s.AppendEvent(e.ctx, k, 1, ev, 0)
		if errors.Is(err, storage.ErrNotFound) {
			return false
		}
		require.NoError(t, err)
	}
	return true
}

// --- optional capabilities -----------------------------------------------

func testListUnfinished(t *testing.T, e *env) {
	l, ok := e.s.(storage.Lister)
	if !ok {
		t.Skip("store does not implement storage.Lister")
	}
	queued, running, canceling, done, expired := e.key("queued"), e.key("running"), e.key("canceling"), e.key("done"), e.key("expired")
	for _, k := range []storage.Key{queued, running, canceling, done} {
		e.create(t, k)
	}
	e.claim(t, running, 0)
	_, err := e.s.CancelRequest(e.ctx, canceling, e.now)
	require.NoError(t, err)
	require.NoError(t, e.s.FinishRequest(e.ctx, done, e.succeed(0, 1, `1`)))
	r := e.request(expired)
	r.ExpiresAt = e.at(-time.Minute)
	require.NoError(t, e.s.CreateRequest(e.ctx, r))

	list, err := l.ListUnfinished(e.ctx)
	require.NoError(t, err)
	found := map[storage.Key]storage.Request{}
	for _, r := range list {
		require.False(t, r.Status.Final(), "ListUnfinished returned %v in state %s", r.Key, r.Status)
		found[r.Key] = r
	}
	for _, k := range []storage.Key{queued, running, canceling} {
		got, ok := found[k]
		require.True(t, ok, "%v is unfinished but not listed", k)
		requireRequest(t, e.get(t, k), got)
	}
	require.NotContains(t, found, done)
	require.NotContains(t, found, expired, "expired requests are not listed")
}

// testListDue checks which requests ListDue lists: queued ones whose
// NotBefore is before the time given, running and canceling ones whose
// lease is, as every write (create, claim, extend, requeue, cancel, finish)
// leaves them; never finished or expired ones.
func testListDue(t *testing.T, e *env) {
	l, ok := e.s.(storage.DueLister)
	if !ok {
		t.Skip("store does not implement storage.DueLister")
	}
	before := e.at(10 * time.Minute)
	due := map[storage.Key]bool{} // our requests, and whether they are due before before
	create := func(name string, edit func(r *storage.Request)) storage.Key {
		r := e.request(e.key(name))
		if edit != nil {
			edit(&r)
		}
		require.NoError(t, e.s.CreateRequest(e.ctx, r))
		due[r.Key] = false
		return r.Key
	}
	claim := func(k storage.Key, lease time.Duration) {
		_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.now, LeaseUntil: e.at(lease)})
		require.NoError(t, err)
	}
	cancel := func(k storage.Key) {
		_, err := e.s.CancelRequest(e.ctx, k, e.at(time.Second))
		require.NoError(t, err)
	}

	due[create("queued", nil)] = true
	due[create("queued-soon", func(r *storage.Request) { r.NotBefore = e.at(5 * time.Minute) })] = true
	create("queued-later", func(r *storage.Request) { r.NotBefore = e.at(time.Hour) })
	create("queued-at-before", func(r *storage.Request) { r.NotBefore = before })

	k := create("running", nil)
	claim(k, time.Minute)
	due[k] = true
	k = create("running-held", nil)
	claim(k, time.Hour)
	k = create("running-extended", nil)
	claim(k, time.Minute)
	require.NoError(t, e.s.ExtendLease(e.ctx, k, 1, e.at(time.Hour)))
	k = create("running-lease-at-before", nil)
	claim(k, 10*time.Minute)

	k = create("canceling", nil)
	claim(k, time.Minute)
	cancel(k)
	due[k] = true
	k = create("canceling-held", nil)
	claim(k, time.Hour)
	cancel(k)
	k = create("canceled-while-queued", nil)
	cancel(k)
	due[k] = true // no lease: a processor may claim it and finish it as canceled

	k = create("requeued-soon", nil)
	claim(k, time.Minute)
	require.NoError(t, e.s.RequeueRequest(e.ctx, k, 1, e.at(5*time.Minute)))
	due[k] = true
	k = create("requeued-later", nil)
	claim(k, time.Minute)
	require.NoError(t, e.s.RequeueRequest(e.ctx, k, 1, e.at(time.Hour)))

	k = create("succeeded", nil)
	claim(k, time.Minute)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `1`)))
	k = create("canceled", nil)
	cancel(k)
	require.NoError(t, e.s.FinishRequest(e.ctx, k, storage.Finish{
		Event: e.terminal(1, "error"), Status: storage.StatusCanceled,
		Error: &storage.ErrorInfo{Code: "CANCELED", Message: "canceled"}, Now: e.at(2 * time.Second),
	}))

	// Created in a state, not moved there.
	due[create("created-running", func(r *storage.Request) {
		r.Status, r.Attempt, r.LeaseUntil = storage.StatusRunning, 1, e.at(time.Minute)
	})] = true
	due[create("created-canceling", func(r *storage.Request) {
		r.Status, r.Attempt, r.LeaseUntil = storage.StatusCanceling, 1, e.at(time.Minute)
	})] = true
	create("created-failed", func(r *storage.Request) { r.Status = storage.StatusFailed })
	create("expired", func(r *storage.Request) { r.ExpiresAt = e.at(-time.Minute) })
	create("expired-running", func(r *storage.Request) {
		r.Status, r.Attempt, r.LeaseUntil, r.ExpiresAt = storage.StatusRunning, 1, e.at(-time.Hour), e.at(-time.Minute)
	})

	check := func(before time.Time, want map[storage.Key]bool) {
		t.Helper()
		list, err := l.ListDue(e.ctx, before, 0)
		require.NoError(t, err)
		now := time.Now()
		found := map[storage.Key]storage.Request{}
		for _, r := range list {
			require.True(t, storage.Due(r, before), "%v (%s, not before %v, lease until %v) is not due before %v",
				r.Key, r.Status, r.NotBefore, r.LeaseUntil, before)
			require.False(t, !r.ExpiresAt.IsZero() && r.ExpiresAt.Before(now), "%v has expired", r.Key)
			require.NotContains(t, found, r.Key, "listed twice")
			found[r.Key] = r
		}
		for k, isDue := range want {
			got, listed := found[k]
			if !isDue {
				require.False(t, listed, "%s is listed but not due before %v", k.ID, before)
				continue
			}
			require.True(t, listed, "%s is due before %v but not listed", k.ID, before)
			requireRequest(t, e.get(t, k), got, "ListDue returns the whole request")
		}
	}
	check(before, due)

	// Earlier, fewer are due: the queued and requeued ones due at +5m are
	// not due before +2m.
	early := maps.Clone(due)
	early[e.key("queued-soon")] = false
	early[e.key("requeued-soon")] = false
	check(e.at(2*time.Minute), early)

	// Before they were created, none is due: a new request (no NotBefore)
	// is due from its creation, not from the zero time.
	none := map[storage.Key]bool{}
	for k := range due {
		none[k] = false
	}
	check(e.at(-time.Minute), none)
}

// testListDueLimit: ListDue returns at most limit requests.
func testListDueLimit(t *testing.T, e *env) {
	l, ok := e.s.(storage.DueLister)
	if !ok {
		t.Skip("store does not implement storage.DueLister")
	}
	for _, name := range []string{"a", "b", "c"} {
		e.create(t, e.key(name)) // queued, due whenever
	}
	before := e.at(time.Minute)
	for _, limit := range []int{1, 2, 3} {
		list, err := l.ListDue(e.ctx, before, limit)
		require.NoError(t, err)
		require.Len(t, list, limit, "at least 3 requests are due")
		for _, r := range list {
			require.True(t, storage.Due(r, before))
		}
	}
	list, err := l.ListDue(e.ctx, before, 0)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(list), 3, "no limit")
}

func testSweep(t *testing.T, e *env) {
	sw, ok := e.s.(storage.Sweeper)
	if !ok {
		t.Skip("store does not implement storage.Sweeper")
	}
	soon := e.at(time.Hour)         // swept
	later := e.at(1000 * time.Hour) // kept
	sweepAt := e.at(2 * time.Hour)

	// A connection that expires soon, with a subscription, and one that
	// never does.
	goneConn, keptConn := e.connection(e.conn("gone")), e.connection(e.conn("kept"))
	goneConn.ExpiresAt = soon
	keptConn.ExpiresAt = time.Time{}
	require.NoError(t, e.s.PutConnection(e.ctx, goneConn))
	require.NoError(t, e.s.PutConnection(e.ctx, keptConn))

	// A request with two events that expires soon.
	goneReq := e.request(e.key("gone"))
	goneReq.ExpiresAt = soon
	require.NoError(t, e.s.CreateRequest(e.ctx, goneReq))
	for i := int64(1); i <= 2; i++ {
		ev := e.progress(i, 1)
		ev.ExpiresAt = soon
		require.NoError(t, e.s.AppendEvent(e.ctx, goneReq.Key, 0, ev, 0))
	}
	require.NoError(t, e.s.Subscribe(e.ctx, goneReq.Key, keptConn.ID, e.later()))
	require.NoError(t, e.s.Subscribe(e.ctx, e.key("kept"), goneConn.ID, e.later()))

	// A request kept, with one event that expires soon and two that do not.
	keptReq := e.request(e.key("kept"))
	keptReq.ExpiresAt = later
	require.NoError(t, e.s.CreateRequest(e.ctx, keptReq))

	// Subscriptions to the kept request: one expires soon, one expired soon
	// until it was extended, one never expires.
	subGone, subExtended, subForever := e.conn("sub-gone"), e.conn("sub-extended"), e.conn("sub-forever")
	require.NoError(t, e.s.Subscribe(e.ctx, keptReq.Key, subGone, soon))
	require.NoError(t, e.s.Subscribe(e.ctx, keptReq.Key, subExtended, soon))
	require.NoError(t, e.s.Subscribe(e.ctx, keptReq.Key, subExtended, later))
	require.NoError(t, e.s.Subscribe(e.ctx, keptReq.Key, subForever, time.Time{}))
	subs, err := e.s.Subscribers(e.ctx, keptReq.Key)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{goneConn.ID, subGone, subExtended, subForever}, subs, "before the sweep")
	ev1 := e.progress(1, 1)
	ev1.ExpiresAt = soon
	ev2, ev3 := e.progress(2, 2), e.progress(3, 3)
	ev2.ExpiresAt = later
	cur, err := e.s.GetRequest(e.ctx, keptReq.Key)
	require.NoError(t, err)
	require.NoError(t, e.s.AppendEvent(e.ctx, keptReq.Key, 0, ev1, cur.SubsVersion))
	require.NoError(t, e.s.AppendEvent(e.ctx, keptReq.Key, 0, ev2, cur.SubsVersion))
	require.NoError(t, e.s.AppendEvent(e.ctx, keptReq.Key, 0, ev3, cur.SubsVersion))

	n, err := sw.Sweep(e.ctx, sweepAt)
	require.NoError(t, err)
	// 1 connection, 1 request, 3 events and 1 subscription at least (the
	// store may be shared).
	require.GreaterOrEqual(t, n, 6)

	_, err = e.s.GetConnection(e.ctx, goneConn.ID)
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.GetRequest(e.ctx, goneReq.Key)
	require.ErrorIs(t, err, storage.ErrNotFound)
	evs, err := e.s.ReadEvents(e.ctx, goneReq.Key, 0, 0)
	if err != nil {
		require.ErrorIs(t, err, storage.ErrNotFound)
	}
	require.Empty(t, evs)
	keys, err := e.s.Subscriptions(e.ctx, goneConn.ID)
	require.NoError(t, err)
	require.Empty(t, keys, "a swept connection's subscriptions are gone")
	subs, err = e.s.Subscribers(e.ctx, goneReq.Key)
	require.NoError(t, err)
	require.Empty(t, subs, "a swept request's subscriptions are gone")
	keys, err = e.s.Subscriptions(e.ctx, keptConn.ID)
	require.NoError(t, err)
	require.Empty(t, keys, "a swept request's subscriptions are gone")
	// The swept connection's subscription and the expired one are gone
	// (the clock has not reached soon: only a deletion hides them).
	subs, err = e.s.Subscribers(e.ctx, keptReq.Key)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{subExtended, subForever}, subs, "an expired subscription is swept")
	keys, err = e.s.Subscriptions(e.ctx, subGone)
	require.NoError(t, err)
	require.Empty(t, keys, "an expired subscription is swept")
	keys, err = e.s.Subscriptions(e.ctx, subExtended)
	require.NoError(t, err)
	require.Equal(t, []storage.Key{keptReq.Key}, keys, "an extended subscription is kept")

	got, err := e.s.GetConnection(e.ctx, keptConn.ID)
	require.NoError(t, err)
	requireConn(t, keptConn, got)
	keptReq.SubsVersion = cur.SubsVersion
	requireRequest(t, keptReq, e.get(t, keptReq.Key))
	requireEvents(t, []storage.Event{ev2, ev3}, e.events(t, keptReq.Key))

	// Sweeping again at the same time finds none of ours; a fresh sweep
	// must not fail.
	_, err = sw.Sweep(e.ctx, sweepAt)
	require.NoError(t, err)
	requireRequest(t, keptReq, e.get(t, keptReq.Key))
}

// --- context --------------------------------------------------------------

func testContextCanceled(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	e.claim(t, k, 0)
	connID := e.conn("a")
	require.NoError(t, e.s.PutConnection(e.ctx, e.connection(connID)))

	ctx, cancel := context.WithCancel(e.ctx)
	cancel()

	newKey := e.key("new")
	calls := map[string]func() error{
		"PutConnection": func() error { return e.s.PutConnection(ctx, e.connection(e.conn("new"))) },
		"GetConnection": func() error { _, err := e.s.GetConnection(ctx, connID); return err },
		"DeleteConnection": func() error {
			return e.s.DeleteConnection(ctx, connID)
		},
		"Subscribe":     func() error { return e.s.Subscribe(ctx, k, connID, e.later()) },
		"Unsubscribe":   func() error { return e.s.Unsubscribe(ctx, k, connID) },
		"Subscribers":   func() error { _, err := e.s.Subscribers(ctx, k); return err },
		"Subscriptions": func() error { _, err := e.s.Subscriptions(ctx, connID); return err },
		"CreateRequest": func() error { return e.s.CreateRequest(ctx, e.request(newKey)) },
		"GetRequest":    func() error { _, err := e.s.GetRequest(ctx, k); return err },
		"ClaimRequest": func() error {
			_, err := e.s.ClaimRequest(ctx, k, storage.Claim{Now: e.at(time.Hour), LeaseUntil: e.at(2 * time.Hour)})
			return err
		},
		"ExtendLease":    func() error { return e.s.ExtendLease(ctx, k, 1, e.at(time.Hour)) },
		"RequeueRequest": func() error { return e.s.RequeueRequest(ctx, k, 1, e.at(time.Hour)) },
		"CancelRequest":  func() error { _, err := e.s.CancelRequest(ctx, k, e.now); return err },
		"FinishRequest":  func() error { return e.s.FinishRequest(ctx, k, e.succeed(1, 2, `1`)) },
		"AppendEvent":    func() error { return e.s.AppendEvent(ctx, k, 1, e.progress(1, 1), 0) },
		"ReadEvents":     func() error { _, err := e.s.ReadEvents(ctx, k, 0, 0); return err },
		"LastEvent":      func() error { _, err := e.s.LastEvent(ctx, k); return err },
	}
	if l, ok := e.s.(storage.Lister); ok {
		calls["ListUnfinished"] = func() error { _, err := l.ListUnfinished(ctx); return err }
	}
	if l, ok := e.s.(storage.DueLister); ok {
		calls["ListDue"] = func() error { _, err := l.ListDue(ctx, e.at(time.Hour), 0); return err }
	}
	if sw, ok := e.s.(storage.Sweeper); ok {
		// Sweep with a time before everything, so it would delete nothing
		// even if it ran.
		calls["Sweep"] = func() error { _, err := sw.Sweep(ctx, time.Unix(0, 0)); return err }
	}
	for _, name := range slices.Sorted(maps.Keys(calls)) {
		assert.Error(t, calls[name](), "%s with a canceled context", name)
	}

	// Nothing was written.
	_, err := e.s.GetConnection(e.ctx, e.conn("new"))
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = e.s.GetRequest(e.ctx, newKey)
	require.ErrorIs(t, err, storage.ErrNotFound)
	got := e.get(t, k)
	require.Equal(t, storage.StatusRunning, got.Status)
	require.Equal(t, 1, got.Attempt)
	require.Empty(t, e.events(t, k))
	_, err = e.s.GetConnection(e.ctx, connID)
	require.NoError(t, err)
}

// --- checkpoints and continuations -----------------------------------------

func testCheckpointSave(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	require.Nil(t, e.get(t, k).Checkpoint, "no checkpoint before one is saved")
	c := e.claim(t, k, 0)
	require.NoError(t, e.s.SaveCheckpoint(e.ctx, k, c.Attempt, json.RawMessage(`{"next":3}`)))
	require.NoError(t, e.s.SaveCheckpoint(e.ctx, k, c.Attempt, json.RawMessage(`{"next":4,"s":"ü"}`)))
	require.JSONEq(t, `{"next":4,"s":"ü"}`, string(e.get(t, k).Checkpoint), "the last checkpoint wins")
	require.Empty(t, e.events(t, k), "a checkpoint is not an event")

	// The next run's claim returns it.
	require.NoError(t, e.s.RequeueRequest(e.ctx, k, c.Attempt, e.at(time.Second)))
	c2 := e.claim(t, k, 2*time.Second)
	require.JSONEq(t, `{"next":4,"s":"ü"}`, string(c2.Checkpoint))

	// A canceling request still saves (its run is winding down).
	_, err := e.s.CancelRequest(e.ctx, k, e.at(3*time.Second))
	require.NoError(t, err)
	require.NoError(t, e.s.SaveCheckpoint(e.ctx, k, c2.Attempt, json.RawMessage(`{"next":5}`)))
	require.JSONEq(t, `{"next":5}`, string(e.get(t, k).Checkpoint))
}

func testCheckpointWithEvent(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	c := e.claim(t, k, 0)
	ev := e.progress(1, 10)
	ev.Checkpoint = json.RawMessage(`{"item":1}`)
	require.NoError(t, e.s.AppendEvent(e.ctx, k, c.Attempt, ev, 0))
	require.JSONEq(t, `{"item":1}`, string(e.get(t, k).Checkpoint), "the event saved the checkpoint")
	evs := e.events(t, k)
	require.Len(t, evs, 1)
	require.Nil(t, evs[0].Checkpoint, "events read back carry no checkpoint")
	last, err := e.s.LastEvent(e.ctx, k)
	require.NoError(t, err)
	require.Nil(t, last.Checkpoint)

	// An event without one keeps the checkpoint.
	require.NoError(t, e.s.AppendEvent(e.ctx, k, c.Attempt, e.progress(2, 20), 0))
	require.JSONEq(t, `{"item":1}`, string(e.get(t, k).Checkpoint))

	// A refused append saves nothing.
	ev = e.progress(2, 30)
	ev.Checkpoint = json.RawMessage(`{"item":99}`)
	require.ErrorIs(t, e.s.AppendEvent(e.ctx, k, c.Attempt, ev, 0), storage.ErrConflict, "seq 2 is taken")
	ev.Seq = 3
	require.Error(t, e.s.AppendEvent(e.ctx, k, c.Attempt+1, ev, 0), "wrong attempt")
	require.JSONEq(t, `{"item":1}`, string(e.get(t, k).Checkpoint), "refused appends saved no checkpoint")
}

func testCheckpointFenced(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	require.ErrorIs(t, e.s.SaveCheckpoint(e.ctx, k, 0, json.RawMessage(`1`)), storage.ErrConflict, "a queued request has no run")
	c := e.claim(t, k, 0)
	require.ErrorIs(t, e.s.SaveCheckpoint(e.ctx, k, c.Attempt+1, json.RawMessage(`1`)), storage.ErrConflict, "wrong attempt")
	// Taken over: the old run may no longer save.
	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(2 * time.Minute), LeaseUntil: e.at(3 * time.Minute)})
	require.NoError(t, err)
	require.ErrorIs(t, e.s.SaveCheckpoint(e.ctx, k, c.Attempt, json.RawMessage(`1`)), storage.ErrConflict, "superseded run")
	require.ErrorIs(t, e.s.ContinueRequest(e.ctx, k, c.Attempt, e.now), storage.ErrConflict, "superseded run")
	require.Nil(t, e.get(t, k).Checkpoint)
	require.Zero(t, e.get(t, k).Continuations)
	// Finished: nothing saves.
	require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(c.Attempt+1, 1, `{}`)))
	require.ErrorIs(t, e.s.SaveCheckpoint(e.ctx, k, c.Attempt+1, json.RawMessage(`1`)), storage.ErrConflict, "finished")
	requireNotFoundOrConflict(t, e.s.SaveCheckpoint(e.ctx, e.key("unknown"), 1, json.RawMessage(`1`)))
	requireNotFoundOrConflict(t, e.s.ContinueRequest(e.ctx, e.key("unknown"), 1, e.now))
}

func testCheckpointContinue(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	c := e.claim(t, k, 0)
	require.NoError(t, e.s.ContinueRequest(e.ctx, k, c.Attempt, e.at(time.Second)))
	got := e.get(t, k)
	require.Equal(t, storage.StatusQueued, got.Status)
	require.Equal(t, 1, got.Continuations)
	require.Equal(t, ms(e.at(time.Second)), ms(got.NotBefore))
	require.True(t, got.LeaseUntil.IsZero(), "the lease is cleared")
	_, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.now, LeaseUntil: e.at(time.Minute)})
	require.ErrorIs(t, err, storage.ErrConflict, "not claimable before its NotBefore")

	c = e.claim(t, k, 2*time.Second)
	require.Equal(t, 2, c.Attempt)
	require.Equal(t, 1, c.Continuations)
	require.NoError(t, e.s.RequeueRequest(e.ctx, k, c.Attempt, e.at(3*time.Second)))
	require.Equal(t, 1, e.get(t, k).Continuations, "a plain requeue is no continuation")
	c = e.claim(t, k, 4*time.Second)
	require.NoError(t, e.s.ContinueRequest(e.ctx, k, c.Attempt, e.at(4*time.Second)))
	require.Equal(t, 2, e.get(t, k).Continuations)

	// A canceling request is not continued.
	c = e.claim(t, k, 5*time.Second)
	_, err = e.s.CancelRequest(e.ctx, k, e.at(6*time.Second))
	require.NoError(t, err)
	require.ErrorIs(t, e.s.ContinueRequest(e.ctx, k, c.Attempt, e.at(7*time.Second)), storage.ErrConflict)
	require.Equal(t, storage.StatusCanceling, e.get(t, k).Status)
}

func testCheckpointStartedAt(t *testing.T, e *env) {
	k := e.key("r")
	e.create(t, k)
	require.True(t, e.get(t, k).StartedAt.IsZero(), "never claimed")
	c := e.claim(t, k, time.Second)
	require.Equal(t, ms(e.at(time.Second)), ms(c.StartedAt))
	require.NoError(t, e.s.ContinueRequest(e.ctx, k, c.Attempt, e.at(2*time.Second)))
	c = e.claim(t, k, 3*time.Second)
	require.Equal(t, ms(e.at(time.Second)), ms(c.StartedAt), "later claims keep the first")
	// A takeover keeps it too.
	c, err := e.s.ClaimRequest(e.ctx, k, storage.Claim{Now: e.at(5 * time.Minute), LeaseUntil: e.at(6 * time.Minute)})
	require.NoError(t, err)
	require.Equal(t, ms(e.at(time.Second)), ms(c.StartedAt))
	require.Equal(t, ms(e.at(time.Second)), ms(e.get(t, k).StartedAt))
}
