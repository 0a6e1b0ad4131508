// Package devserver runs a whole Streamer stack in one process: the local
// WebSocket gateway, the router, the embedded worker and the durable bolt
// store. It is what `streamer dev` runs, and what a program of your own runs
// to try its plugins on a laptop:
//
//	err := devserver.Run(ctx, devserver.Config{Plugins: []streamer.Plugin{myplugin.New()}})
//
// Clients connect to ws://ADDR/ws with a JWT. The Management API
// (/@connections/{id}, as API Gateway's) listens on its own loopback
// address, Info.ManagementURL; on ADDR it is refused with 403.
package devserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/blob/localblob"
	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/metrics/prom"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/bolt"
	"github.com/streamer-go/streamer/transport/local"
)

// Defaults of [Config].
const (
	// BlobsPath is where the dev server serves its blob store (see
	// Config.Build).
	BlobsPath = "/blobs/"
	// sweepInterval is how often expired files of the blob store are
	// deleted.
	sweepInterval  = 10 * time.Minute
	DefaultAddr    = "127.0.0.1:8080"
	DefaultDataDir = ".streamer"
	// MinSecretLen is the shortest HS256 secret accepted.
	MinSecretLen = middleware.MinSecretLen
)

// Config configures [Run]. Zero values mean the documented defaults.
type Config struct {
	// Addr is where to listen; default 127.0.0.1:8080. Port 0 picks a free
	// port (see Ready). Ignored when Listener is set.
	Addr string
	// Listener, when set, is used instead of listening on Addr; Run closes
	// it.
	Listener net.Listener
	// DataDir holds the bolt database and, when Secret is nil, the
	// generated secret. Default ".streamer". Ignored when Store is set.
	DataDir string
	// Store replaces the bolt store (for tests: storage/memory).
	Store storage.Store
	// Secret is the HS256 key tokens are checked with (at least 32 bytes).
	// When nil, one is generated on first use and kept in DataDir, so
	// tokens stay valid across restarts.
	Secret []byte
	// Plugins provide the actions.
	Plugins []streamer.Plugin
	// Build, when set, builds more plugins (served after Plugins) with the
	// dev server's [streamer.Env]: its blob store is DataDir/blobs, served
	// at /blobs/ with signed URLs that expire (expired files are deleted
	// every 10 minutes), and its retention streamer.DefaultRetention. It is
	// how `streamer dev` serves an app's plugins (cli.Main).
	Build streamer.PluginsFunc
	// Middleware wraps every action, inside the server's own logging and
	// token-expiry middleware.
	Middleware []streamer.Middleware
	// RateLimit and ReservedRateLimit are the App's own limits on what
	// clients send (see [streamer.Config.RateLimit]): every frame, the
	// reserved actions' (ping, status, resume, cancel, actions, list) in
	// a bucket of their own, is refused with RATE_LIMITED past them,
	// before any middleware or store access. The buckets, and those of
	// the actions' ActionOptions.RateLimit, are in memory. Zero: none.
	// `streamer dev --rate-limit` sets RateLimit.
	RateLimit         streamer.RateLimit
	ReservedRateLimit streamer.RateLimit
	// Handlers are extra HTTP routes (patterns as for http.ServeMux), such
	// as a file server for results. "/ws", "/metrics" and "/@connections/"
	// are taken.
	Handlers map[string]http.Handler
	// MetricsRegistry receives the App's metrics (package metrics/prom:
	// streamer_requests_total and the rest) and the gauge
	// streamer_connections_open, all served in Prometheus' text format
	// at /metrics, with whatever else the program registered there. Nil:
	// a registry of the server's own, with the Go runtime and process
	// collectors.
	MetricsRegistry *prometheus.Registry
	// Logger receives the logs. The zero value logs at info level to
	// stderr, as `streamer dev` does (see [NewLogger]); pass zerolog.Nop()
	// for no logs. At debug level, frames refused before any middleware
	// runs (a bad frame, an unknown action, a failed validation or check)
	// are logged with their code.
	Logger zerolog.Logger
	// IdleTimeout and MaxLifetime bound connections as API Gateway does;
	// defaults 10 minutes and 2 hours.
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// TokenLeeway is the clock skew tolerated on a token's exp, at connect
	// and after: a connection is closed (1008, "token expired") at its
	// token's exp plus TokenLeeway, and every frame it sends past then is
	// answered UNAUTHORIZED. Zero means 30 seconds; negative, none (see
	// [streamer.Config.TokenLeeway]).
	TokenLeeway time.Duration
	// HTTPIdleTimeout closes an HTTP keep-alive connection that carries no
	// request (and never upgrades) for this long; default 2 minutes
	// ([local.DefaultHTTPIdleTimeout]). Request headers must arrive within
	// 10 seconds ([local.DefaultReadHeaderTimeout]).
	HTTPIdleTimeout time.Duration
	// MaxConnectionsPerPrincipal, NewConnectionsPerPrincipal and
	// NewConnectionsPerIP limit connections, refused with HTTP 429 at
	// connect (see local.Config; the principal is the token's subject).
	// Defaults 100 open connections per principal, 20 new ones a second
	// per principal (bursts of 100), 100 a second per source address
	// (bursts of 200).
	MaxConnectionsPerPrincipal int
	NewConnectionsPerPrincipal local.Rate
	NewConnectionsPerIP        local.Rate
	// Concurrency is how many requests the embedded worker runs at once;
	// zero means [streamer.DefaultConcurrency] (64). Each tenant (or
	// subject) runs at most a quarter of it at once (see
	// [streamer.Config.KeyConcurrency]).
	Concurrency int
	// CoalesceInterval is the minimum time between two progress events of
	// a request (see [streamer.Config.CoalesceInterval]): zero means the
	// default, 100ms; negative turns coalescing off, so every Report is an
	// event. `streamer dev --coalesce-interval` sets it.
	CoalesceInterval time.Duration
	// Ready, when set, is called once the server listens, before it serves
	// anything. Its Info carries the App, with which the program submits
	// requests from its own code (see [streamer.App.Submit]); Handlers may
	// use what Ready stores without locking, since they run only after it
	// returned.
	Ready func(Info)
}

