package storagetest

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
)

// The cases of [storage.StatusLister], run when the store implements it.
// Each filters by a tenant unique to the subtest, so other tests' requests
// in a shared store are never listed.
func statusListerCases() []testCase {
	return []testCase{
		{"OrderAndPages", testStatusOrderAndPages},
		{"Statuses", testStatusStatuses},
		{"Filters", testStatusFilters},
		{"Expired", testStatusExpired},
		{"BadCursor", testStatusBadCursor},
		{"ContextCanceled", testStatusContextCanceled},
	}
}

func (e *env) statusLister(t *testing.T) storage.StatusLister {
	t.Helper()
	l, ok := e.s.(storage.StatusLister)
	if !ok {
		t.Skip("store does not implement storage.StatusLister")
	}
	return l
}

// statusAll follows the cursors of a status listing to the end, checks
// that no page is larger than the limit, and returns the IDs listed, in
// order.
func (e *env) statusAll(t *testing.T, l storage.StatusLister, q storage.StatusQuery) []string {
	t.Helper()
	var out []string
	for pages := 1; ; pages++ {
		page, err := l.ListByStatus(e.ctx, q)
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.Requests), q.PageSize(), "page %d is larger than the limit", pages)
		for _, r := range page.Requests {
			require.Equal(t, q.Status, r.Status, "a request of another status")
			out = append(out, r.Key.ID)
		}
		if page.Cursor == "" {
			return out
		}
		require.Less(t, pages, 1000, "the listing does not end")
		q.Cursor = page.Cursor
	}
}

// testStatusOrderAndPages: newest first by status time, then by key, both
// descending; every page size pages through the same list, each request
// once, with every field.
func testStatusOrderAndPages(t *testing.T, e *env) {
	l := e.statusLister(t)
	var want []string
	for i := range 7 {
		k := e.key(fmt.Sprintf("q%d", i))
		// Two requests share each time but the first: the key breaks ties.
		e.createAt(t, k, e.at(time.Duration((i+1)/2)*time.Second), nil)
		want = append([]string{k.ID}, want...)
	}
	// Newest first; q6 and q5 (q4 and q3, q2 and q1) share a time, and
	// the greater key comes first: want is the reverse of creation.
	tenant := e.key("").Tenant
	for _, limit := range []int{1, 2, 3, 7, 100} {
		got := e.statusAll(t, l, storage.StatusQuery{Status: storage.StatusQueued, Tenant: tenant, Limit: limit})
		require.Equal(t, want, got, "limit %d", limit)
	}
	page, err := l.ListByStatus(e.ctx, storage.StatusQuery{Status: storage.StatusQueued, Tenant: tenant, Limit: 100})
	require.NoError(t, err)
	require.Len(t, page.Requests, 7)
	for _, r := range page.Requests {
		k := r.Key
		require.Equal(t, normRequest(e.get(t, k)), normRequest(r), "the listed request is the stored one")
	}
}

// testStatusStatuses: each request is listed under its status only, by
// its status time: running by lease, finished by when it finished.
func testStatusStatuses(t *testing.T, e *env) {
	l := e.statusLister(t)
	queued, running, done, failed, canceling := e.key("queued"), e.key("running"), e.key("done"), e.key("failed"), e.key("canceling")
	for _, k := range []storage.Key{queued, running, done, failed, canceling} {
		e.create(t, k)
	}
	e.claim(t, running, 0)
	e.claim(t, done, 0)
	require.NoError(t, e.s.FinishRequest(e.ctx, done, e.succeed(1, 1, `{}`)))
	e.claim(t, failed, 0)
	require.NoError(t, e.s.FinishRequest(e.ctx, failed, storage.Finish{
		Attempt: 1, Event: e.terminal(1, "error"), Status: storage.StatusFailed,
		Error: &storage.ErrorInfo{Code: "PROCESSING_FAILED", Message: "boom"}, Now: e.at(time.Hour),
	}))
	_, err := e.s.CancelRequest(e.ctx, canceling, e.at(time.Second))
	require.NoError(t, err)
	tenant := queued.Tenant
	for st, want := range map[storage.Status][]string{
		storage.StatusQueued:    {queued.ID},
		storage.StatusRunning:   {running.ID},
		storage.StatusCanceling: {canceling.ID},
		storage.StatusSucceeded: {done.ID},
		storage.StatusFailed:    {failed.ID},
		storage.StatusCanceled:  nil,
	} {
		require.Equal(t, want, e.statusAll(t, l, storage.StatusQuery{Status: st, Tenant: tenant}), "status %s", st)
	}
	// Finished in a window: the failure was at base+1h.
	q := storage.StatusQuery{Status: storage.StatusFailed, Tenant: tenant, Since: e.at(59 * time.Minute)}
	require.Equal(t, []string{failed.ID}, e.statusAll(t, l, q))
	q.Since = e.at(61 * time.Minute)
	require.Empty(t, e.statusAll(t, l, q), "finished before Since")
	q.Since, q.Until = time.Time{}, e.at(time.Hour)
	require.Empty(t, e.statusAll(t, l, q), "Until is exclusive")
	q.Until = e.at(time.Hour + time.Millisecond)
	require.Equal(t, []string{failed.ID}, e.statusAll(t, l, q))
	// Running by lease: a minute after the claim.
	q = storage.StatusQuery{Status: storage.StatusRunning, Tenant: tenant, Since: e.at(time.Minute)}
	require.Equal(t, []string{running.ID}, e.statusAll(t, l, q))
}

