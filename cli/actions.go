package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/streamer-go/streamer/client"
)

// runActions is `streamer actions`: it lists the actions the server serves
// to the token's principal, with their mode.
func runActions(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("actions", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf connFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the list as one JSON array")
	timeout := fs.Duration("timeout", defaultCallTimeout, "give up waiting for the answer after this long")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: streamer actions [flags]\n\nLists the actions the server serves to the token's principal (those whose\nscopes it holds), with their mode: sync, async, or auto (decided per request).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamer actions: %v\n", err)
		return exitUsage
	}
	switch {
	case len(pos) > 0:
		fmt.Fprintf(stderr, "streamer actions: unexpected argument %q\n", pos[0])
		return exitUsage
	case *timeout <= 0:
		fmt.Fprintln(stderr, "streamer actions: --timeout must be positive")
		return exitUsage
	}
	ctx, c, done, code := cf.connect(ctx, "actions", *timeout, stderr)
	if c == nil {
		return code
	}
	defer done()
	var list []client.Action
	err = retryUnavailable(ctx, func() error {
		var err error
		list, err = c.Actions(ctx)
		return err
	})
	if err != nil {
		return reportCallError(ctx, "actions", err, stderr)
	}
	switch {
	case *asJSON:
		printActionsJSON(stdout, list)
	case isTTY(stdout):
		printActionsHuman(stdout, list)
	default:
		// One line per action: name, mode, then the scopes it requires.
		for _, a := range list {
			fmt.Fprintln(stdout, strings.Join(append([]string{a.Name, a.Mode}, a.Scopes...), " "))
		}
	}
	return exitOK
}

func printActionsJSON(w io.Writer, list []client.Action) {
	type action struct {
		Name   string   `json:"name"`
		Mode   string   `json:"mode"`
		Scopes []string `json:"scopes,omitempty"`
	}
	out := make([]action, len(list))
	for i, a := range list {
		out[i] = action(a)
	}
	b, _ := json.Marshal(out)
	fmt.Fprintf(w, "%s\n", b)
}

// printActionsHuman prints a table for a person at a terminal.
func printActionsHuman(w io.Writer, list []client.Action) {
	if len(list) == 0 {
		fmt.Fprintln(w, "No actions are available to this token.")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tMODE\tSCOPES")
	for _, a := range list {
		scopes := strings.Join(a.Scopes, " ")
		if scopes == "" {
			scopes = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", a.Name, a.Mode, scopes)
	}
	_ = tw.Flush()
	fmt.Fprintln(w, "\nCall one with: streamer call ACTION '{...payload...}'")
}