// Info describes a running server.
type Info struct {
	// Addr is the address listened on, e.g. 127.0.0.1:8080.
	Addr string
	// URL is the HTTP base URL, e.g. http://127.0.0.1:8080.
	URL string
	// WebSocketURL is where clients connect, e.g. ws://127.0.0.1:8080/ws.
	WebSocketURL string
	// ManagementURL is the base URL of the Management API
	// (POST/GET/DELETE /@connections/{id}), on a loopback address of its
	// own, e.g. http://127.0.0.1:43121. URL/@connections/ is refused (403).
	ManagementURL string
	// Token is a ready token for subject "dev", valid 24 hours.
	Token string
	// SecretFile is the file holding a generated secret ("" when the
	// secret was given).
	SecretFile string
	// Actions are the names of the actions served, in the plugins' order.
	Actions []string
	// LambdaURL is, under `streamer dev --aws-local` (package awslocal),
	// the local Lambda service's endpoint, where the processor function
	// ("processor") takes Invoke calls: AWS_ENDPOINT_URL_LAMBDA for
	// `streamer ops redrive --function processor`. Empty otherwise.
	LambdaURL string
	// App is the server's App, for Go code in the same process to submit
	// requests on behalf of a principal ([streamer.App.Submit]), which the
	// principal's clients then follow with resume. The embedded worker
	// runs them. Under `streamer dev --aws-local` (package awslocal) it is
	// the router's App: a submitted request is stored in DynamoDB and
	// reaches the processor through the table's stream, as on AWS.
	App *streamer.App
}

