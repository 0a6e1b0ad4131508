package main

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
	"github.com/streamer-go/streamer/middleware"
)

// Exit codes of `streamer call`.
const (
	exitOK       = 0
	exitFailed   = 1 // the request failed; the error code is printed
	exitUsage    = 2
	exitConnect  = 3 // the server could not be reached or refused the token
	defaultWSURL = "ws://127.0.0.1:8080/ws"
)

func runCall(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", envOr("STREAMER_URL", defaultWSURL), "WebSocket URL of the server")
	token := fs.String("token", "", "JWT (default $STREAMER_TOKEN, or one minted with $STREAMER_JWT_SECRET)")
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
	if *token == "" {
		*token, err = tokenFromEnv()
		if err != nil {
			fmt.Fprintf(stderr, "streamer call: %v\n", err)
			return exitUsage
		}
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}

	c, err := client.Dial(ctx, *url, client.Options{Token: *token})
	if errors.Is(err, client.ErrUnauthorized) {
		fmt.Fprintf(stderr, "streamer call: %s refused the token (HTTP 401): check --token or STREAMER_TOKEN\n", *url)
		return exitConnect
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamer call: cannot connect to %s: %v\n", *url, err)
		return exitConnect
	}
	defer c.Close()

	bar := newProgressPrinter(stderr)
	opts := []client.RequestOption{client.WithProgress(bar.update)}
	if *id != "" {
		opts = append(opts, client.WithID(*id))
	}
	var res json.RawMessage
	if *resume != "" {
		res, err = c.Resume(ctx, *resume, 0, opts...)
	} else {
		res, err = c.Request(ctx, action, payload, opts...)
	}
	bar.done()
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

// tokenFromEnv returns $STREAMER_TOKEN, or a token for subject "cli"
// minted with $STREAMER_JWT_SECRET.
func tokenFromEnv() (string, error) {
	if t := os.Getenv("STREAMER_TOKEN"); t != "" {
		return t, nil
	}
	secret, err := secretFromEnv()
	if err != nil {
		return "", err
	}
	if secret == nil {
		return "", errors.New("no token: pass --token, set STREAMER_TOKEN, or set STREAMER_JWT_SECRET to mint one")
	}
	return middleware.SignHS256(secret, middleware.Claims{Subject: "cli", TTL: time.Hour})
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

func (p *progressPrinter) done() {
	if p.tty && p.drawn {
		fmt.Fprintln(p.w)
	}
}
