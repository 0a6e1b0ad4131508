package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer/internal/loadpush"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/plugins"
)

func TestJobTally(t *testing.T) {
	tl := newJobTally(5)
	for _, i := range []int{1, 2, 4, 3, 4, 0, 9, 5} {
		tl.add(i)
	}
	// 1 2 4 3(out of order) 4(duplicate) 0 9(bad) 5
	if tl.delivered != 5 || tl.duplicates != 1 || tl.outOfOrder != 1 || tl.bad != 2 || tl.lost() != 0 {
		t.Fatalf("tally %+v: want 5 delivered, 1 duplicate, 1 out of order, 2 bad, 0 lost", *tl)
	}
	tl = newJobTally(4)
	tl.add(1)
	tl.add(3)
	tl.add(3)
	if tl.delivered != 2 || tl.lost() != 2 || tl.duplicates != 1 || tl.outOfOrder != 0 {
		t.Fatalf("tally %+v: want 2 delivered, 2 lost, 1 duplicate, 0 out of order", *tl)
	}
}

func TestPushResultCheck(t *testing.T) {
	ok := pushResult{jobs: 2, completed: 2, expected: 10, delivered: 10}
	if err := ok.check(true); err != nil {
		t.Fatalf("a clean run failed its check: %v", err)
	}
	lossy := ok
	lossy.delivered = 9
	if err := lossy.check(false); err != nil {
		t.Fatalf("a lost event must not fail a run that allows coalescing: %v", err)
	}
	if err := lossy.check(true); err == nil || !strings.Contains(err.Error(), "1 events lost") {
		t.Fatalf("a lost event must fail a --coalesce-off run, got %v", err)
	}
	for name, r := range map[string]pushResult{
		"duplicate":    {jobs: 1, completed: 1, expected: 1, delivered: 1, duplicates: 1},
		"out of order": {jobs: 1, completed: 1, expected: 1, delivered: 1, outOfOrder: 1},
		"failed":       {jobs: 1, failedJobs: 1, expected: 1, delivered: 1},
		"unfinished":   {jobs: 2, completed: 1, expected: 1, delivered: 1},
		"bad index":    {jobs: 1, completed: 1, expected: 1, delivered: 1, bad: 1},
	} {
		if r.check(false) == nil {
			t.Errorf("%s: the check passed", name)
		}
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tstreamer\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t 1 kB\n"
	got, err := parseVmRSS(strings.NewReader(status))
	if err != nil || got != 12345*1024 {
		t.Fatalf("got %d, %v; want %d", got, err, 12345*1024)
	}
	for _, bad := range []string{"Name:\tx\n", "VmRSS:\t 12 MB\n", "VmRSS:\t x kB\n", "VmRSS:\n"} {
		if _, err := parseVmRSS(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	rss, err := readRSS(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("own RSS: %d, %v", rss, err)
	}
	if _, err := readRSS(-1); err == nil {
		t.Fatal("no error for pid -1")
	}
	peak, err := readPeakRSS(os.Getpid())
	if err != nil || peak < rss/2 {
		t.Fatalf("own peak RSS: %d, %v (RSS %d)", peak, err, rss)
	}
}

func TestLoadFlagErrors(t *testing.T) {
	t.Setenv("STREAMER_JWT_SECRET", benchSecret)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"load", "push", "--jobs", "0"}, "--jobs 0: must be 1-10000"},
		{[]string{"load", "push", "--jobs", "20000"}, "--jobs 20000"},
		{[]string{"load", "push", "--jobs", "5", "--conns", "6"}, "--conns 6"},
		{[]string{"load", "push", "--jobs", "5", "--subjects", "6"}, "--subjects 6"},
		{[]string{"load", "push", "--rate", "0"}, "rate 0: must be 1-1000"},
		{[]string{"load", "push", "--rate", "5000"}, "rate 5000"},
		{[]string{"load", "push", "--duration", "2m"}, "duration_ms 120000"},
		{[]string{"load", "push", "--rate", "1000", "--duration", "20s"}, "20000 events: at most 10000"},
		{[]string{"load", "push", "--duration", "1500us"}, "whole milliseconds"},
		{[]string{"load", "push", "--timeout", "-1s"}, "--timeout must not be negative"},
		{[]string{"load", "push", "extra"}, `unexpected argument "extra"`},
		{[]string{"load", "idle"}, "--pid"},
		{[]string{"load", "idle", "--pid", "1", "--conns", "19501"}, "--conns 19501: must be 1-19500"},
		{[]string{"load", "idle", "--pid", "1", "--url", "http://x"}, "want a ws:// or wss:// URL"},
		{[]string{"load", "connect", "--conns", "0"}, "--conns 0"},
		{[]string{"load", "connect", "--parallel", "0"}, "--parallel 0"},
		{[]string{"load", "bench", "--reps", "0"}, "--reps 0: must be 1-10"},
		{[]string{"load", "floor", "--addr", "0.0.0.0:0"}, "loopback address only"},
		{[]string{"dev", "--concurrency", "0"}, "--concurrency 0: must be 1-100000"},
		{[]string{"dev", "--coalesce-interval", "soon"}, `--coalesce-interval "soon"`},
		{[]string{"dev", "--coalesce-interval", "0s"}, `--coalesce-interval "0s"`},
		{[]string{"dev", "--pprof", "--addr", "0.0.0.0:8080"}, "--pprof needs a loopback --addr"},
		{[]string{"dev", "--aws-local", "--bench"}, "not --aws-local"},
	} {
		var out, errb bytes.Buffer
		code := Run(context.Background(), tc.args, &out, &errb, plugins.All)
		if code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

func TestParseCoalesce(t *testing.T) {
	for in, want := range map[string]time.Duration{"off": -1, "100ms": 0, "250ms": 250 * time.Millisecond} {
		got, err := parseCoalesce(in)
		if err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", in, got, err, want)
		}
	}
}

// startPushDev runs `streamer dev --bench --coalesce-interval off
// --pprof` in this process and returns its WebSocket URL.
func startPushDev(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	cfg := devConfig{addr: "127.0.0.1:0", dataDir: t.TempDir(), secret: []byte(benchSecret), idle: time.Hour, lifetime: time.Hour, maxConns: -1, noIPRate: true, bench: true, coalesce: -1, pprof: true}
	go func() {
		done <- serveDev(ctx, cfg, plugins.All, pw, zerolog.Nop())
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dev server: %v", err)
		}
	})
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if url, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "websocket:"); ok {
			go func() { _, _ = io.Copy(io.Discard, pr) }()
			return strings.TrimSpace(url)
		}
	}
	t.Fatalf("dev server printed no websocket URL: %v", sc.Err())
	return ""
}

