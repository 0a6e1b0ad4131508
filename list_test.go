package streamer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/storage/storagetest"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// listApp is an App on a memory store (wrapped by wrap, when set) with no
// worker: requests stay as the test stores them.
type listApp struct {
	app   *streamer.App
	store *memory.Store
	rec   *transporttest.Recorder
	n     int
}

func newListApp(t *testing.T, wrap func(storage.Store) storage.Store) *listApp {
	t.Helper()
	la := &listApp{store: memory.New(), rec: transporttest.NewRecorder()}
	var st storage.Store = la.store
	if wrap != nil {
		st = wrap(st)
	}
	app, err := streamer.New(streamer.Config{Store: st, Sender: la.rec})
	require.NoError(t, err)
	la.app = app
	return la
}

// principal is a connection of (tenant, subject).
func principal(tenant, subject string) streamer.Conn {
	return streamer.Conn{ID: "conn-" + tenant + "-" + subject, Principal: &streamer.Principal{Tenant: tenant, Subject: subject}}
}

// put stores a request of conn's principal created at at.
func (la *listApp) put(t *testing.T, conn streamer.Conn, id string, at time.Time, st storage.Status) storage.Key {
	t.Helper()
	k := storage.Key{Tenant: conn.Principal.Tenant, Subject: conn.Principal.Subject, ID: id}
	require.NoError(t, la.store.CreateRequest(context.Background(), storage.Request{
		Key: k, Action: "report", Status: st, CreatedAt: at, UpdatedAt: at.Add(time.Second),
	}))
	return k
}

// list sends a list frame with payload (raw JSON, or "" for none) and
// returns the reply, raw and decoded.
func (la *listApp) list(t *testing.T, conn streamer.Conn, payload string) (streamer.Message, map[string]any) {
	t.Helper()
	la.n++
	id := fmt.Sprintf("l%d", la.n)
	frame := `{"action":"list","id":"` + id + `"`
	if payload != "" {
		frame += `,"payload":` + payload
	}
	frame += "}"
	require.NoError(t, la.app.HandleMessage(context.Background(), conn, []byte(frame), false))
	raw := la.rec.Raw(conn.ID)
	require.NotEmpty(t, raw)
	last := raw[len(raw)-1]
	require.LessOrEqual(t, len(last), streamer.MaxMessageSize)
	var m streamer.Message
	require.NoError(t, json.Unmarshal(last, &m))
	require.Equal(t, id, m.RequestID, "the reply carries the frame's id")
	var wire map[string]any
	require.NoError(t, json.Unmarshal(last, &wire))
	return m, wire
}

func requestIDs(m streamer.Message) []string {
	var out []string
	for _, r := range m.Requests {
		out = append(out, r.RequestID)
	}
	return out
}

// listAll follows the cursors from the first page of payload fields
// (without cursor) and returns every request ID, in order, and the pages.
func (la *listApp) listAll(t *testing.T, conn streamer.Conn, fields string) ([]string, int) {
	t.Helper()
	var ids []string
	cursor := ""
	for pages := 1; ; pages++ {
		p := "{" + fields
		if cursor != "" {
			if fields != "" {
				p += ","
			}
			p += `"cursor":` + fmt.Sprintf("%q", cursor)
		}
		m, _ := la.list(t, conn, p+"}")
		require.Equal(t, streamer.TypeList, m.Type, "error: %+v", m.Error)
		ids = append(ids, requestIDs(m)...)
		if m.Cursor == "" {
			return ids, pages
		}
		cursor = m.Cursor
		require.Less(t, pages, 100)
	}
}

