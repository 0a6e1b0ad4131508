package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/cmd/streamer/web"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/plugins/demo"
	"github.com/streamer-go/streamer/plugins/report"
	"github.com/streamer-go/streamer/storage/bolt"
	"github.com/streamer-go/streamer/transport/local"
)

// devConfig is what `streamer dev` runs with.
type devConfig struct {
	addr     string
	dataDir  string
	logLevel string
	secret   []byte
	idle     time.Duration
	lifetime time.Duration
}

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := devConfig{}
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "address to listen on (port 0 picks a free one)")
	fs.StringVar(&cfg.dataDir, "data-dir", ".streamer", "directory of the embedded database and report files")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&cfg.idle, "idle-timeout", 10*time.Minute, "close connections idle this long (API Gateway: 10m)")
	fs.DurationVar(&cfg.lifetime, "max-lifetime", 2*time.Hour, "close connections this old (API Gateway: 2h)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
	}
	level, err := zerolog.ParseLevel(cfg.logLevel)
	if err != nil || cfg.logLevel == "" {
		return usageError{fmt.Sprintf("--log-level %q: use debug, info, warn or error", cfg.logLevel)}
	}
	if cfg.idle <= 0 || cfg.lifetime <= 0 {
		return usageError{"--idle-timeout and --max-lifetime must be positive"}
	}
	if err := os.MkdirAll(cfg.dataDir, 0o750); err != nil {
		return fmt.Errorf("--data-dir %s: %w", cfg.dataDir, err)
	}
	generated := false
	cfg.secret, err = secretFromEnv()
	if err != nil {
		return err
	}
	if cfg.secret == nil {
		cfg.secret, generated, err = devSecret(cfg.dataDir)
		if err != nil {
			return err
		}
	}
	noColor := true
	if f, ok := stderr.(*os.File); ok {
		noColor = !isatty.IsTerminal(f.Fd())
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr, TimeFormat: time.TimeOnly, NoColor: noColor}).Level(level).With().Timestamp().Logger()
	return serveDev(ctx, cfg, generated, stdout, log)
}

// devSecret returns the secret kept in the data dir, making it on first use,
// so tokens stay valid across restarts.
func devSecret(dir string) ([]byte, bool, error) {
	path := filepath.Join(dir, "jwt-secret")
	b, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(b))) >= minSecret {
		return []byte(strings.TrimSpace(string(b))), true, nil
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, err
	}
	secret := hex.EncodeToString(raw)
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		return nil, false, fmt.Errorf("write %s: %w", path, err)
	}
	return []byte(secret), true, nil
}

func serveDev(ctx context.Context, cfg devConfig, generatedSecret bool, stdout io.Writer, log zerolog.Logger) error {
	store, err := bolt.Open(filepath.Join(cfg.dataDir, "streamer.db"), bolt.Options{})
	if err != nil {
		return fmt.Errorf("--data-dir %s: %w", cfg.dataDir, err)
	}
	defer store.Close()

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("--addr %s: %w", cfg.addr, err)
	}
	defer ln.Close() //nolint:errcheck // Serve closes it first on a clean shutdown
	base := "http://" + ln.Addr().String()

	auth, err := middleware.NewJWT(middleware.JWTConfig{Secret: cfg.secret})
	if err != nil {
		return fmt.Errorf("STREAMER_JWT_SECRET: %w", err)
	}
	reportsDir := filepath.Join(cfg.dataDir, "reports")
	reports, err := report.New(report.Config{Dir: reportsDir, BaseURL: base + "/reports/"})
	if err != nil {
		return err
	}

	h := &gatewayHandler{}
	gw, err := local.New(local.Config{Handler: h, IdleTimeout: cfg.idle, MaxLifetime: cfg.lifetime, Logger: log})
	if err != nil {
		return err
	}
	app, err := streamer.New(streamer.Config{
		Store:         store,
		Sender:        gw,
		Authenticator: auth,
		Plugins:       []streamer.Plugin{demo.New(), reports},
		Middleware:    []streamer.Middleware{middleware.Logging(log), middleware.Auth(middleware.AuthOptions{})},
		Logger:        log,
	})
	if err != nil {
		return err
	}
	h.app = app

	mux := http.NewServeMux()
	mux.Handle("/ws", gw)
	mux.Handle("/@connections/", gw.Management())
	mux.Handle("/reports/", http.StripPrefix("/reports", report.FileServer(reportsDir)))
	mux.Handle("/", http.FileServerFS(web.FS))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	token, err := middleware.SignHS256(cfg.secret, middleware.Claims{Subject: "dev", TTL: 24 * time.Hour})
	if err != nil {
		return err
	}
	wsURL := "ws://" + ln.Addr().String() + "/ws"
	fmt.Fprintf(stdout, "Streamer dev server\n")
	fmt.Fprintf(stdout, "  websocket:  %s\n", wsURL)
	fmt.Fprintf(stdout, "  demo page:  %s/?token=%s\n", base, token)
	fmt.Fprintf(stdout, "  management: %s/@connections/{id}\n", base)
	fmt.Fprintf(stdout, "  data dir:   %s\n", cfg.dataDir)
	fmt.Fprintf(stdout, "  token:      %s   (sub=dev, valid 24h)\n", token)
	if generatedSecret {
		fmt.Fprintf(stdout, "  secret:     kept in %s; export STREAMER_JWT_SECRET=$(cat %s) to mint tokens with `streamer token`\n",
			filepath.Join(cfg.dataDir, "jwt-secret"), filepath.Join(cfg.dataDir, "jwt-secret"))
	}
	fmt.Fprintf(stdout, "  try:        streamer call --url %s --token %s delay '{\"ms\":3000,\"steps\":10}'\n", wsURL, token)
	if f, ok := stdout.(interface{ Sync() error }); ok {
		_ = f.Sync()
	}

	g, gctx := errgroup.WithContext(ctx)
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	g.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.Go(func() error { return app.Run(workCtx, 0) })
	g.Go(func() error {
		<-gctx.Done()
		log.Info().Msg("shutting down")
		shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutCtx)
		_ = gw.Close(shutCtx)
		stopWork()
		return nil
	})
	err = g.Wait()
	stopWork()
	return err
}

// gatewayHandler connects the local gateway's routes to the App, as API
// Gateway's $connect, $default and $disconnect routes do to the Lambdas.
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
	return nil
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
