package storagetest

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
)

// The cases of [storage.PrincipalLister], run when the store implements it.
// Each lists the requests of principals unique to the subtest, so other
// tests' requests in a shared store are never listed.
func principalListerCases() []testCase {
	return []testCase{
		{"OrderAndPages", testListOrderAndPages},
		{"Fields", testListFields},
		{"StatusFilter", testListStatusFilter},
		{"PrincipalScope", testListPrincipalScope},
		{"Expired", testListExpired},
		{"DefaultLimit", testListDefaultLimit},
		{"NewerNotInLaterPages", testListNewerNotInLaterPages},
		{"BadCursor", testListBadCursor},
		{"Empty", testListEmpty},
		{"ContextCanceled", testListContextCanceled},
	}
}

func (e *env) lister(t *testing.T) storage.PrincipalLister {
	t.Helper()
	l, ok := e.s.(storage.PrincipalLister)
	if !ok {
		t.Skip("store does not implement storage.PrincipalLister")
	}
	return l
}

// listAll follows the cursors of a listing with page size limit to the
// end, checks that no page is larger than the limit, and returns the keys
// listed, in order, and how many pages it took.
func (e *env) listAll(t *testing.T, l storage.PrincipalLister, tenant, subject string, limit int, sts ...storage.Status) ([]storage.Key, int) {
	t.Helper()
	var keys []storage.Key
	q := storage.ListQuery{Statuses: sts, Limit: limit}
	for pages := 1; ; pages++ {
		page, err := l.ListRequests(e.ctx, tenant, subject, q)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Requests), q.PageSize(), "page %d is larger than the limit", pages)
		for _, r := range page.Requests {
			require.Equal(t, tenant, r.Key.Tenant, "another principal's request")
			require.Equal(t, subject, r.Key.Subject, "another principal's request")
			keys = append(keys, r.Key)
		}
		if page.Cursor == "" {
			return keys, pages
		}
		require.Less(t, pages, 1000, "the listing does not end")
		q.Cursor = page.Cursor
	}
}

// createAt stores a queued request under k created at at.
func (e *env) createAt(t *testing.T, k storage.Key, at time.Time, edit func(r *storage.Request)) {
	t.Helper()
	r := e.request(k)
	r.CreatedAt, r.UpdatedAt = at, at
	if edit != nil {
		edit(&r)
	}
	require.NoError(t, e.s.CreateRequest(e.ctx, r))
}

// ids returns the IDs of keys, nil when there are none.
func ids(keys []storage.Key) []string {
	var out []string
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}

// testListOrderAndPages: newest first by creation time, then by ID, both
// descending; every page size pages through the same list, each request
// once.
func testListOrderAndPages(t *testing.T, e *env) {
	l := e.lister(t)
	// Created out of order; b and c at the same millisecond, e 0.4 ms
	// after d (the same millisecond: the ID decides).
	created := map[string]time.Time{
		"a": e.at(-5 * time.Minute),
		"b": e.at(-time.Minute),
		"c": e.at(-time.Minute),
		"d": e.at(-3 * time.Minute),
		"e": e.at(-3*time.Minute + 400*time.Microsecond),
		"f": e.at(-10 * time.Minute),
		"g": e.at(0),
	}
	for _, name := range []string{"d", "a", "g", "c", "f", "b", "e"} {
		e.createAt(t, e.key(name), created[name], nil)
	}
	want := []string{"g", "c", "b", "e", "d", "a", "f"}
	for i := range want {
		want[i] = e.p + want[i]
	}
	k := e.key("x")
	for _, limit := range []int{1, 2, 3, 6, 7, 8, 100} {
		keys, pages := e.listAll(t, l, k.Tenant, k.Subject, limit)
		require.Equal(t, want, ids(keys), "limit %d", limit)
		require.GreaterOrEqual(t, pages, (len(want)+limit-1)/limit, "limit %d", limit)
	}
}