// startFloor runs the bare floor in this process.
func startFloor(t *testing.T) string {
	t.Helper()
	auth, err := middleware.NewJWT(middleware.JWTConfig{Secret: []byte(benchSecret)})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(pprofPrefix, pprofHandler())
	mux.Handle("/", &floorHandler{auth: auth})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/ws"
}

func subjectTokens(t *testing.T, n int) func(int) string {
	t.Helper()
	toks := make([]string, n)
	for i := range toks {
		var err error
		if toks[i], err = middleware.SignHS256([]byte(benchSecret), middleware.Claims{Subject: "load-" + strconv.Itoa(i), TTL: time.Hour}); err != nil {
			t.Fatal(err)
		}
	}
	return func(i int) string { return toks[i%n] }
}

// TestPushSmoke is the 100-job smoke of push mode, against the dev stack
// (coalescing off: 20 events a second would be coalesced at the default
// 10) and the bare floor: every event of every job arrives,
// once, in order. No timing is asserted.
func TestPushSmoke(t *testing.T) {
	for name, url := range map[string]string{"dev": startPushDev(t), "floor": startFloor(t)} {
		t.Run(name, func(t *testing.T) {
			cfg := pushConfig{url: url, tokens: subjectTokens(t, 25), action: loadpush.Action, jobs: 100, conns: 25, rate: 20, duration: 250 * time.Millisecond, timeout: 3 * time.Minute, strict: true}
			res, err := runPush(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			printPush(&out, cfg, res)
			if res.expected != 500 || res.delivered != 500 || res.completed != 100 || len(res.latencies) != 500 {
				t.Fatalf("want 100 complete jobs and 500 events delivered, timed:\n%s", out.String())
			}
			if err := res.check(true); err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
		})
	}
}

// TestPushRefusesBadPayloads: the dev stack's loadpush action validates
// its bounds before anything is stored, as the floor does.
func TestPushRefusesBadPayloads(t *testing.T) {
	for name, url := range map[string]string{"dev": startPushDev(t), "floor": startFloor(t)} {
		t.Run(name, func(t *testing.T) {
			cfg := pushConfig{url: url, tokens: subjectTokens(t, 1), action: loadpush.Action, jobs: 1, conns: 1, rate: 10, duration: 100 * time.Millisecond, timeout: time.Minute}
			res, err := runPushPayload(context.Background(), cfg, `{"rate":1001,"duration_ms":1000}`)
			if err != nil {
				t.Fatal(err)
			}
			if res.failedJobs != 1 || res.delivered != 0 {
				t.Fatalf("a rate over the limit ran: %+v", res)
			}
			if len(res.anomalies) != 1 || !strings.Contains(res.anomalies[0], "push-0: 0/1 delivered") || !strings.Contains(res.anomalies[0], "VALIDATION_ERROR") {
				t.Fatalf("the refused job is not listed: %q", res.anomalies)
			}
		})
	}
}

// TestIdleMeasuresTheServer holds connections to the floor, served by this
// very process, and reads this process's RSS.
func TestIdleMeasuresTheServer(t *testing.T) {
	url := startFloor(t)
	gc, err := pprofGCURL(url)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runIdle(context.Background(), url, gc, os.Getpid(), subjectTokens(t, 1), 50, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.conns != 50 || res.before <= 0 || res.after <= 0 {
		t.Fatalf("idle result %+v", res)
	}
	if _, err := runIdle(context.Background(), url, strings.Replace(gc, "heap", "nosuch", 1), os.Getpid(), subjectTokens(t, 1), 1, 0); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a GC URL that fails must fail the run, got %v", err)
	}
	if _, _, err := dialMany(context.Background(), url, func(int) string { return "bad" }, 3, 2, false); err == nil || !strings.Contains(err.Error(), "dial connection") {
		t.Fatalf("a refused token must fail the connects, got %v", err)
	}
}

func TestPprofLoopbackOnly(t *testing.T) {
	h := pprofHandler()
	for addr, want := range map[string]int{"10.1.2.3:5000": http.StatusForbidden, "127.0.0.1:5000": http.StatusOK, "[::1]:5000": http.StatusOK, "garbage": http.StatusForbidden} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/debug/pprof/heap?gc=1", nil)
		req.RemoteAddr = addr
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("from %s: %d, want %d", addr, rec.Code, want)
		}
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/debug/pprof/profile?seconds=999", nil)
	req.RemoteAddr = "127.0.0.1:1"
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadRequest {
		t.Errorf("a 999 s CPU profile: %d, want 400", rec.Code)
	}
}