func TestListPagesNewestFirst(t *testing.T) {
	t.Parallel()
	la := newListApp(t, nil)
	alice := principal("t1", "alice")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var want []string
	for i := range 25 {
		id := fmt.Sprintf("r%02d", i)
		la.put(t, alice, id, base.Add(time.Duration(i)*time.Second), storage.StatusQueued)
		want = append([]string{id}, want...)
	}

	m, wire := la.list(t, alice, `{"limit":10}`)
	require.Equal(t, "list", wire["type"])
	require.Contains(t, wire, "timestamp")
	require.Len(t, m.Requests, 10)
	require.Equal(t, want[:10], requestIDs(m))
	require.NotEmpty(t, m.Cursor)
	require.Contains(t, wire, "cursor")

	m, _ = la.list(t, alice, `{"limit":10,"cursor":"`+m.Cursor+`"}`)
	require.Equal(t, want[10:20], requestIDs(m))
	m, wire = la.list(t, alice, `{"limit":10,"cursor":"`+m.Cursor+`"}`)
	require.Equal(t, want[20:], requestIDs(m))
	require.Empty(t, m.Cursor)
	require.NotContains(t, wire, "cursor", "absent on the last page")

	// No payload: the default page of 20.
	m, _ = la.list(t, alice, "")
	require.Equal(t, want[:storage.DefaultListLimit], requestIDs(m))
	m, _ = la.list(t, alice, "null")
	require.Len(t, m.Requests, storage.DefaultListLimit)
	ids, pages := la.listAll(t, alice, `"limit":7`)
	require.Equal(t, want, ids)
	require.Equal(t, 4, pages)
}

func TestListFieldsAndWireShape(t *testing.T) {
	t.Parallel()
	la := newListApp(t, nil)
	alice := principal("t1", "alice")
	at := time.UnixMilli(1_700_000_000_000)
	k := la.put(t, alice, "job-1", at, storage.StatusQueued)
	ctx := context.Background()
	_, err := la.store.ClaimRequest(ctx, k, storage.Claim{Now: at.Add(2 * time.Second), LeaseUntil: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	for seq := int64(1); seq <= 2; seq++ {
		require.NoError(t, la.store.AppendEvent(ctx, k, 1, storage.Event{Seq: seq, Type: "progress", Percentage: 12.5 * float64(seq), Message: "line \"2\"\n"}, 0))
	}
	la.put(t, alice, "new-one", at.Add(time.Minute), storage.StatusQueued)

	m, wire := la.list(t, alice, "{}")
	require.Equal(t, []streamer.RequestSummary{
		{RequestID: "new-one", Action: "report", Status: "queued", CreatedAt: at.Add(time.Minute).UnixMilli(), UpdatedAt: at.Add(time.Minute + time.Second).UnixMilli()},
		{RequestID: "job-1", Action: "report", Status: "running", Seq: 2, Percentage: 25, Message: "line \"2\"\n", CreatedAt: at.UnixMilli(), UpdatedAt: at.Add(2 * time.Second).UnixMilli()},
	}, m.Requests)
	reqs := wire["requests"].([]any)
	require.Equal(t, map[string]any{
		"request_id": "new-one", "action": "report", "status": "queued", "seq": 0.0, "percentage": 0.0, "message": "",
		"created_at": float64(at.Add(time.Minute).UnixMilli()), "updated_at": float64(at.Add(time.Minute + time.Second).UnixMilli()),
	}, reqs[0], "every field is present, zero or not")

	// A principal with no requests gets [], never null.
	_, wire = la.list(t, principal("t1", "nobody"), "")
	require.Equal(t, []any{}, wire["requests"])
	require.NotContains(t, wire, "cursor")
}

// TestListRequestsMadeByTheRouter: requests sent over the connection are
// listed, newest first, and a plain status frame agrees with the listing.
func TestListRequestsMadeByTheRouter(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noRun: true})
	// Sent in order: each is created after the one before, or in the same
	// millisecond, where the greater ID comes first. Either way: s2, s1, s0.
	for i := range 3 {
		b.send(t, fmt.Sprintf(`{"action":"steps","id":"s%d","payload":{"steps":1}}`, i))
	}
	b.send(t, `{"action":"list","id":"l1","payload":{"status":["queued"]}}`)
	m := lastMsg(t, b, b.conn.ID)
	require.Equal(t, streamer.TypeList, m.Type)
	require.Equal(t, []string{"s2", "s1", "s0"}, requestIDs(m))
	for _, r := range m.Requests {
		require.Equal(t, "steps", r.Action)
		require.Equal(t, "queued", r.Status)
		require.Positive(t, r.CreatedAt)
	}
}