// testListFields: each listed request carries its action, current status,
// times, and the seq, percentage and message of its latest event.
func testListFields(t *testing.T, e *env) {
	l := e.lister(t)
	queued, running, done := e.key("queued"), e.key("running"), e.key("done")
	e.createAt(t, queued, e.at(-3*time.Second), func(r *storage.Request) { r.Action = "a1" })
	e.createAt(t, running, e.at(-2*time.Second), func(r *storage.Request) { r.Action = "a2" })
	e.createAt(t, done, e.at(-time.Second), func(r *storage.Request) { r.Action = "a3" })
	e.claim(t, running, time.Second)
	for seq := int64(1); seq <= 3; seq++ {
		ev := e.progress(seq, float64(seq)*10.5)
		ev.Message = "step " + itoa(seq)
		require.NoError(t, e.s.AppendEvent(e.ctx, running, 1, ev, 0))
	}
	e.claim(t, done, 2*time.Second)
	require.NoError(t, e.s.AppendEvent(e.ctx, done, 1, e.progress(1, 50), 0))
	require.NoError(t, e.s.FinishRequest(e.ctx, done, e.succeed(1, 2, `{"ok":true}`)))

	page, err := l.ListRequests(e.ctx, queued.Tenant, queued.Subject, storage.ListQuery{})
	require.NoError(t, err)
	require.Empty(t, page.Cursor, "one page")
	require.Len(t, page.Requests, 3)
	norm := func(r storage.ListedRequest) storage.ListedRequest {
		r.CreatedAt, r.UpdatedAt = ms(r.CreatedAt), ms(r.UpdatedAt)
		return r
	}
	require.Equal(t, storage.ListedRequest{
		Key: done, Action: "a3", Status: storage.StatusSucceeded, Seq: 2, Percentage: 100, Message: "done",
		CreatedAt: ms(e.at(-time.Second)), UpdatedAt: ms(e.at(5 * time.Second)),
	}, norm(page.Requests[0]))
	require.Equal(t, storage.ListedRequest{
		Key: running, Action: "a2", Status: storage.StatusRunning, Seq: 3, Percentage: 31.5, Message: "step 3",
		CreatedAt: ms(e.at(-2 * time.Second)), UpdatedAt: ms(e.at(time.Second)),
	}, norm(page.Requests[1]))
	require.Equal(t, storage.ListedRequest{
		Key: queued, Action: "a1", Status: storage.StatusQueued,
		CreatedAt: ms(e.at(-3 * time.Second)), UpdatedAt: ms(e.at(-3 * time.Second)),
	}, norm(page.Requests[2]), "no event: zero seq and progress")
}

// testListStatusFilter: only the statuses asked for, in the same order,
// through pages; each status as the writes left it.
func testListStatusFilter(t *testing.T, e *env) {
	l := e.lister(t)
	status := map[string]storage.Status{}
	var order []string // newest first
	for i := range 12 {
		name := fmt.Sprintf("r%02d", i)
		k := e.key(name)
		e.createAt(t, k, e.at(time.Duration(-i)*time.Second), nil)
		order = append(order, k.ID)
		switch i % 4 {
		case 0:
			status[k.ID] = storage.StatusQueued
		case 1:
			e.claim(t, k, 0)
			status[k.ID] = storage.StatusRunning
		case 2:
			e.claim(t, k, 0)
			require.NoError(t, e.s.FinishRequest(e.ctx, k, e.succeed(1, 1, `1`)))
			status[k.ID] = storage.StatusSucceeded
		case 3:
			_, err := e.s.CancelRequest(e.ctx, k, e.now)
			require.NoError(t, err)
			status[k.ID] = storage.StatusCanceling
		}
	}
	k := e.key("x")
	for _, sts := range [][]storage.Status{
		{storage.StatusRunning},
		{storage.StatusQueued, storage.StatusSucceeded},
		{storage.StatusQueued, storage.StatusRunning, storage.StatusCanceling},
		{storage.StatusFailed},
		nil,
	} {
		var want []string
		q := storage.ListQuery{Statuses: sts}
		for _, id := range order {
			if q.Matches(status[id]) {
				want = append(want, id)
			}
		}
		for _, limit := range []int{1, 2, 5} {
			keys, _ := e.listAll(t, l, k.Tenant, k.Subject, limit, sts...)
			require.Equal(t, want, ids(keys), "statuses %v, limit %d", sts, limit)
		}
	}
}