// Run serves until ctx is canceled, then closes every connection, stops the
// worker (running requests are re-queued and resume at the next start) and
// returns. Bad configuration is reported before anything starts, naming the
// setting.
func Run(ctx context.Context, cfg Config) (err error) {
	if reflect.ValueOf(cfg.Logger).IsZero() {
		cfg.Logger = NewLogger(logOutput, zerolog.InfoLevel)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Concurrency < 0 {
		return errors.New("devserver: Concurrency must not be negative")
	}
	if cfg.IdleTimeout < 0 || cfg.MaxLifetime < 0 {
		return errors.New("devserver: IdleTimeout and MaxLifetime must not be negative")
	}
	secretFile := ""
	if cfg.Secret == nil || cfg.Store == nil {
		if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
			return fmt.Errorf("devserver: DataDir %s: %w", cfg.DataDir, err)
		}
	}
	if cfg.Secret == nil {
		if cfg.Secret, secretFile, err = Secret(cfg.DataDir); err != nil {
			return err
		}
	}
	auth, err := middleware.NewJWT(middleware.JWTConfig{Secret: cfg.Secret, Leeway: cfg.TokenLeeway})
	if err != nil {
		return fmt.Errorf("devserver: Secret: %w", err)
	}
	store := cfg.Store
	if store == nil {
		bs, err := bolt.Open(filepath.Join(cfg.DataDir, "streamer.db"), bolt.Options{})
		if err != nil {
			return fmt.Errorf("devserver: DataDir %s: %w", cfg.DataDir, err)
		}
		defer func() {
			if cerr := bs.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
		store = bs
	}
	ln := cfg.Listener
	if ln == nil {
		if ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp", cfg.Addr); err != nil {
			return fmt.Errorf("devserver: Addr %s: %w", cfg.Addr, err)
		}
	}
	defer ln.Close() //nolint:errcheck // Serve closes it first on a clean shutdown

	plugins := cfg.Plugins
	mux := http.NewServeMux()
	if cfg.Build != nil {
		blobs, err := localblob.New(localblob.Config{Dir: filepath.Join(cfg.DataDir, "blobs"), BaseURL: "http://" + ln.Addr().String() + BlobsPath})
		if err != nil {
			return fmt.Errorf("devserver: DataDir %s: %w", cfg.DataDir, err)
		}
		built, err := cfg.Build(ctx, streamer.Env{Blobs: blobs, Retention: streamer.DefaultRetention})
		if err != nil {
			return fmt.Errorf("devserver: building the plugins: %w", err)
		}
		plugins = append(slices.Clip(plugins), built...)
		mux.Handle(BlobsPath, http.StripPrefix(strings.TrimSuffix(BlobsPath, "/"), blobs))
		sweepCtx, stopSweeper := context.WithCancel(ctx)
		swept := make(chan struct{})
		go func() {
			defer close(swept)
			blobs.RunSweeper(sweepCtx, sweepInterval, func(err error) { cfg.Logger.Warn().Err(err).Msg("sweeping expired files") })
		}()
		defer func() { stopSweeper(); <-swept }()
	}

	h := &gatewayHandler{}
	gw, err := local.New(local.Config{
		Handler: h, IdleTimeout: cfg.IdleTimeout, MaxLifetime: cfg.MaxLifetime, Logger: cfg.Logger,
		PrincipalOf:                principalOf,
		MaxConnectionsPerPrincipal: cfg.MaxConnectionsPerPrincipal,
		NewConnectionsPerPrincipal: cfg.NewConnectionsPerPrincipal,
		NewConnectionsPerIP:        cfg.NewConnectionsPerIP,
	})
	if err != nil {
		return err
	}
	reg, rec, err := newMetrics(cfg.MetricsRegistry, gw)
	if err != nil {
		return err
	}
	mw := append([]streamer.Middleware{middleware.Logging(cfg.Logger), middleware.Auth(middleware.AuthOptions{Leeway: cfg.TokenLeeway})}, cfg.Middleware...)
	app, err := streamer.New(streamer.Config{
		Metrics: rec,
		Store:   store, Sender: gw, Authenticator: auth, TokenLeeway: cfg.TokenLeeway,
		Plugins: plugins, Middleware: mw, Logger: cfg.Logger,
		RateLimit: cfg.RateLimit, ReservedRateLimit: cfg.ReservedRateLimit,
		CoalesceInterval: cfg.CoalesceInterval,
	})
	if err != nil {
		return err
	}
	h.app = app

	mux.Handle("/ws", gw)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/@connections/", local.ManagementRefused())
	for pattern, handler := range cfg.Handlers {
		mux.Handle(pattern, handler)
	}
	srv := local.NewHTTPServer(mux, cfg.HTTPIdleTimeout)
	mgmtLn, mgmtURL, err := local.ListenManagement(ctx)
	if err != nil {
		return err
	}
	defer mgmtLn.Close() //nolint:errcheck // Serve closes it first on a clean shutdown
	mgmtSrv := local.NewHTTPServer(gw.Management(), cfg.HTTPIdleTimeout)

	if cfg.Ready != nil {
		token, err := middleware.SignHS256(cfg.Secret, middleware.Claims{Subject: "dev", TTL: 24 * time.Hour})
		if err != nil {
			return err
		}
		addr := ln.Addr().String()
		var actions []string
		for _, p := range plugins {
			for _, a := range p.Actions {
				actions = append(actions, a.Name)
			}
		}
		cfg.Ready(Info{Addr: addr, URL: "http://" + addr, WebSocketURL: "ws://" + addr + "/ws", ManagementURL: mgmtURL, Token: token, SecretFile: secretFile, Actions: actions, App: app})
	}

	g, gctx := errgroup.WithContext(ctx)
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("devserver: serve: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := mgmtSrv.Serve(mgmtLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("devserver: serve the Management API: %w", err)
		}
		return nil
	})
	g.Go(func() error { return app.Run(workCtx, cfg.Concurrency) })
	g.Go(func() error {
		<-gctx.Done()
		cfg.Logger.Info().Msg("shutting down")
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
		_ = gw.Close(shutCtx)
		_ = mgmtSrv.Shutdown(shutCtx)
		stopWork()
		return nil
	})
	return g.Wait()
}

