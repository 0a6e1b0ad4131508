package cli

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/streamer-go/streamer/internal/loadpush"
	"github.com/streamer-go/streamer/middleware"
)

// benchServer is a server process of `streamer load bench`.
type benchServer struct {
	url  string
	pid  int
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited, with err set
	err  error
}

// startBenchServer starts this program with args, with secret in
// $STREAMER_JWT_SECRET, and waits for the "websocket:" line of its banner.
func startBenchServer(ctx context.Context, secret string, args ...string) (*benchServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, args...) //nolint:gosec // this very program
	cmd.Env = append(os.Environ(), "STREAMER_JWT_SECRET="+secret)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &benchServer{pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "websocket:"); ok {
				found <- strings.TrimSpace(u)
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
		s.err = cmd.Wait()
		close(s.done)
	}()
	select {
	case s.url = <-found:
		return s, nil
	case <-s.done:
		return nil, fmt.Errorf("%s exited before listening: %w", strings.Join(args, " "), s.err)
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("%s printed no websocket URL in 60s", strings.Join(args, " "))
	}
}

// stop ends the server: SIGTERM, then SIGKILL after 15 seconds.
func (s *benchServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// benchRunTimeout bounds one run of one scenario against one server.
const benchRunTimeout = 5 * time.Minute

// benchRow is one measure of one scenario, per repetition.
type benchRow struct {
	scenario, metric string
	lowerIsBetter    bool
	floor, dev       []float64
}

func (r *benchRow) ratios() []float64 {
	var out []float64
	for i := range min(len(r.floor), len(r.dev)) {
		if r.floor[i] != 0 {
			out = append(out, r.dev[i]/r.floor[i])
		}
	}
	return out
}

// benchScenario is one scenario of the table: its dev flags, and a run
// against a server that returns its measures (in the rows' order).
type benchScenario struct {
	name    string
	devArgs []string
	metrics []string
	lower   []bool
	run     func(ctx context.Context, s *benchServer, tokens func(int) string) ([]float64, error)
}

func benchScenarios(quick bool) []benchScenario {
	scale := func(full, small int) int {
		if quick {
			return small
		}
		return full
	}
	pushRun := func(jobs, conns, rate int, strict bool) func(context.Context, *benchServer, func(int) string) (pushResult, error) {
		return func(ctx context.Context, s *benchServer, tokens func(int) string) (pushResult, error) {
			d := time.Duration(scale(10, 2)) * time.Second
			cfg := pushConfig{url: s.url, tokens: tokens, action: loadpush.Action, jobs: jobs, conns: conns, rate: rate, duration: d, timeout: d + 60*time.Second, strict: strict}
			r, err := runPush(ctx, cfg)
			if err != nil {
				return r, err
			}
			printPush(os.Stderr, cfg, r)
			return r, nil
		}
	}
	pushVals := func(r pushResult) []float64 {
		return []float64{100 * float64(r.delivered) / float64(r.expected), r.rate(), float64(quantileOf(r.latencies, 0.99)) / 1e6}
	}
	push := func(jobs, rate int, strict bool) func(context.Context, *benchServer, func(int) string) ([]float64, error) {
		run := pushRun(jobs, jobs, rate, strict)
		return func(ctx context.Context, s *benchServer, tokens func(int) string) ([]float64, error) {
			r, err := run(ctx, s, tokens)
			if err != nil {
				return nil, err
			}
			return pushVals(r), nil
		}
	}
	// many runs jobs that all run at once and mostly wait (one event a
	// second each), over a tenth as many connections, and adds the
	// server's peak resident memory.
	many := func(jobs int) func(context.Context, *benchServer, func(int) string) ([]float64, error) {
		run := pushRun(jobs, max(1, jobs/10), 1, false)
		return func(ctx context.Context, s *benchServer, tokens func(int) string) ([]float64, error) {
			r, err := run(ctx, s, tokens)
			if err != nil {
				return nil, err
			}
			peak, err := readPeakRSS(s.pid)
			if err != nil {
				return nil, err
			}
			return append(pushVals(r), float64(peak)/(1<<20)), nil
		}
	}
	pushMetrics, pushLower := []string{"delivered %", "events/s", "p99 ms"}, []bool{false, false, true}
	idle := func(n int) func(context.Context, *benchServer, func(int) string) ([]float64, error) {
		return func(ctx context.Context, s *benchServer, tokens func(int) string) ([]float64, error) {
			gc, err := pprofGCURL(s.url)
			if err != nil {
				return nil, err
			}
			r, err := runIdle(ctx, s.url, gc, s.pid, tokens, n, 2*time.Second)
			if err != nil {
				return nil, err
			}
			printIdle(os.Stderr, r)
			return []float64{r.perConn() / 1024}, nil
		}
	}
	echo := func(conns, requests int) func(context.Context, *benchServer, func(int) string) ([]float64, error) {
		return func(ctx context.Context, s *benchServer, tokens func(int) string) ([]float64, error) {
			r, err := runLoad(ctx, loadConfig{url: s.url, token: tokens(0), action: "echo", payload: json.RawMessage(`{"message":"hello","n":42}`), conns: conns, requests: requests, timeout: 2 * time.Minute})
			if err != nil {
				return nil, err
			}
			if r.failures > 0 {
				return nil, fmt.Errorf("%d of %d echo requests failed", r.failures, r.requests)
			}
			return []float64{r.throughput(), float64(r.quantile(0.99)) / 1e6}, nil
		}
	}
	connects := scale(10000, 500)
	return []benchScenario{
		{name: fmt.Sprintf("push %d jobs × 10/s", scale(1000, 100)), metrics: pushMetrics, lower: pushLower, run: push(scale(1000, 100), 10, false)},
		{name: fmt.Sprintf("push %d jobs × 100/s, coalescing off", scale(100, 20)), devArgs: []string{"--coalesce-interval", "off"}, metrics: pushMetrics, lower: pushLower, run: push(scale(100, 20), 100, true)},
		{name: fmt.Sprintf("push %d concurrent jobs × 1/s", scale(10000, 500)), metrics: append(slices.Clone(pushMetrics), "peak RSS MiB"), lower: append(slices.Clone(pushLower), true), run: many(scale(10000, 500))},
		{name: fmt.Sprintf("%d connects", connects), metrics: []string{"connects/s"}, lower: []bool{false}, run: func(ctx context.Context, s *benchServer, tokens func(int) string) ([]float64, error) {
			_, took, err := dialMany(ctx, s.url, tokens, connects, 8, false)
			if err != nil {
				return nil, err
			}
			return []float64{float64(connects) / took.Seconds()}, nil
		}},
		{name: fmt.Sprintf("idle %d connections", scale(10000, 500)), metrics: []string{"KiB/conn"}, lower: []bool{true}, run: idle(scale(10000, 500))},
		{name: fmt.Sprintf("idle %d connections", scale(19500, 1000)), metrics: []string{"KiB/conn"}, lower: []bool{true}, run: idle(scale(19500, 1000))},
		{name: "echo 1 connection × 2000", metrics: []string{"req/s", "p99 ms"}, lower: []bool{false, true}, run: echo(1, scale(2000, 200))},
		{name: "echo 200 connections × 50", metrics: []string{"req/s", "p99 ms"}, lower: []bool{false, true}, run: echo(200, scale(50, 5))},
		{name: "echo 1000 connections × 20", metrics: []string{"req/s", "p99 ms"}, lower: []bool{false, true}, run: echo(1000, scale(20, 2))},
	}
}

// runBenchCommand runs every scenario of issue 13's table against the
// bare floor and the dev stack, each in a fresh process of this program,
// interleaved (the floor first on odd repetitions), and prints the
// medians and the median of the per-repetition ratios dev/floor.
func runBenchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("load bench", stderr)
	reps := fs.Int("reps", 3, "repetitions of each scenario (1-10)")
	quick := fs.Bool("quick", false, "small scenarios, to try the harness")
	only := fs.String("only", "", "run only the scenarios whose name contains this")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	if *reps < 1 || *reps > 10 {
		return usageError{fmt.Sprintf("--reps %d: must be 1-10", *reps)}
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return err
	}
	secret := hex.EncodeToString(raw[:])
	push := func(i int) string {
		t, _ := middleware.SignHS256([]byte(secret), middleware.Claims{Subject: fmt.Sprintf("load-%d", i), TTL: 2 * time.Hour})
		return t
	}
	toks := make([]string, 1000)
	for i := range toks {
		toks[i] = push(i)
	}
	perConn := func(i int) string { return toks[i%len(toks)] }
	one := func(int) string { return toks[0] }
	var rows []*benchRow
	for _, sc := range benchScenarios(*quick) {
		if *only != "" && !strings.Contains(sc.name, *only) {
			continue
		}
		scRows := make([]*benchRow, len(sc.metrics))
		for i, m := range sc.metrics {
			scRows[i] = &benchRow{scenario: sc.name, metric: m, lowerIsBetter: sc.lower[i]}
		}
		rows = append(rows, scRows...)
		tokens := one
		if strings.HasPrefix(sc.name, "push") {
			tokens = perConn
		}
		for rep := range *reps {
			order := []string{"floor", "dev"}
			if rep%2 == 1 {
				order = []string{"dev", "floor"}
			}
			for _, kind := range order {
				dir, err := os.MkdirTemp("", "streamer-bench-")
				if err != nil {
					return err
				}
				args := []string{"load", "floor", "--addr", "127.0.0.1:0"}
				if kind == "dev" {
					args = append([]string{"dev", "--addr", "127.0.0.1:0", "--data-dir", dir, "--log-level", "error", "--bench", "--pprof", "--max-conns-per-principal", "-1"}, sc.devArgs...)
				}
				fmt.Fprintf(stderr, "== %s, %s, repetition %d\n", sc.name, kind, rep+1)
				s, err := startBenchServer(ctx, secret, args...)
				if err != nil {
					_ = os.RemoveAll(dir)
					return err
				}
				runCtx, cancel := context.WithTimeout(ctx, benchRunTimeout)
				vals, err := sc.run(runCtx, s, tokens)
				cancel()
				s.stop()
				_ = os.RemoveAll(dir)
				if err != nil {
					if ctx.Err() != nil {
						return ctx.Err()
					}
					return fmt.Errorf("%s against %s: %w", sc.name, kind, err)
				}
				for i, v := range vals {
					if kind == "dev" {
						scRows[i].dev = append(scRows[i].dev, v)
					} else {
						scRows[i].floor = append(scRows[i].floor, v)
					}
				}
				fmt.Fprintf(stderr, "   %v = %v\n", sc.metrics, fmtVals(vals))
			}
		}
	}
	if len(rows) == 0 {
		return errors.New("no scenario matches --only")
	}
	printBenchTable(stdout, rows, *reps)
	return nil
}

func fmtVals(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmtNum(x)
	}
	return strings.Join(s, ", ")
}

func fmtNum(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// printBenchTable prints the medians of every row in Markdown.
func printBenchTable(w io.Writer, rows []*benchRow, reps int) {
	fmt.Fprintf(w, "| scenario | measure | floor (median of %d) | dev (median) | dev/floor (median of ratios) | ratios |\n|---|---|---|---|---|---|\n", reps)
	for _, r := range rows {
		rs := r.ratios()
		rstr := make([]string, len(rs))
		for i, x := range rs {
			rstr[i] = fmt.Sprintf("%.2f", x)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f× | %s |\n", r.scenario, r.metric, fmtNum(median(r.floor)), fmtNum(median(r.dev)), median(rs), strings.Join(rstr, " "))
	}
}

// median of the paired per-iteration ratios: one noisy iteration moves it
// less than it moves pooled totals.
func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else if n > 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return 0
}