func TestListStatusFilter(t *testing.T) {
	t.Parallel()
	la := newListApp(t, nil)
	alice := principal("t1", "alice")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	sts := []storage.Status{storage.StatusQueued, storage.StatusRunning, storage.StatusSucceeded, storage.StatusFailed, storage.StatusCanceling, storage.StatusCanceled}
	byStatus := map[storage.Status][]string{}
	for i := range 30 {
		st := sts[i%len(sts)]
		id := fmt.Sprintf("r%02d", i)
		la.put(t, alice, id, base.Add(time.Duration(i)*time.Second), st)
		byStatus[st] = append([]string{id}, byStatus[st]...)
	}
	ids, _ := la.listAll(t, alice, `"status":["running"],"limit":2`)
	require.Equal(t, byStatus[storage.StatusRunning], ids)

	live, _ := la.listAll(t, alice, `"status":["queued","running","canceling","running"],"limit":4`)
	require.Len(t, live, 15)
	for _, id := range live {
		require.Contains(t, append(append(append([]string{}, byStatus[storage.StatusQueued]...), byStatus[storage.StatusRunning]...), byStatus[storage.StatusCanceling]...), id)
	}
	all, _ := la.listAll(t, alice, `"status":[]`)
	require.Len(t, all, 30, "an empty filter keeps every status")
}

// TestListPrincipalScope: a principal lists its own requests only, even
// when tenant and subject run together with another principal's.
func TestListPrincipalScope(t *testing.T) {
	t.Parallel()
	la := newListApp(t, nil)
	at := time.Now()
	conns := []streamer.Conn{
		principal("t1", "alice"), principal("t1", "bob"), principal("t2", "alice"),
		principal("a|b", "c"), principal("a", "b|c"), principal("", "t1|alice"),
	}
	for _, c := range conns {
		// The same request id for everyone.
		la.put(t, c, "shared", at, storage.StatusQueued)
		la.put(t, c, "own-"+c.Principal.Tenant+"-"+c.Principal.Subject, at.Add(-time.Second), storage.StatusQueued)
	}
	for _, c := range conns {
		m, _ := la.list(t, c, "")
		require.Equal(t, []string{"shared", "own-" + c.Principal.Tenant + "-" + c.Principal.Subject}, requestIDs(m), "%+v", c.Principal)
	}
	// A cursor is a place, not a principal: one taken from alice's listing
	// continues bob's after the same place, listing bob's requests only.
	alice, bob := conns[0], conns[1]
	first, _ := la.list(t, alice, `{"limit":1}`)
	require.NotEmpty(t, first.Cursor)
	m, _ := la.list(t, bob, `{"cursor":"`+first.Cursor+`"}`)
	require.Equal(t, []string{"own-t1-bob"}, requestIDs(m))
}

func TestListBadPayloads(t *testing.T) {
	t.Parallel()
	la := newListApp(t, nil)
	alice := principal("t1", "alice")
	la.put(t, alice, "r", time.Now(), storage.StatusQueued)
	for payload, field := range map[string]string{
		`"running"`:                "",
		`[1]`:                      "",
		`5`:                        "",
		`{"status":"running"}`:     "status",
		`{"status":[1]}`:           "status",
		`{"status":["nope"]}`:      "status",
		`{"status":["Running"]}`:   "status",
		`{"limit":0}`:              "limit",
		`{"limit":-1}`:             "limit",
		`{"limit":101}`:            "limit",
		`{"limit":2.5}`:            "limit",
		`{"limit":"3"}`:            "limit",
		`{"cursor":5}`:             "cursor",
		`{"cursor":"garbage!"}`:    "cursor",
		`{"cursor":"bm8gY29sb24"}`: "cursor",
		`{"cursor":"` + strings.Repeat("A", 5000) + `"}`: "cursor",
	} {
		m, _ := la.list(t, alice, payload)
		require.Equal(t, streamer.TypeError, m.Type, "payload %.60s", payload)
		require.NotNil(t, m.Error)
		require.Equal(t, streamer.CodeValidation, m.Error.Code, "payload %.60s", payload)
		require.NotEmpty(t, m.Error.Message)
		require.Zero(t, m.Seq)
		if field == "" {
			continue
		}
		var details []streamer.FieldError
		require.NoError(t, json.Unmarshal(m.Error.Details, &details), "payload %.60s", payload)
		require.Len(t, details, 1)
		require.Equal(t, field, details[0].Field, "payload %.60s", payload)
	}
}

