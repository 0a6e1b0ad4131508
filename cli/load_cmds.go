package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/streamer-go/streamer/internal/loadpush"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// Bounds of the load commands' flags.
const (
	maxPushJobs  = 10000
	maxLoadConns = 19500 // this machine's processes have 20,000 descriptors
)

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseNoArgs parses flags and refuses positional arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	return nil
}

// loadTokens returns the token of each load connection: token when given
// (or $STREAMER_TOKEN), else one minted with the secret of $STREAMER_JWT_SECRET
// or dataDir for the subject load-K, K the connection's number modulo
// subjects.
func loadTokens(token, dataDir string, subjects int) (func(int) string, error) {
	if token == "" {
		token = os.Getenv("STREAMER_TOKEN")
	}
	if token != "" {
		return func(int) string { return token }, nil
	}
	secret, _, err := secretFor(dataDir)
	if err != nil {
		return nil, err
	}
	if secret == nil {
		_, _, err := tokenFromEnv(dataDir) // its error names every source
		return nil, err
	}
	toks := make([]string, subjects)
	for i := range toks {
		if toks[i], err = middleware.SignHS256(secret, middleware.Claims{Subject: "load-" + strconv.Itoa(i), TTL: 2 * time.Hour}); err != nil {
			return nil, err
		}
	}
	return func(i int) string { return toks[i%subjects] }, nil
}

// loadFlags are the flags every load mode has.
type loadFlags struct {
	url, token, dataDir *string
}

func addLoadFlags(fs *flag.FlagSet) loadFlags {
	return loadFlags{
		url:     fs.String("url", envOr("STREAMER_URL", defaultWSURL), "WebSocket URL of the server"),
		token:   fs.String("token", "", "JWT of every connection (default $STREAMER_TOKEN; else minted per subject with $STREAMER_JWT_SECRET or the secret `streamer dev` keeps in --data-dir)"),
		dataDir: fs.String("data-dir", devserver.DefaultDataDir, "data dir of `streamer dev`, whose jwt-secret mints tokens when no other is given"),
	}
}

func runPushCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load push", stderr)
	lf := addLoadFlags(fs)
	cfg := pushConfig{action: loadpush.Action}
	fs.IntVar(&cfg.jobs, "jobs", 100, "async jobs (1-10000), all submitted at once")
	fs.IntVar(&cfg.conns, "conns", 0, "connections the jobs are spread over (1-jobs; default one per job)")
	subjects := fs.Int("subjects", 0, "token subjects the connections are spread over, when tokens are minted (default one per connection)")
	fs.IntVar(&cfg.rate, "rate", 10, fmt.Sprintf("progress events a second of each job (1-%d)", loadpush.MaxRate))
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, fmt.Sprintf("how long each job reports (at most %v; rate × duration at most %d events)", loadpush.MaxDuration, loadpush.MaxEvents))
	fs.DurationVar(&cfg.timeout, "timeout", 0, "stop waiting this long after the submits (default 3 × duration + 30s)")
	fs.BoolVar(&cfg.strict, "coalesce-off", false, "the server does not coalesce progress (streamer dev --coalesce-interval off): every event must arrive")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if cfg.conns == 0 {
		cfg.conns = cfg.jobs
	}
	if *subjects == 0 {
		*subjects = cfg.conns
	}
	if err := checkPushFlags(&cfg, *subjects); err != nil {
		return err
	}
	var err error
	cfg.url = *lf.url
	if cfg.tokens, err = loadTokens(*lf.token, *lf.dataDir, *subjects); err != nil {
		return err
	}
	res, err := runPush(ctx, cfg)
	if err != nil && res.jobs == 0 {
		return err
	}
	printPush(stdout, cfg, res)
	if err != nil {
		return err
	}
	return res.check(cfg.strict)
}

