package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/streamer-go/streamer/client"
)

// defaultCallTimeout bounds status, cancel and actions, which the server
// answers at once.
const defaultCallTimeout = 30 * time.Second

// runStatus is `streamer status ID` and, with cancel set, `streamer cancel
// ID`: it prints the request's status (after the cancel).
func runStatus(ctx context.Context, cmd string, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the status as one JSON object")
	timeout := fs.Duration("timeout", defaultCallTimeout, "give up waiting for the answer after this long")
	fs.Usage = func() {
		if cmd == "cancel" {
			fmt.Fprintf(stderr, "Usage: streamer cancel ID [flags]\n\nAsks the server to cancel request ID and prints its status: canceling, or\nthe final one when it had already finished.\n\nFlags:\n")
		} else {
			fmt.Fprintf(stderr, "Usage: streamer status ID [flags]\n\nPrints the status of request ID: its action, state, progress, and its\nresult or error once finished.\n\nFlags:\n")
		}
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamer %s: %v\n", cmd, err)
		return exitUsage
	}
	switch {
	case len(pos) == 0:
		fmt.Fprintf(stderr, "streamer %s: the request ID is required\n", cmd)
		fs.Usage()
		return exitUsage
	case len(pos) > 1:
		fmt.Fprintf(stderr, "streamer %s: unexpected argument %q\n", cmd, pos[1])
		return exitUsage
	case *timeout <= 0:
		fmt.Fprintf(stderr, "streamer %s: --timeout must be positive\n", cmd)
		return exitUsage
	}
	id := pos[0]
	ctx, c, done, code := cf.connect(ctx, cmd, *timeout, stderr)
	if c == nil {
		return code
	}
	defer done()
	var st client.Status
	err = retryUnavailable(ctx, func() error {
		var err error
		if cmd == "cancel" {
			st, err = c.Cancel(ctx, id)
		} else {
			st, err = c.Status(ctx, id)
		}
		return err
	})
	if err != nil {
		return reportCallError(ctx, cmd, err, stderr)
	}
	switch {
	case *asJSON:
		printStatusJSON(stdout, st)
	case isTTY(stdout):
		printStatusHuman(stdout, st, time.Now(), cf.args())
	default:
		printStatusPlain(stdout, st)
	}
	return exitOK
}

// unavailableTries is how many times status, cancel and actions send their
// call when the server answers UNAVAILABLE (all three are safe to repeat).
const unavailableTries = 3

