package main_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/client"
)

// listLines returns the request ids of list's plain output, in order, and
// each one's fields.
func listLines(t *testing.T, out string) ([]string, map[string][]string) {
	t.Helper()
	var ids []string
	fields := map[string][]string{}
	for l := range strings.Lines(out) {
		f := strings.Fields(l)
		require.Len(t, f, 6, "line %q", l)
		ids = append(ids, f[0])
		fields[f[0]] = f
	}
	return ids, fields
}

var (
	followRE = regexp.MustCompile(`(?m)^follow (\S+) with: (streamer call --resume \S+)$`)
	moreRE   = regexp.MustCompile(`(?m)^more: streamer list --cursor (\S+)( .*)?$`)
)

func TestCLIList(t *testing.T) {
	t.Parallel()
	s := shared(t)
	env := callEnv(s)
	// A principal of its own: the listing holds this test's requests only.
	tok := token(t, uid("cli-lister"), "")
	withToken := func(args ...string) []string { return append(args, "--token", tok) }

	var done []string // oldest first
	for range 3 {
		id := uid("cli-list")
		res := runCLI(t, env, withToken("call", "--id", id, "delay", `{"ms":0,"steps":2}`)...)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		done = append(done, id)
	}
	// A long one, running when listed.
	c := dialClient(t, s, tok)
	live := uid("cli-list-live")
	running := make(chan struct{}, 1)
	ended := make(chan error, 1)
	go func() {
		_, err := c.Request(testCtx(t, 2*time.Minute), "delay", map[string]int{"ms": 120000, "steps": 120},
			client.WithID(live), client.WithProgress(func(client.Progress) {
				select {
				case running <- struct{}{}:
				default:
				}
			}))
		ended <- err
	}()
	select {
	case <-running:
	case err := <-ended:
		t.Fatalf("the request ended before any progress: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no progress within 30s")
	}
	newestFirst := []string{live, done[2], done[1], done[0]}

	t.Run("a page, newest first, with the command that follows the live one", func(t *testing.T) {
		res := runCLI(t, env, withToken("list")...)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		ids, fields := listLines(t, res.stdout)
		require.Equal(t, newestFirst, ids)
		require.Equal(t, "running", fields[live][1])
		require.Equal(t, "delay", fields[live][2])
		for _, id := range done {
			require.Equal(t, []string{"succeeded", "delay", "4", "100"}, fields[id][1:5], id) // started, two steps, complete
			_, err := time.Parse(time.RFC3339Nano, fields[id][5])
			require.NoError(t, err)
		}
		follow := followRE.FindAllStringSubmatch(res.stderr, -1)
		require.Len(t, follow, 1, "stderr: %s", res.stderr)
		require.Equal(t, live, follow[0][1])
		require.Equal(t, "streamer call --resume "+live, follow[0][2])
		require.NotRegexp(t, moreRE, res.stderr, "one page")
	})

	t.Run("pages with --limit and --cursor", func(t *testing.T) {
		var ids []string
		args := withToken("list", "--limit", "3")
		for page := 1; ; page++ {
			res := runCLI(t, env, args...)
			require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
			got, _ := listLines(t, res.stdout)
			require.LessOrEqual(t, len(got), 3)
			ids = append(ids, got...)
			more := moreRE.FindStringSubmatch(res.stderr)
			if more == nil {
				break
			}
			require.Equal(t, " --limit 3", more[2], "the next page's command keeps the flags")
			require.Less(t, page, 10)
			args = withToken("list", "--limit", "3", "--cursor", more[1])
		}
		require.Equal(t, newestFirst, ids)

		res := runCLI(t, env, withToken("list", "--limit", "1", "--all")...)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		all, _ := listLines(t, res.stdout)
		require.Equal(t, newestFirst, all, "--all follows every cursor")
	})

	t.Run("--status and --json", func(t *testing.T) {
		res := runCLI(t, env, withToken("list", "--status", "queued,running", "--json")...)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		var out struct {
			Requests []map[string]any `json:"requests"`
			Cursor   *string          `json:"cursor"`
		}
		require.NoError(t, json.Unmarshal([]byte(res.stdout), &out))
		require.Nil(t, out.Cursor)
		require.Len(t, out.Requests, 1)
		r := out.Requests[0]
		require.Equal(t, live, r["request_id"])
		require.Equal(t, "running", r["status"])
		require.Equal(t, "delay", r["action"])
		require.Positive(t, r["seq"])
		require.Positive(t, r["created_at"])

		res = runCLI(t, env, withToken("list", "--status", "failed")...)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.Empty(t, res.stdout)
	})

	t.Run("another principal sees none of them", func(t *testing.T) {
		res := runCLI(t, env, "list", "--token", token(t, uid("cli-other"), ""))
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		require.Empty(t, res.stdout)
	})

	t.Run("mistakes", func(t *testing.T) {
		for _, args := range [][]string{{"list", "--status", "bogus"}, {"list", "--limit", "101"}, {"list", "--limit", "-1"}, {"list", "extra"}, {"list", "--timeout", "0s"}} {
			res := runCLI(t, env, withToken(args...)...)
			require.Equal(t, 2, res.code, "%v: %s", args, res.stderr)
		}
		res := runCLI(t, env, withToken("list", "--cursor", "not-a-cursor!")...)
		require.Equal(t, 1, res.code)
		require.Contains(t, res.stderr, "VALIDATION_ERROR")
		require.Contains(t, res.stderr, "cursor")
		res = runCLI(t, env, "list", "--token", "garbage")
		require.Equal(t, 3, res.code)
	})

	t.Run("the printed command follows the live request", func(t *testing.T) {
		res := runCLI(t, env, withToken("list", "--status", "running")...)
		require.Equal(t, 0, res.code, "stderr: %s", res.stderr)
		follow := followRE.FindStringSubmatch(res.stderr)
		require.NotNil(t, follow, "stderr: %s", res.stderr)
		cancel := runCLI(t, env, withToken("cancel", live)...)
		require.Equal(t, 0, cancel.code, "stderr: %s", cancel.stderr)
		// Resumed, it replays the events and ends with the cancel.
		resumed := runCLI(t, env, withToken(strings.Fields(follow[2])[1:]...)...)
		require.Equal(t, 1, resumed.code, "stdout: %s stderr: %s", resumed.stdout, resumed.stderr)
		require.Contains(t, resumed.stderr, "CANCELED")
		select {
		case err := <-ended:
			require.Equal(t, "CANCELED", client.CodeOf(err))
		case <-time.After(30 * time.Second):
			t.Fatal("the request did not end within 30s of its cancel")
		}
		res = pollCLI(t, env, func(r cliResult) bool { return strings.Contains(r.stdout, " canceled ") }, withToken("list", "--limit", "1")...)
		ids, fields := listLines(t, res.stdout)
		require.Equal(t, []string{live}, ids)
		require.Equal(t, "canceled", fields[live][1])
	})
}