// testStatusFilters: the action and tenant filters keep only matching
// requests, across pages.
func testStatusFilters(t *testing.T, e *env) {
	l := e.statusLister(t)
	var reports []string
	for i := range 5 {
		k := e.key(fmt.Sprintf("r%d", i))
		action := "generate_report"
		if i%2 == 1 {
			action = "other"
		} else {
			reports = append([]string{k.ID}, reports...)
		}
		e.createAt(t, k, e.at(time.Duration(i)*time.Second), func(r *storage.Request) { r.Action = action })
	}
	other := storage.Key{Tenant: e.p + "other-tenant", Subject: "s", ID: e.p + "x"}
	e.createAt(t, other, e.at(time.Second), nil)
	tenant := e.key("").Tenant
	for _, limit := range []int{1, 2, 100} {
		q := storage.StatusQuery{Status: storage.StatusQueued, Tenant: tenant, Action: "generate_report", Limit: limit}
		require.Equal(t, reports, e.statusAll(t, l, q), "limit %d", limit)
	}
	q := storage.StatusQuery{Status: storage.StatusQueued, Tenant: other.Tenant}
	require.Equal(t, []string{other.ID}, e.statusAll(t, l, q))
	q = storage.StatusQuery{Status: storage.StatusQueued, Tenant: e.p + "nobody"}
	require.Empty(t, e.statusAll(t, l, q))
}

// testStatusExpired: expired requests are not listed.
func testStatusExpired(t *testing.T, e *env) {
	l := e.statusLister(t)
	live, gone := e.key("live"), e.key("gone")
	e.createAt(t, live, e.now, nil)
	e.createAt(t, gone, e.now, func(r *storage.Request) { r.ExpiresAt = time.Now().Add(-time.Second) })
	got := e.statusAll(t, l, storage.StatusQuery{Status: storage.StatusQueued, Tenant: live.Tenant})
	require.Equal(t, []string{live.ID}, got)
}

func testStatusBadCursor(t *testing.T, e *env) {
	l := e.statusLister(t)
	k := e.key("a")
	e.create(t, k)
	for _, c := range []string{
		"!!!",
		base64.RawURLEncoding.EncodeToString([]byte("s12:no|key")),
		base64.RawURLEncoding.EncodeToString([]byte("12:a|b|c")),
		storage.PosOf(storage.Request{Key: k}).Cursor(), // a principal listing's
		strings.Repeat("A", 10000),
	} {
		_, err := l.ListByStatus(e.ctx, storage.StatusQuery{Status: storage.StatusQueued, Cursor: c})
		require.ErrorIs(t, err, storage.ErrBadCursor, "cursor %.40q", c)
	}
}

func testStatusContextCanceled(t *testing.T, e *env) {
	l := e.statusLister(t)
	e.create(t, e.key("a"))
	ctx, cancel := context.WithCancel(e.ctx)
	cancel()
	_, err := l.ListByStatus(ctx, storage.StatusQuery{Status: storage.StatusQueued})
	require.Error(t, err)
}

var _ storage.StatusLister = (*Faulty)(nil)

// ListByStatus implements [storage.StatusLister] when the wrapped store
// does; its calls fail as the fault of "ListByStatus" says.
func (f *Faulty) ListByStatus(ctx context.Context, q storage.StatusQuery) (page storage.StatusPage, err error) {
	l, ok := f.Store.(storage.StatusLister)
	if !ok {
		return storage.StatusPage{}, fmt.Errorf("storagetest: %T is not a storage.StatusLister", f.Store)
	}
	err = f.call("ListByStatus", storage.Key{Tenant: q.Tenant}, func() (e error) {
		page, e = l.ListByStatus(ctx, q)
		return e
	})
	return page, err
}