// TestLoadpushOnlyWithBench: without --bench the dev stack does not serve
// the push action.
func TestLoadpushOnlyWithBench(t *testing.T) {
	url, _ := startBenchDev(t)
	cfg := pushConfig{url: url, tokens: subjectTokens(t, 1), action: loadpush.Action, jobs: 1, conns: 1, rate: 10, duration: 100 * time.Millisecond, timeout: time.Minute}
	res, err := runPush(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res.failedJobs != 1 || len(res.anomalies) != 1 || !strings.Contains(res.anomalies[0], "INVALID_ACTION") {
		t.Fatalf("loadpush served without --bench: %+v", res)
	}
}

func TestBenchTable(t *testing.T) {
	r := &benchRow{scenario: "s", metric: "m", floor: []float64{10, 20, 0}, dev: []float64{5, 30, 1}}
	if got := r.ratios(); len(got) != 2 || got[0] != 0.5 || got[1] != 1.5 {
		t.Fatalf("ratios %v, want [0.5 1.5] (a zero floor skipped)", got)
	}
	var out bytes.Buffer
	printBenchTable(&out, []*benchRow{r}, 3)
	if !strings.Contains(out.String(), "| s | m | 10.0 | 5.00 | 1.00× | 0.50 1.50 |") {
		t.Fatalf("table:\n%s", out.String())
	}
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median of 3, 1, 2: %v", m)
	}
}