// testListPrincipalScope: a principal lists its own requests only, even
// when its tenant and subject run together with another's, and when two
// principals use the same request ids.
func testListPrincipalScope(t *testing.T, e *env) {
	l := e.lister(t)
	var keys []storage.Key
	for _, pair := range e.collidingKeys() {
		keys = append(keys, pair[:]...)
	}
	// A tenant or subject that extends another's.
	p := e.p
	keys = append(keys,
		storage.Key{Tenant: p + "t", Subject: "s", ID: "1"},
		storage.Key{Tenant: p + "t", Subject: "s2", ID: "1"},
		storage.Key{Tenant: p + "t2", Subject: "s", ID: "1"},
		storage.Key{Tenant: p + "t", Subject: "", ID: "s|1"},
	)
	type principal struct{ tenant, subject string }
	own := map[principal][]storage.Key{}
	for _, k := range keys {
		e.createAt(t, k, e.now, nil)
		pr := principal{k.Tenant, k.Subject}
		own[pr] = append(own[pr], k)
	}
	for pr, want := range own {
		// All created at once: by ID, descending.
		slices.SortFunc(want, func(a, b storage.Key) int { return strings.Compare(b.ID, a.ID) })
		got, _ := e.listAll(t, l, pr.tenant, pr.subject, 10)
		require.Equal(t, want, got, "principal (%q, %q)", pr.tenant, pr.subject)
	}
	got, _ := e.listAll(t, l, p+"t", "s|", 10)
	require.Empty(t, got)
	got, _ = e.listAll(t, l, p+"t|s", "", 10)
	require.Empty(t, got)
}

// testListExpired: expired requests are not listed, and an expired event
// is not the latest.
func testListExpired(t *testing.T, e *env) {
	l := e.lister(t)
	live, gone := e.key("live"), e.key("gone")
	e.createAt(t, live, e.at(-time.Second), func(r *storage.Request) { r.ExpiresAt = e.later() })
	e.createAt(t, gone, e.now, func(r *storage.Request) { r.ExpiresAt = e.at(-time.Minute) })
	e.claim(t, live, 0)
	require.NoError(t, e.s.AppendEvent(e.ctx, live, 1, e.progress(1, 10), 0))
	old := e.progress(2, 20)
	old.ExpiresAt = e.at(-time.Minute)
	require.NoError(t, e.s.AppendEvent(e.ctx, live, 1, old, 0))

	page, err := l.ListRequests(e.ctx, live.Tenant, live.Subject, storage.ListQuery{})
	require.NoError(t, err)
	require.Len(t, page.Requests, 1)
	require.Equal(t, live, page.Requests[0].Key)
	require.Equal(t, int64(1), page.Requests[0].Seq, "the expired event is skipped")
	require.Empty(t, page.Cursor)
}

// testListDefaultLimit: a zero limit pages by DefaultListLimit.
func testListDefaultLimit(t *testing.T, e *env) {
	l := e.lister(t)
	n := storage.DefaultListLimit + 2
	for i := range n {
		e.createAt(t, e.key(fmt.Sprintf("r%03d", i)), e.at(time.Duration(i)*time.Millisecond), nil)
	}
	k := e.key("x")
	page, err := l.ListRequests(e.ctx, k.Tenant, k.Subject, storage.ListQuery{})
	require.NoError(t, err)
	require.Len(t, page.Requests, storage.DefaultListLimit)
	require.NotEmpty(t, page.Cursor)
	require.Equal(t, e.key(fmt.Sprintf("r%03d", n-1)), page.Requests[0].Key, "newest first")
	keys, _ := e.listAll(t, l, k.Tenant, k.Subject, 0)
	require.Len(t, keys, n)
}