// retryUnavailable runs call again after the server's retry_after_ms while
// it fails with UNAVAILABLE, at most unavailableTries times in all.
func retryUnavailable(ctx context.Context, call func() error) error {
	for try := 1; ; try++ {
		err := call()
		if !client.IsUnavailable(err) || try == unavailableTries {
			return err
		}
		wait := time.Second
		var ce *client.Error
		if errors.As(err, &ce) {
			if d, ok := ce.RetryAfter(); ok {
				wait = d
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// reportCallError prints the failure of a status, cancel or actions call
// and returns its exit code: 130 for Ctrl-C, 1 otherwise.
func reportCallError(ctx context.Context, cmd string, err error, stderr io.Writer) int {
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "streamer %s: %s: %s\n", cmd, ce.Code, ce.Message)
		if len(ce.Details) > 0 {
			fmt.Fprintf(stderr, "  details: %s\n", ce.Details)
		}
	case errors.Is(ctx.Err(), context.Canceled):
		fmt.Fprintf(stderr, "streamer %s: interrupted\n", cmd)
		return exitInterrupted
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "streamer %s: no answer within --timeout\n", cmd)
	default:
		fmt.Fprintf(stderr, "streamer %s: %v\n", cmd, err)
	}
	return exitFailed
}

// statusJSON is the --json form of a status, with the protocol's field
// names.
type statusJSON struct {
	RequestID  string          `json:"request_id"`
	Action     string          `json:"action"`
	Status     string          `json:"status"`
	Seq        int64           `json:"seq"`
	Percentage float64         `json:"percentage"`
	Message    string          `json:"message"`
	Result     json.RawMessage `json:"result,omitempty"`
	Chunks     int             `json:"chunks,omitempty"`
	Error      *errorJSON      `json:"error,omitempty"`
	CreatedAt  int64           `json:"created_at,omitempty"`
	UpdatedAt  int64           `json:"updated_at,omitempty"`
}

type errorJSON struct {
	Code    string          `json:"code"`
	Message string          `json:"message"`
	Details json.RawMessage `json:"details,omitempty"`
}

func printStatusJSON(w io.Writer, st client.Status) {
	out := statusJSON{
		RequestID: st.RequestID, Action: st.Action, Status: st.Status, Seq: st.Seq,
		Percentage: st.Percentage, Message: st.Message, Result: st.Result, Chunks: st.Chunks,
		CreatedAt: unixMS(st.CreatedAt), UpdatedAt: unixMS(st.UpdatedAt),
	}
	if st.Error != nil {
		out.Error = &errorJSON{Code: st.Error.Code, Message: st.Error.Message, Details: st.Error.Details}
	}
	b, _ := json.Marshal(out)
	fmt.Fprintf(w, "%s\n", b)
}

func unixMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// printStatusPlain prints one "field value" line per field, for scripts.
func printStatusPlain(w io.Writer, st client.Status) {
	fmt.Fprintf(w, "request_id %s\n", st.RequestID)
	fmt.Fprintf(w, "action %s\n", st.Action)
	fmt.Fprintf(w, "status %s\n", st.Status)
	fmt.Fprintf(w, "seq %d\n", st.Seq)
	fmt.Fprintf(w, "percentage %s\n", strconv.FormatFloat(st.Percentage, 'f', -1, 64))
	fmt.Fprintf(w, "message %s\n", st.Message)
	if !st.CreatedAt.IsZero() {
		fmt.Fprintf(w, "created_at %s\n", st.CreatedAt.UTC().Format(time.RFC3339Nano))
	}
	if !st.UpdatedAt.IsZero() {
		fmt.Fprintf(w, "updated_at %s\n", st.UpdatedAt.UTC().Format(time.RFC3339Nano))
	}
	if len(st.Result) > 0 {
		fmt.Fprintf(w, "result %s\n", st.Result)
	}
	if st.Chunks > 0 {
		fmt.Fprintf(w, "chunks %d\n", st.Chunks)
	}
	if st.Error != nil {
		fmt.Fprintf(w, "error %s: %s\n", st.Error.Code, st.Error.Message)
	}
}

// printStatusHuman prints the status for a person at a terminal.
func printStatusHuman(w io.Writer, st client.Status, now time.Time, args string) {
	fmt.Fprintf(w, "Request %s (%s)\n", st.RequestID, st.Action)
	progress := ""
	if st.Percentage > 0 || st.Message != "" {
		progress = fmt.Sprintf("  %.1f%%", st.Percentage)
		if st.Message != "" {
			progress += "  " + st.Message
		}
	}
	fmt.Fprintf(w, "  status:   %s%s\n", st.Status, progress)
	fmt.Fprintf(w, "  events:   %d\n", st.Seq)
	if !st.CreatedAt.IsZero() {
		fmt.Fprintf(w, "  created:  %s\n", humanTime(st.CreatedAt, now))
	}
	if !st.UpdatedAt.IsZero() {
		fmt.Fprintf(w, "  updated:  %s\n", humanTime(st.UpdatedAt, now))
	}
	if len(st.Result) > 0 {
		fmt.Fprintf(w, "  result:   %s\n", st.Result)
	}
	if st.Chunks > 0 {
		fmt.Fprintf(w, "  result:   too large to show here (%d chunks); print it with: streamer call --resume %s%s\n", st.Chunks, shellQuote(st.RequestID), args)
	}
	if st.Error != nil {
		fmt.Fprintf(w, "  error:    %s: %s\n", st.Error.Code, st.Error.Message)
	}
	switch st.Status {
	case "queued", "running":
		fmt.Fprintf(w, "  follow it with: streamer call --resume %s%s\n", shellQuote(st.RequestID), args)
	}
}

// humanTime shows t in local time with how long ago it was.
func humanTime(t, now time.Time) string {
	layout := time.TimeOnly
	if y, m, d := t.Local().Date(); y != now.Local().Year() || m != now.Local().Month() || d != now.Local().Day() {
		layout = time.DateTime
	}
	ago := now.Sub(t).Round(time.Second)
	if ago < 0 {
		ago = 0
	}
	return fmt.Sprintf("%s (%s ago)", t.Local().Format(layout), ago)
}