// logOutput is where the default logger writes; a variable for tests.
var logOutput io.Writer = os.Stderr

// NewLogger returns the logger of `streamer dev`: human-readable lines with
// the time of day, in color when w is a terminal, at level and above.
func NewLogger(w io.Writer, level zerolog.Level) zerolog.Logger {
	noColor := true
	if f, ok := w.(*os.File); ok {
		noColor = !isatty.IsTerminal(f.Fd())
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly, NoColor: noColor}).Level(level).With().Timestamp().Logger()
}

// Secret returns the HS256 secret kept in dataDir/jwt-secret, making it on
// first use, and the file's path.
func Secret(dataDir string) ([]byte, string, error) {
	path := filepath.Join(dataDir, "jwt-secret")
	s, err := loadOrMakeSecret(path)
	return s, path, err
}

// loadOrMakeSecret returns the secret kept in path, making it on first use.
func loadOrMakeSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(b))
		if len(s) < MinSecretLen {
			return nil, fmt.Errorf("devserver: %s holds a secret shorter than %d bytes; delete it to make a new one", path, MinSecretLen)
		}
		return []byte(s), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("devserver: read %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("devserver: write %s: %w", path, err)
	}
	return []byte(secret), nil
}

// gatewayHandler connects the gateway's routes to the App, as API Gateway's
// $connect, $default and $disconnect routes do to the Lambdas.
type gatewayHandler struct {
	app *streamer.App
}

func (h *gatewayHandler) Connect(ctx context.Context, c *local.Conn) error {
	token := middleware.TokenFromRequest(c.Request.Header, c.Request.URL.Query())
	p, err := h.app.HandleConnect(ctx, c.ID, "", token)
	if err != nil {
		return err
	}
	c.Value = &p
	c.ExpiresAt = h.app.TokenDeadline(&p)
	return nil
}

// principalOf is the principal a connection is counted against: the
// token's subject, which HandleConnect put in c.Value.
func principalOf(c *local.Conn) string {
	if p, ok := c.Value.(*streamer.Principal); ok && p != nil {
		return p.Subject
	}
	return ""
}

func (h *gatewayHandler) Message(ctx context.Context, c *local.Conn, m local.Inbound) {
	p, _ := c.Value.(*streamer.Principal)
	_ = h.app.HandleMessage(ctx, streamer.Conn{ID: c.ID, Principal: p}, m.Data, m.Binary)
}

func (h *gatewayHandler) Disconnect(ctx context.Context, c *local.Conn) {
	if err := h.app.HandleDisconnect(ctx, c.ID); err != nil {
		log := h.app.Logger()
		log.Warn().Err(err).Str("connection_id", c.ID).Msg("disconnect failed")
	}
}

// newMetrics registers the App's metrics and the open connections of gw
// with reg (a new registry when nil).
func newMetrics(reg *prometheus.Registry, gw *local.Gateway) (*prometheus.Registry, *prom.Recorder, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	rec, err := prom.New(reg, metrics.ConnectionsOpen)
	if err != nil {
		return nil, nil, fmt.Errorf("devserver: MetricsRegistry: %w", err)
	}
	for _, m := range metrics.All() {
		if m.Name == metrics.ConnectionsOpen {
			g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: prom.MetricName(m), Help: m.Help}, func() float64 { return float64(gw.Connections()) })
			if err := reg.Register(g); err != nil {
				return nil, nil, fmt.Errorf("devserver: MetricsRegistry: %w", err)
			}
		}
	}
	return reg, rec, nil
}