// checkPushFlags validates the flags of push and fills the default timeout.
func checkPushFlags(cfg *pushConfig, subjects int) error {
	switch {
	case cfg.jobs < 1 || cfg.jobs > maxPushJobs:
		return usageError{fmt.Sprintf("--jobs %d: must be 1-%d", cfg.jobs, maxPushJobs)}
	case cfg.conns < 1 || cfg.conns > cfg.jobs || cfg.conns > maxLoadConns:
		return usageError{fmt.Sprintf("--conns %d: must be 1-%d and at most --jobs", cfg.conns, maxLoadConns)}
	case subjects < 1 || subjects > cfg.conns:
		return usageError{fmt.Sprintf("--subjects %d: must be 1 to --conns", subjects)}
	case cfg.timeout < 0:
		return usageError{"--timeout must not be negative"}
	}
	if cfg.duration%time.Millisecond != 0 {
		return usageError{fmt.Sprintf("--duration %v: whole milliseconds only", cfg.duration)}
	}
	p := loadpush.Payload{Rate: cfg.rate, DurationMs: int(cfg.duration.Milliseconds())}
	if err := p.Check(); err != nil {
		return usageError{"--rate/--duration: " + err.Error()}
	}
	if cfg.timeout == 0 {
		cfg.timeout = 3*cfg.duration + 30*time.Second
	}
	return nil
}

func runIdleCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load idle", stderr)
	lf := addLoadFlags(fs)
	n := fs.Int("conns", 1000, fmt.Sprintf("connections to hold open (1-%d)", maxLoadConns))
	pid := fs.Int("pid", 0, "process id of the server, whose VmRSS is read from /proc (required)")
	gcURL := fs.String("gc-url", "", "URL that makes the server collect its garbage (default the server's /debug/pprof/heap?gc=1: streamer dev --pprof)")
	settle := fs.Duration("settle", 2*time.Second, "wait this long after the last connect before measuring")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	switch {
	case *n < 1 || *n > maxLoadConns:
		return usageError{fmt.Sprintf("--conns %d: must be 1-%d", *n, maxLoadConns)}
	case *pid <= 0:
		return usageError{"--pid: the server's process id is required (and must be positive)"}
	case *settle < 0:
		return usageError{"--settle must not be negative"}
	}
	if *gcURL == "" {
		u, err := pprofGCURL(*lf.url)
		if err != nil {
			return usageError{err.Error()}
		}
		*gcURL = u
	}
	// One subject per connection when tokens are minted: a principal
	// holds at most 100 connections by default.
	tokens, err := loadTokens(*lf.token, *lf.dataDir, *n)
	if err != nil {
		return err
	}
	res, err := runIdle(ctx, *lf.url, *gcURL, *pid, tokens, *n, *settle)
	if err != nil {
		return err
	}
	printIdle(stdout, res)
	return nil
}

func printIdle(w io.Writer, r idleResult) {
	fmt.Fprintf(w, "idle: %d connections (dialed in %v); server RSS %.1f MiB before, %.1f MiB with them (after a GC)\n",
		r.conns, r.dialDuration.Round(time.Millisecond), float64(r.before)/(1<<20), float64(r.after)/(1<<20))
	fmt.Fprintf(w, "per connection: %.1f KiB\n", r.perConn()/1024)
}

func runConnectCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load connect", stderr)
	lf := addLoadFlags(fs)
	n := fs.Int("conns", 1000, "connections to open and close (1-1000000)")
	parallel := fs.Int("parallel", 8, "connects in flight at once (1-1000)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	switch {
	case *n < 1 || *n > 1000000:
		return usageError{fmt.Sprintf("--conns %d: must be 1-1000000", *n)}
	case *parallel < 1 || *parallel > 1000:
		return usageError{fmt.Sprintf("--parallel %d: must be 1-1000", *parallel)}
	}
	// Subjects enough that no principal meets its new-connection rate
	// (20 a second, bursts of 100) when tokens are minted.
	tokens, err := loadTokens(*lf.token, *lf.dataDir, min(*n, 20000))
	if err != nil {
		return err
	}
	_, took, err := dialMany(ctx, *lf.url, tokens, *n, *parallel, false)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "connects: %d (JWT checked, each closed at once) in %v: %.0f/s\n", *n, took.Round(time.Millisecond), float64(*n)/took.Seconds())
	return nil
}
