package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/client"
)

func listPage() client.ListPage {
	now := time.UnixMilli(1_700_000_000_000)
	return client.ListPage{Cursor: "Y3Vy", Requests: []client.ListedRequest{
		{RequestID: "r-2", Action: "delay", Status: "running", Seq: 3, Percentage: 30, Message: "step 3/10", CreatedAt: now, UpdatedAt: now},
		{RequestID: "r 1", Action: "fail", Status: "failed", Seq: 1, CreatedAt: now.Add(-time.Minute)},
		{RequestID: "r-0", Action: "delay", Status: "queued"},
	}}
}

func TestPrintListHuman(t *testing.T) {
	var b bytes.Buffer
	page := listPage()
	printListHuman(&b, page, page.Requests[0].CreatedAt.Add(5*time.Second), " --url ws://x/ws", " --limit 3 --url ws://x/ws")
	out := b.String()
	require.Contains(t, out, "REQUEST")
	require.Regexp(t, `r-2 +delay +running +30.0% step 3/10 +3 +.*\(5s ago\)`, out)
	require.Contains(t, out, "Follow a live one with:\n  streamer call --resume r-2 --url ws://x/ws\n  streamer call --resume r-0 --url ws://x/ws\n")
	require.NotContains(t, out, "--resume 'r 1'", "finished: nothing to follow")
	require.Contains(t, out, "More: streamer list --cursor Y3Vy --limit 3 --url ws://x/ws")

	b.Reset()
	printListHuman(&b, client.ListPage{}, time.Now(), "", "")
	require.Equal(t, "No requests.\n", b.String())
}

func TestPrintListPlain(t *testing.T) {
	var stdout, stderr bytes.Buffer
	printListPlain(&stdout, &stderr, listPage(), "", " --status running")
	require.Equal(t, "r-2 running delay 3 30 2023-11-14T22:13:20Z\nr 1 failed fail 1 0 2023-11-14T22:12:20Z\nr-0 queued delay 0 0 -\n", stdout.String())
	require.Equal(t, "follow r-2 with: streamer call --resume r-2\nfollow r-0 with: streamer call --resume r-0\nmore: streamer list --cursor Y3Vy --status running\n", stderr.String())
}

func TestPrintListJSON(t *testing.T) {
	var b bytes.Buffer
	printListJSON(&b, listPage())
	var out struct {
		Requests []map[string]any `json:"requests"`
		Cursor   string           `json:"cursor"`
	}
	require.NoError(t, json.Unmarshal(b.Bytes(), &out))
	require.Equal(t, "Y3Vy", out.Cursor)
	require.Len(t, out.Requests, 3)
	require.Equal(t, map[string]any{
		"request_id": "r-2", "action": "delay", "status": "running", "seq": 3.0, "percentage": 30.0,
		"message": "step 3/10", "created_at": 1.7e12, "updated_at": 1.7e12,
	}, out.Requests[0])

	b.Reset()
	printListJSON(&b, client.ListPage{})
	require.Equal(t, `{"requests":[]}`, strings.TrimSpace(b.String()))
}
