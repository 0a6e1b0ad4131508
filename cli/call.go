package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"

	"github.com/streamer-go/streamer/client"
)

// Exit codes of `streamer call`.
const (
	exitOK      = 0
	exitFailed  = 1 // the request failed; the error code is printed
	exitUsage   = 2
	exitConnect = 3 // the server could not be reached or refused the token
	// exitInterrupted (130) is Ctrl-C; see conn.go.
	defaultWSURL = "ws://127.0.0.1:8080/ws"
)

func runCall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connFlags
	cf.register(fs)
	id := fs.String("id", "", "request id (default: a new one); re-sending an id attaches to that request")
	resume := fs.String("resume", "", "attach to an existing request by id instead of sending one")
	timeout := fs.Duration("timeout", 0, "give up waiting after this long (default: wait for the result)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: streamer call ACTION [JSON] [flags]\n       streamer call --resume ID [flags]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamer call: %v\n", err)
		return exitUsage
	}
	var action string
	var payload json.RawMessage
	switch {
	case *resume != "" && len(pos) > 0:
		fmt.Fprintln(stderr, "streamer call: --resume takes no ACTION or JSON")
		return exitUsage
	case *resume == "" && len(pos) == 0:
		fmt.Fprintln(stderr, "streamer call: ACTION is required (or --resume ID)")
		fs.Usage()
		return exitUsage
	case len(pos) > 2:
		fmt.Fprintf(stderr, "streamer call: unexpected argument %q; quote the JSON payload as one argument\n", pos[2])
		return exitUsage
	case len(pos) >= 1:
		action = pos[0]
		if len(pos) == 2 {
			if !json.Valid([]byte(pos[1])) {
				fmt.Fprintf(stderr, "streamer call: the payload %q is not valid JSON\n", pos[1])
				return exitUsage
			}
			payload = json.RawMessage(pos[1])
		}
	}
	if err := cf.resolveToken(); err != nil {
		fmt.Fprintf(stderr, "streamer call: %v\n", err)
		return exitUsage
	}
	interrupted := ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	c, code := cf.dial(ctx, "call", stderr)
	if c == nil {
		return code
	}
	defer c.Close()

	bar := newProgressPrinter(stderr)
	opts := []client.RequestOption{client.WithProgress(bar.update), client.WithLifecycle(bar.lifecycle)}
	// The id is chosen here, so that it can be printed when interrupted.
	reqID := *resume
	if reqID == "" {
		reqID = *id
		if reqID == "" {
			reqID = newRequestID()
		}
		opts = append(opts, client.WithID(reqID))
	}
	var res json.RawMessage
	if *resume != "" {
		res, err = c.Resume(ctx, *resume, 0, opts...)
	} else {
		res, err = c.Request(ctx, action, payload, opts...)
	}
	bar.done()
	switch {
	case err != nil && interrupted.Err() != nil:
		fmt.Fprintf(stderr, "streamer call: interrupted; request %s goes on on the server if it was accepted as asynchronous.\n", reqID)
		printFollowUp(stderr, reqID, cf.args())
		return exitInterrupted
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil:
		fmt.Fprintf(stderr, "streamer call: no result within --timeout %s; request %s goes on on the server if it was accepted as asynchronous.\n", *timeout, reqID)
		printFollowUp(stderr, reqID, cf.args())
		return exitFailed
	}
	if err != nil {
		var ce *client.Error
		if errors.As(err, &ce) {
			fmt.Fprintf(stderr, "streamer call: %s: %s\n", ce.Code, ce.Message)
			if len(ce.Details) > 0 {
				fmt.Fprintf(stderr, "  details: %s\n", ce.Details)
			}
			return exitFailed
		}
		fmt.Fprintf(stderr, "streamer call: %v\n", err)
		return exitFailed
	}
	fmt.Fprintf(stdout, "%s\n", res)
	return exitOK
}

// printFollowUp prints the commands that follow, inspect and cancel
// request id; args are the connection flags to repeat.
func printFollowUp(w io.Writer, id, args string) {
	q := shellQuote(id)
	fmt.Fprintf(w, "  follow it:  streamer call --resume %s%s\n", q, args)
	fmt.Fprintf(w, "  status:     streamer status %s%s\n", q, args)
	fmt.Fprintf(w, "  cancel it:  streamer cancel %s%s\n", q, args)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// progressPrinter shows progress as a redrawn bar on a terminal and as one
// line per update otherwise.
type progressPrinter struct {
	w     io.Writer
	tty   bool
	drawn bool
}

func newProgressPrinter(w io.Writer) *progressPrinter {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = isatty.IsTerminal(f.Fd())
	}
	return &progressPrinter{w: w, tty: tty}
}

func (p *progressPrinter) update(pr client.Progress) {
	if !p.tty {
		fmt.Fprintf(p.w, "progress %5.1f%% %s\n", pr.Percentage, pr.Message)
		return
	}
	const width = 30
	filled := int(pr.Percentage / 100 * width)
	filled = min(max(filled, 0), width)
	msg := pr.Message
	if len(msg) > 40 {
		msg = msg[:40]
	}
	fmt.Fprintf(p.w, "\r[%s%s] %5.1f%% %-40s", strings.Repeat("#", filled), strings.Repeat(".", width-filled), pr.Percentage, msg)
	p.drawn = true
}

// lifecycle prints a lifecycle event on a line of its own: "started
// (attempt 1)", "continued (attempt 1, continuation 2)" or "retrying
// (attempt 1 failed: CODE: message; next at 15:04:05)".
func (p *progressPrinter) lifecycle(l client.Lifecycle) {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
	switch l.Type {
	case "started":
		fmt.Fprintf(p.w, "started (attempt %d)\n", l.Attempt)
	case "continued":
		fmt.Fprintf(p.w, "continued (attempt %d, continuation %d) at %.1f%% %s\n", l.Attempt, l.Continuations, l.Percentage, l.Message)
	case "retrying":
		why := ""
		if l.Error != nil {
			why = ": " + l.Error.Code + ": " + l.Error.Message
		}
		fmt.Fprintf(p.w, "retrying (attempt %d failed%s; next at %s)\n", l.Attempt, why, l.NextAt.Format(time.TimeOnly))
	default:
		fmt.Fprintf(p.w, "%s (attempt %d)\n", l.Type, l.Attempt)
	}
}

func (p *progressPrinter) done() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
}