// testListNewerNotInLaterPages: a request created after the first page is
// newer than the cursor, so the later pages do not list it.
func testListNewerNotInLaterPages(t *testing.T, e *env) {
	l := e.lister(t)
	for _, name := range []string{"a", "b", "c"} {
		e.createAt(t, e.key(name), e.at(-time.Minute), nil)
	}
	k := e.key("x")
	page, err := l.ListRequests(e.ctx, k.Tenant, k.Subject, storage.ListQuery{Limit: 1})
	require.NoError(t, err)
	require.Len(t, page.Requests, 1)
	require.Equal(t, e.key("c"), page.Requests[0].Key)
	e.createAt(t, e.key("new"), e.now, nil)
	var rest []string
	for q := (storage.ListQuery{Limit: 1, Cursor: page.Cursor}); q.Cursor != ""; {
		page, err := l.ListRequests(e.ctx, k.Tenant, k.Subject, q)
		require.NoError(t, err)
		rest = append(rest, ids(keysOf(page))...)
		q.Cursor = page.Cursor
	}
	require.Equal(t, []string{e.p + "b", e.p + "a"}, rest)
}

func keysOf(p storage.ListPage) []storage.Key {
	out := make([]storage.Key, len(p.Requests))
	for i, r := range p.Requests {
		out[i] = r.Key
	}
	return out
}

// testListBadCursor: a cursor the store did not make is refused with
// ErrBadCursor.
func testListBadCursor(t *testing.T, e *env) {
	l := e.lister(t)
	k := e.key("a")
	e.create(t, k)
	for _, c := range []string{
		"!!!",
		"not base64 at all",
		base64.RawURLEncoding.EncodeToString([]byte("no colon")),
		base64.RawURLEncoding.EncodeToString([]byte("12x:id")),
		strings.Repeat("A", 10000),
	} {
		_, err := l.ListRequests(e.ctx, k.Tenant, k.Subject, storage.ListQuery{Cursor: c})
		require.ErrorIs(t, err, storage.ErrBadCursor, "cursor %.40q", c)
	}
}

// testListEmpty: a principal with no requests has one empty page.
func testListEmpty(t *testing.T, e *env) {
	l := e.lister(t)
	page, err := l.ListRequests(e.ctx, e.p+"nobody", "nobody", storage.ListQuery{})
	require.NoError(t, err)
	require.Empty(t, page.Requests)
	require.Empty(t, page.Cursor)
}

func testListContextCanceled(t *testing.T, e *env) {
	l := e.lister(t)
	k := e.key("a")
	e.create(t, k)
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	_, err := l.ListRequests(ctx, k.Tenant, k.Subject, storage.ListQuery{})
	require.Error(t, err)
}

var _ storage.PrincipalLister = (*Faulty)(nil)

// ListRequests implements [storage.PrincipalLister] when the wrapped store
// does; its calls fail as the fault of "ListRequests" says (the key they
// are observed with has the principal and no ID).
func (f *Faulty) ListRequests(ctx context.Context, tenant, subject string, q storage.ListQuery) (page storage.ListPage, err error) {
	l, ok := f.Store.(storage.PrincipalLister)
	if !ok {
		return storage.ListPage{}, fmt.Errorf("storagetest: %T is not a storage.PrincipalLister", f.Store)
	}
	err = f.call("ListRequests", storage.Key{Tenant: tenant, Subject: subject}, func() (e error) {
		page, e = l.ListRequests(ctx, tenant, subject, q)
		return e
	})
	return page, err
}
