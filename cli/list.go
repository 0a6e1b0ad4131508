package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/streamer-go/streamer/client"
)

// listStatuses are the statuses `streamer list --status` accepts.
var listStatuses = []string{"queued", "running", "canceling", "succeeded", "failed", "canceled"}

// runList is `streamer list`: it prints the token's principal's requests,
// newest first, a page at a time (or all of them with --all), with the
// command that follows each live one.
func runList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connFlags
	cf.register(fs)
	status := fs.String("status", "", "only these statuses, comma separated: "+strings.Join(listStatuses, ", ")+" (default: all)")
	limit := fs.Int("limit", 0, fmt.Sprintf("requests per page, 1-%d (default: the server's, 20)", client.MaxListLimit))
	cursor := fs.String("cursor", "", "go on from the cursor a previous page printed")
	all := fs.Bool("all", false, "follow the cursors and print every page")
	asJSON := fs.Bool("json", false, "print the page (with --all: every request) as one JSON object")
	timeout := fs.Duration("timeout", defaultCallTimeout, "give up waiting for the answers after this long")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: streamer list [flags]\n\nLists the token's principal's requests, newest first: their action, status,\nprogress and last seq, a page at a time, and prints the command that follows\neach live one (queued, running or canceling).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamer list: %v\n", err)
		return exitUsage
	}
	var statuses []string
	if *status != "" {
		for s := range strings.SplitSeq(*status, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(listStatuses, s) {
				fmt.Fprintf(stderr, "streamer list: --status: %q is not one of %s\n", s, strings.Join(listStatuses, ", "))
				return exitUsage
			}
			statuses = append(statuses, s)
		}
	}
	switch {
	case len(pos) > 0:
		fmt.Fprintf(stderr, "streamer list: unexpected argument %q\n", pos[0])
		return exitUsage
	case *limit < 0 || *limit > client.MaxListLimit:
		fmt.Fprintf(stderr, "streamer list: --limit must be 1 to %d\n", client.MaxListLimit)
		return exitUsage
	case *timeout <= 0:
		fmt.Fprintln(stderr, "streamer list: --timeout must be positive")
		return exitUsage
	}
	ctx, c, done, code := cf.connect(ctx, "list", *timeout, stderr)
	if c == nil {
		return code
	}
	defer done()

	opts := client.ListOptions{Statuses: statuses, Limit: *limit, Cursor: *cursor}
	var page client.ListPage
	for {
		var p client.ListPage
		err = retryUnavailable(ctx, func() error {
			var err error
			p, err = c.List(ctx, opts)
			return err
		})
		if err != nil {
			return reportCallError(ctx, "list", err, stderr)
		}
		page.Requests = append(page.Requests, p.Requests...)
		page.Cursor = p.Cursor
		if !*all || p.Cursor == "" {
			break
		}
		if p.Cursor == opts.Cursor {
			fmt.Fprintln(stderr, "streamer list: the server gave the same cursor twice")
			return exitFailed
		}
		opts.Cursor = p.Cursor
	}

	// The flags that select the same pages, for the next page's command.
	var more strings.Builder
	if *status != "" {
		more.WriteString(" --status " + shellQuote(strings.Join(statuses, ",")))
	}
	if *limit > 0 {
		more.WriteString(" --limit " + strconv.Itoa(*limit))
	}
	more.WriteString(cf.args())
	switch {
	case *asJSON:
		printListJSON(stdout, page)
	case isTTY(stdout):
		printListHuman(stdout, page, time.Now(), cf.args(), more.String())
	default:
		printListPlain(stdout, stderr, page, cf.args(), more.String())
	}
	return exitOK
}

// listedJSON is the --json form of a listed request, with the protocol's
// field names.
type listedJSON struct {
	RequestID  string  `json:"request_id"`
	Action     string  `json:"action"`
	Status     string  `json:"status"`
	Seq        int64   `json:"seq"`
	Percentage float64 `json:"percentage"`
	Message    string  `json:"message"`
	CreatedAt  int64   `json:"created_at,omitempty"`
	UpdatedAt  int64   `json:"updated_at,omitempty"`
}

func printListJSON(w io.Writer, page client.ListPage) {
	out := struct {
		Requests []listedJSON `json:"requests"`
		Cursor   string       `json:"cursor,omitempty"`
	}{Requests: make([]listedJSON, len(page.Requests)), Cursor: page.Cursor}
	for i, r := range page.Requests {
		out.Requests[i] = listedJSON{
			RequestID: r.RequestID, Action: r.Action, Status: r.Status, Seq: r.Seq,
			Percentage: r.Percentage, Message: r.Message,
			CreatedAt: unixMS(r.CreatedAt), UpdatedAt: unixMS(r.UpdatedAt),
		}
	}
	b, _ := json.Marshal(out)
	fmt.Fprintf(w, "%s\n", b)
}

// printListPlain prints one line per request on stdout, for scripts:
// request id, status, action, seq, percentage and creation time. The
// commands that follow the live requests, and the one that lists the next
// page, go to stderr.
func printListPlain(stdout, stderr io.Writer, page client.ListPage, args, more string) {
	for _, r := range page.Requests {
		created := "-"
		if !r.CreatedAt.IsZero() {
			created = r.CreatedAt.UTC().Format(time.RFC3339Nano)
		}
		fmt.Fprintf(stdout, "%s %s %s %d %s %s\n", r.RequestID, r.Status, r.Action, r.Seq,
			strconv.FormatFloat(r.Percentage, 'f', -1, 64), created)
	}
	for _, r := range page.Requests {
		if r.Live() {
			fmt.Fprintf(stderr, "follow %s with: streamer call --resume %s%s\n", r.RequestID, shellQuote(r.RequestID), args)
		}
	}
	if page.Cursor != "" {
		fmt.Fprintf(stderr, "more: streamer list --cursor %s%s\n", shellQuote(page.Cursor), more)
	}
}

// printListHuman prints a table for a person at a terminal.
func printListHuman(w io.Writer, page client.ListPage, now time.Time, args, more string) {
	if len(page.Requests) == 0 {
		fmt.Fprintln(w, "No requests.")
	} else {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REQUEST\tACTION\tSTATUS\tPROGRESS\tEVENTS\tCREATED")
		for _, r := range page.Requests {
			progress := fmt.Sprintf("%.1f%%", r.Percentage)
			if r.Message != "" {
				msg := r.Message
				if len(msg) > 40 {
					msg = strings.ToValidUTF8(msg[:40], "") + "…"
				}
				progress += " " + strings.Join(strings.Fields(msg), " ")
			}
			created := "-"
			if !r.CreatedAt.IsZero() {
				created = humanTime(r.CreatedAt, now)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", r.RequestID, r.Action, r.Status, progress, r.Seq, created)
		}
		_ = tw.Flush()
	}
	live := slices.ContainsFunc(page.Requests, client.ListedRequest.Live)
	if live {
		fmt.Fprintln(w, "\nFollow a live one with:")
		for _, r := range page.Requests {
			if r.Live() {
				fmt.Fprintf(w, "  streamer call --resume %s%s\n", shellQuote(r.RequestID), args)
			}
		}
	}
	if page.Cursor != "" {
		fmt.Fprintf(w, "\nMore: streamer list --cursor %s%s\n", shellQuote(page.Cursor), more)
	}
}
