package streamer_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// estimated is a handler that estimates each request, so its mode is auto.
type estimated struct{}

func (estimated) Serve(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
	return 1, nil
}

func (estimated) Estimate(*streamer.Request) time.Duration { return time.Second }

func lastMsg(t *testing.T, b *testBundle, conn string) streamer.Message {
	t.Helper()
	ms := b.rec.Messages(t, conn)
	require.NotEmpty(t, ms)
	return ms[len(ms)-1]
}

func TestActionsListsWhatThePrincipalMayCall(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noRun: true, extra: []streamer.Action{
		{Name: "estimated", Handler: estimated{}},
		{Name: "readable", Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Scopes: []string{"read"}}, Handler: estimated{}},
	}})
	b.send(t, `{"action":"actions","id":"a1"}`)
	m := lastMsg(t, b, b.conn.ID)
	require.Equal(t, streamer.TypeActions, m.Type)
	require.Equal(t, "a1", m.RequestID)
	modes := map[string]string{}
	var names []string
	for _, ai := range m.Actions {
		modes[ai.Name] = ai.Mode
		names = append(names, ai.Name)
	}
	require.IsNonDecreasing(t, names, "sorted by name")
	require.NotContains(t, modes, "scoped", "alice lacks scope admin")
	require.NotContains(t, modes, "actions", "reserved actions are not listed")
	require.Equal(t, "sync", modes["echo"])
	require.Equal(t, "async", modes["steps"])
	require.Equal(t, "sync", modes["auto_fast"], "a fixed estimate under the threshold")
	require.Equal(t, "async", modes["auto_slow"], "a fixed estimate over the threshold")
	require.Equal(t, "auto", modes["estimated"], "decided per request")
	for _, ai := range m.Actions {
		if ai.Name == "readable" {
			require.Equal(t, []string{"read"}, ai.Scopes)
		} else {
			require.Empty(t, ai.Scopes, ai.Name)
		}
	}

	admin := streamer.Conn{ID: "conn-admin", Principal: &streamer.Principal{Subject: "root", Scopes: []string{"admin"}}}
	b.sendAs(t, admin, `{"action":"actions"}`)
	m = lastMsg(t, b, admin.ID)
	require.Empty(t, m.RequestID, "no id, no request_id")
	var scoped *streamer.ActionInfo
	for i := range m.Actions {
		if m.Actions[i].Name == "scoped" {
			scoped = &m.Actions[i]
		}
		require.NotEqual(t, "readable", m.Actions[i].Name, "root lacks scope read")
	}
	require.NotNil(t, scoped)
	require.Equal(t, streamer.ActionInfo{Name: "scoped", Mode: "sync", Scopes: []string{"admin"}}, *scoped)
}

func TestActionsWireShape(t *testing.T) {
	t.Parallel()
	rec := transporttest.NewRecorder()
	app, err := streamer.New(streamer.Config{Store: memory.New(), Sender: rec})
	require.NoError(t, err)
	conn := streamer.Conn{ID: "c", Principal: &streamer.Principal{Subject: "alice"}}
	require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(`{"action":"actions","id":"a"}`), false))
	raw := rec.Raw("c")
	require.Len(t, raw, 1)
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw[0], &m))
	require.Equal(t, "actions", m["type"])
	require.Equal(t, "a", m["request_id"])
	require.Equal(t, []any{}, m["actions"], "an empty list is [], never absent")
	require.Contains(t, m, "timestamp")
}

func TestActionIsReserved(t *testing.T) {
	t.Parallel()
	require.True(t, streamer.Reserved("actions"))
	_, err := streamer.New(streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder(), Plugins: []streamer.Plugin{{
		Name: "p", Actions: []streamer.Action{{Name: "actions", Handler: estimated{}}},
	}}})
	require.ErrorContains(t, err, "reserved")
}

func TestInvalidActionNamesTheAvailableOnes(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{noRun: true})
	b.send(t, `{"action":"nope","id":"x1"}`)
	m := lastMsg(t, b, b.conn.ID)
	require.Equal(t, streamer.CodeInvalidAction, m.Error.Code)
	var details struct {
		Available []string `json:"available"`
	}
	require.NoError(t, json.Unmarshal(m.Error.Details, &details))
	require.Contains(t, details.Available, "echo")
	require.Contains(t, details.Available, "steps")
	require.NotContains(t, details.Available, "scoped", "only what the principal may call")
	require.IsNonDecreasing(t, details.Available)
	require.Contains(t, m.Error.Message, `"nope"`)
	require.Contains(t, m.Error.Message, "available: ")
	require.Contains(t, m.Error.Message, "echo")
}

func TestInvalidActionMessageIsBounded(t *testing.T) {
	t.Parallel()
	var acts []streamer.Action
	for i := range 30 {
		acts = append(acts, streamer.Action{Name: "a" + strings.Repeat("x", i), Handler: estimated{}})
	}
	rec := transporttest.NewRecorder()
	app, err := streamer.New(streamer.Config{Store: memory.New(), Sender: rec, Plugins: []streamer.Plugin{{Name: "p", Actions: acts}}})
	require.NoError(t, err)
	conn := streamer.Conn{ID: "c", Principal: &streamer.Principal{Subject: "alice"}}
	require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(`{"action":"nope"}`), false))
	m := rec.Messages(t, "c")[0]
	require.Contains(t, m.Error.Message, "and 10 more")
	var details struct {
		Available []string `json:"available"`
	}
	require.NoError(t, json.Unmarshal(m.Error.Details, &details))
	require.Len(t, details.Available, 30)
}

func TestRefusalsAreLoggedAtDebug(t *testing.T) {
	t.Parallel()
	rec := transporttest.NewRecorder()
	var logs bytes.Buffer
	app, err := streamer.New(streamer.Config{Store: memory.New(), Sender: rec, Logger: zerolog.New(&logs).Level(zerolog.DebugLevel)})
	require.NoError(t, err)
	conn := streamer.Conn{ID: "c", Principal: &streamer.Principal{Subject: "alice"}}
	for _, f := range []string{`{"action":"nope","id":"r1"}`, `not json`, `{"action":"status","id":"r2"}`} {
		require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(f), false))
	}
	out := logs.String()
	for _, want := range []string{`"level":"debug"`, `"code":"INVALID_ACTION"`, `"code":"INVALID_MESSAGE"`, `"code":"VALIDATION_ERROR"`, `"request_id":"r1"`, `"connection_id":"c"`} {
		require.Contains(t, out, want)
	}

	// At info, refusals are not logged.
	var quiet bytes.Buffer
	app, err = streamer.New(streamer.Config{Store: memory.New(), Sender: rec, Logger: zerolog.New(&quiet).Level(zerolog.InfoLevel)})
	require.NoError(t, err)
	require.NoError(t, app.HandleMessage(context.Background(), conn, []byte(`{"action":"nope"}`), false))
	require.Empty(t, quiet.String())
}
