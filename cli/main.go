// Package cli is Streamer's command line, for any app: the streamer
// command (cmd/streamer) is Main with this repository's plugins, and a
// project made with `streamer new` runs Main with its own, so that
// `go run . dev` serves them exactly as `streamer dev` serves ours.
//
//	streamer new DIR --module M       make a project of your own
//	streamer dev                      run the whole stack locally
//	streamer token --sub alice        mint a dev token
//	streamer call ACTION [JSON]       send a request and wait for its result
//	streamer status ID                print a request's status
//	streamer cancel ID                cancel a request
//	streamer actions                  list the actions the server serves
//	streamer list                     list your requests, newest first
//	streamer package                  build the Lambdas into dist/<function>.zip
//	streamer load [push|idle|connect] measure a server: echo, progress, memory, connects
//	streamer ops list|inspect|...     operator commands over the store
//
// Run "streamer help" or "streamer COMMAND -h" for details.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/streamer-go/streamer"
)

const usage = `streamer: long-running requests over WebSocket, on AWS Lambda or this machine.

Usage:
  streamer new     DIR --module example.com/myapp [--replace PATH]
  streamer dev     [--addr 127.0.0.1:8080] [--data-dir DIR] [--log-level info]
                   [--rate-limit 10/s,burst=20] [--concurrency 64] [--coalesce-interval 100ms|off]
                   [--pprof] [--bench]
  streamer token   --sub SUBJECT [--tenant T] [--scope "a b"] [--ttl 1h]
  streamer call    ACTION [JSON] [--url URL] [--token JWT] [--id ID] [--timeout D]
  streamer call    --resume ID [--url URL] [--token JWT]
  streamer status  ID [--url URL] [--token JWT] [--json]
  streamer cancel  ID [--url URL] [--token JWT] [--json]
  streamer actions [--url URL] [--token JWT] [--json]
  streamer list    [--status running,queued] [--limit N] [--cursor C] [--all] [--json] [--url URL] [--token JWT]
  streamer package [--dir .] [--out dist]
  streamer ops     list|inspect|cancel|retry|redrive [--data-dir DIR | --table NAME] (streamer ops help)
  streamer load    [echo] [--url URL] [--conns 200] [--requests 50] [--action echo] [--payload JSON]
  streamer load    push [--jobs 100] [--conns N] [--rate 10] [--duration 10s] [--coalesce-off]
  streamer load    idle --pid PID [--conns 1000] [--gc-url URL]
  streamer load    connect [--conns 1000] [--parallel 8]
  streamer load    floor [--addr 127.0.0.1:0]     the bare server the dev stack is measured against
  streamer load    bench [--reps 3] [--quick] [--only NAME]   every scenario, floor and dev (make bench-load)

Tokens: call, status, cancel, actions, list and load use --token, else $STREAMER_TOKEN,
else mint one (subject "cli") with $STREAMER_JWT_SECRET, else with the secret
streamer dev keeps in its data dir (--data-dir, default .streamer). token uses
the same secrets.

Exit codes: 0 done, 1 the request or call failed (its code is printed), 2 usage,
3 the server could not be reached or refused the token, 130 interrupted (Ctrl-C;
call then prints the request id and the commands that follow or cancel it).

Environment:
  STREAMER_JWT_SECRET   HS256 secret (at least 32 bytes) used by dev, token and the
                        clients. dev makes one and keeps it in its data dir when unset.
  STREAMER_URL          default --url of the clients (ws://127.0.0.1:8080/ws)
  STREAMER_TOKEN        default --token of the clients
  STREAMER_FAULT_DYNAMODB_THROTTLE, STREAMER_FAULT_SEED
                        fault injection for tests, dev --aws-local only: the fraction
                        (0-1) of DynamoDB calls answered with a throttling error, and
                        the seed of their choice (default 1). Unset: none.
`

// Main is the whole body of an app's main package:
//
//	func main() { cli.Main(plugins.All) }
//
// It runs the command its arguments name (dev, call, status, ...; see
// "help") with the app's plugins, until the command ends or the process is
// interrupted, and exits with the command's exit code.
func Main(plugins streamer.PluginsFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], os.Stdout, os.Stderr, plugins)
	stop()
	os.Exit(code)
}

// Run executes the command args name (args excludes the program name), with
// the app's plugins for dev, and returns the process exit code: 0 done, 1
// failed, 2 usage, 3 unreachable or unauthorized, 130 interrupted.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, plugins streamer.PluginsFunc) int {
	if plugins == nil {
		fmt.Fprintln(stderr, "cli: Run needs the app's PluginsFunc")
		return 2
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "dev":
		err = runDev(ctx, args[1:], stdout, stderr, plugins)
	case "token":
		err = runToken(args[1:], stdout, stderr)
	case "call":
		return runCall(ctx, args[1:], stdout, stderr)
	case "status", "cancel":
		return runStatus(ctx, args[0], args[1:], stdout, stderr)
	case "actions":
		return runActions(ctx, args[1:], stdout, stderr)
	case "list":
		return runList(ctx, args[1:], stdout, stderr)
	case "ops":
		return runOps(ctx, args[1:], stdout, stderr, plugins)
	case "load":
		err = runLoadCommand(ctx, args[1:], stdout, stderr)
	case "package":
		err = runPackage(ctx, args[1:], stdout, stderr)
	case "new":
		err = runNew(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "streamer: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "streamer %s: %v\n", args[0], err)
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	return 0
}

// usageError marks a command-line mistake (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// parseInterleaved parses flags that may come before, between or after the
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
