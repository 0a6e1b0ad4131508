package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/plugins"
)

const benchSecret = "bench-secret-0123456789abcdef0123456789"

// startBenchDev runs the dev stack in this process and returns its
// WebSocket URL and a token.
func startBenchDev(tb testing.TB) (string, string) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	cfg := devConfig{addr: "127.0.0.1:0", dataDir: tb.TempDir(), secret: []byte(benchSecret), idle: time.Hour, lifetime: time.Hour, maxConns: -1, noIPRate: true} // 200 connections of one principal, dialed again and again
	go func() {
		done <- serveDev(ctx, cfg, plugins.All, pw, zerolog.Nop())
		_ = pw.Close()
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("dev server: %v", err)
		}
	})
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if url, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "websocket:"); ok {
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			tok, err := middleware.SignHS256([]byte(benchSecret), middleware.Claims{Subject: "bench", TTL: time.Hour})
			if err != nil {
				tb.Fatal(err)
			}
			return strings.TrimSpace(url), tok
		}
	}
	tb.Fatalf("dev server printed no websocket URL: %v", sc.Err())
	return "", ""
}

// startBareServer runs the floor of `streamer load` (floorHandler: a bare
// coder/websocket server that checks the JWT and echoes) with the bench
// secret: the baseline the framework is measured against.
func startBareServer(tb testing.TB) string {
	tb.Helper()
	auth, err := middleware.NewJWT(middleware.JWTConfig{Secret: []byte(benchSecret)})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := &http.Server{Handler: &floorHandler{auth: auth}, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return "ws://" + ln.Addr().String() + "/"
}

// BenchmarkLoopbackEcho compares the whole dev stack (gateway, JWT
// connection, router, echo plugin) with a bare coder/websocket server on
// the same closed-loop load: 200 connections × 50 sequential requests,
// alternating the two servers within one run. The figures that matter are
// the ratios (this machine runs server and load on the same 2 cores).
func BenchmarkLoopbackEcho(b *testing.B) {
	devURL, token := startBenchDev(b)
	bareURL := startBareServer(b)
	base := loadConfig{action: "echo", payload: json.RawMessage(`{"message":"hello","n":42}`), conns: 200, requests: 50, timeout: 2 * time.Minute}
	var dev, bare loadResult
	var tputRatios, p99Ratios []float64
	run := func(url, tok string, into *loadResult) loadResult {
		cfg := base
		cfg.url, cfg.token = url, tok
		res, err := runLoad(context.Background(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if res.failures > 0 {
			b.Fatalf("%d of %d requests failed against %s", res.failures, res.requests, url)
		}
		into.requests += res.requests
		into.elapsed += res.elapsed
		into.latencies = append(into.latencies, res.latencies...)
		return res
	}
	for b.Loop() {
		// Alternate which server goes first, so neither always meets a
		// warmer or colder machine.
		var d, r loadResult
		if len(tputRatios)%2 == 0 {
			r = run(bareURL, token, &bare)
			d = run(devURL, token, &dev)
		} else {
			d = run(devURL, token, &dev)
			r = run(bareURL, token, &bare)
		}
		tputRatios = append(tputRatios, d.throughput()/r.throughput())
		p99Ratios = append(p99Ratios, float64(d.quantile(0.99))/float64(r.quantile(0.99)))
	}
	slices.Sort(dev.latencies)
	slices.Sort(bare.latencies)
	b.ReportMetric(dev.throughput(), "streamer_req/s")
	b.ReportMetric(bare.throughput(), "bare_req/s")
	b.ReportMetric(median(tputRatios), "throughput_ratio")
	b.ReportMetric(float64(dev.quantile(0.99).Microseconds()), "streamer_p99_µs")
	b.ReportMetric(float64(bare.quantile(0.99).Microseconds()), "bare_p99_µs")
	b.ReportMetric(median(p99Ratios), "p99_ratio")
}

// TestLoadRunAgainstDevServer checks the load tool itself, small: every
// request is answered and timed.
func TestLoadRunAgainstDevServer(t *testing.T) {
	url, token := startBenchDev(t)
	res, err := runLoad(context.Background(), loadConfig{url: url, token: token, action: "echo", payload: json.RawMessage(`{}`), conns: 5, requests: 10, timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if res.requests != 50 || res.failures != 0 {
		t.Fatalf("got %d requests, %d failures; want 50, 0", res.requests, res.failures)
	}
	if res.quantile(0.5) <= 0 || res.quantile(1) < res.quantile(0.5) {
		t.Fatalf("bad latencies: p50 %v max %v", res.quantile(0.5), res.quantile(1))
	}
	_, err = runLoad(context.Background(), loadConfig{url: url, token: "bad", action: "echo", payload: json.RawMessage(`{}`), conns: 1, requests: 1, timeout: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "dial") {
		t.Fatalf("a refused token must fail the dial, got %v", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the refusal must be immediate")
	}
}