func TestListIsReserved(t *testing.T) {
	t.Parallel()
	require.True(t, streamer.Reserved("list"))
	_, err := streamer.New(streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder(), Plugins: []streamer.Plugin{{
		Name: "p", Actions: []streamer.Action{{Name: "list", Handler: estimated{}}},
	}}})
	require.ErrorContains(t, err, "reserved")

	// And actions does not list it.
	la := newListApp(t, nil)
	conn := principal("t1", "alice")
	require.NoError(t, la.app.HandleMessage(context.Background(), conn, []byte(`{"action":"actions"}`), false))
	for _, a := range la.rec.Messages(t, conn.ID)[0].Actions {
		require.NotEqual(t, "list", a.Name)
	}
}

// plainStore hides the optional interfaces of the store it wraps.
type plainStore struct{ storage.Store }

func TestListWithoutAPrincipalLister(t *testing.T) {
	t.Parallel()
	la := newListApp(t, func(s storage.Store) storage.Store { return plainStore{s} })
	m, _ := la.list(t, principal("t1", "alice"), "")
	require.Equal(t, streamer.TypeError, m.Type)
	require.Equal(t, streamer.CodeInvalidAction, m.Error.Code)
	require.Contains(t, m.Error.Message, "cannot list requests")
}

func TestListStoreFailureIsUnavailable(t *testing.T) {
	t.Parallel()
	var faulty *storagetest.Faulty
	la := newListApp(t, func(s storage.Store) storage.Store { faulty = storagetest.NewFaulty(s); return faulty })
	alice := principal("t1", "alice")
	la.put(t, alice, "r", time.Now(), storage.StatusQueued)
	faulty.Fail("ListRequests", storagetest.Fault{Calls: []int{1}})
	err := la.app.HandleMessage(context.Background(), alice, []byte(`{"action":"list","id":"l1"}`), false)
	require.ErrorIs(t, err, storagetest.ErrInjected, "reported to the transport like other store failures")
	m := la.rec.Messages(t, alice.ID)[0]
	require.Equal(t, streamer.TypeError, m.Type)
	require.Equal(t, "l1", m.RequestID)
	require.Equal(t, streamer.CodeUnavailable, m.Error.Code)
	require.True(t, m.Error.Retryable)

	// The same frame again succeeds.
	m, _ = la.list(t, alice, "")
	require.Equal(t, []string{"r"}, requestIDs(m))
}

// TestListPageFitsOneMessage: long progress messages are cut, and a page
// still too large for one message is made smaller, its cursor going on
// from its last request: every request is listed once, in order.
func TestListPageFitsOneMessage(t *testing.T) {
	t.Parallel()
	la := newListApp(t, nil)
	alice := principal("t1", "alice")
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	ctx := context.Background()
	// Control characters: 6 bytes each once escaped, so 100 cut messages
	// take about 300 KB.
	long := strings.Repeat("\x01", 4000)
	var want []string
	for i := range 100 {
		id := fmt.Sprintf("%s-%03d", strings.Repeat("x", 120), i)
		k := la.put(t, alice, id, base.Add(time.Duration(i)*time.Second), storage.StatusQueued)
		_, err := la.store.ClaimRequest(ctx, k, storage.Claim{Now: base, LeaseUntil: time.Now().Add(time.Hour)})
		require.NoError(t, err)
		require.NoError(t, la.store.AppendEvent(ctx, k, 1, storage.Event{Seq: 1, Type: "progress", Message: long}, 0))
		want = append([]string{id}, want...)
	}
	first, _ := la.list(t, alice, `{"limit":100}`)
	require.Less(t, len(first.Requests), 100, "a smaller page")
	require.NotEmpty(t, first.Cursor)
	for _, r := range first.Requests {
		require.Len(t, r.Message, streamer.MaxListMessage)
	}
	ids, _ := la.listAll(t, alice, `"limit":100`)
	require.Equal(t, want, ids)

	// Cut at a character boundary.
	k := la.put(t, principal("t1", "carol"), "utf8", base, storage.StatusQueued)
	_, err := la.store.ClaimRequest(ctx, k, storage.Claim{Now: base, LeaseUntil: time.Now().Add(time.Hour)})
	require.NoError(t, err)
	require.NoError(t, la.store.AppendEvent(ctx, k, 1, storage.Event{Seq: 1, Type: "progress", Message: "a" + strings.Repeat("é", 300)}, 0))
	m, _ := la.list(t, principal("t1", "carol"), "")
	msg := m.Requests[0].Message
	require.True(t, utf8.ValidString(msg))
	require.Len(t, msg, streamer.MaxListMessage-1, "511 bytes: a and 255 é")
}
