package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// loadConfig is one closed-loop load run: conns connections, each sending
// requests frames one after another and waiting for each reply.
type loadConfig struct {
	url      string
	token    string
	action   string
	payload  json.RawMessage
	conns    int
	requests int
	timeout  time.Duration
}

// loadResult is what a load run measured. Connection set-up is not timed.
type loadResult struct {
	requests  int
	failures  int
	elapsed   time.Duration
	latencies []time.Duration // sorted
}

func (r loadResult) throughput() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// quantile returns the q-quantile (0 < q ≤ 1) of the latencies.
func (r loadResult) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.latencies))*q+0.5) - 1
	return r.latencies[min(max(i, 0), len(r.latencies)-1)]
}

// runLoad dials every connection first, then starts all senders at once.
// Every reply must be a successful response for its request id; anything
// else counts as a failure. The run is bounded by cfg.timeout.
func runLoad(ctx context.Context, cfg loadConfig) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	hdr := http.Header{}
	if cfg.token != "" {
		hdr.Set("Authorization", "Bearer "+cfg.token)
	}
	conns := make([]*websocket.Conn, cfg.conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.CloseNow()
			}
		}
	}()
	for i := range conns {
		c, resp, err := websocket.Dial(ctx, cfg.url, &websocket.DialOptions{HTTPHeader: hdr})
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return loadResult{}, fmt.Errorf("dial connection %d of %d: %w", i+1, cfg.conns, err)
		}
		c.SetReadLimit(streamer.MaxMessageSize * 2)
		conns[i] = c
	}
	lat := make([][]time.Duration, cfg.conns)
	fails := make([]int, cfg.conns)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			lat[i], fails[i] = loadConn(ctx, c, i, cfg)
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	res := loadResult{elapsed: time.Since(t0)}
	for i := range conns {
		res.latencies = append(res.latencies, lat[i]...)
		res.failures += fails[i]
	}
	res.requests = len(res.latencies)
	slices.Sort(res.latencies)
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("load run stopped after %v: %w", cfg.timeout, err)
	}
	return res, nil
}

func loadConn(ctx context.Context, c *websocket.Conn, n int, cfg loadConfig) ([]time.Duration, int) {
	lat := make([]time.Duration, 0, cfg.requests)
	fails := 0
	prefix := "l-" + strconv.Itoa(n) + "-"
	var frame []byte
	for i := range cfg.requests {
		id := prefix + strconv.Itoa(i)
		frame = frame[:0]
		frame = append(frame, `{"action":`...)
		frame = strconv.AppendQuote(frame, cfg.action)
		frame = append(frame, `,"id":"`...)
		frame = append(frame, id...)
		frame = append(frame, `","payload":`...)
		frame = append(frame, cfg.payload...)
		frame = append(frame, '}')
		t := time.Now()
		if err := c.Write(ctx, websocket.MessageText, frame); err != nil {
			return lat, fails + cfg.requests - i
		}
		_, data, err := c.Read(ctx)
		if err != nil {
			return lat, fails + cfg.requests - i
		}
		lat = append(lat, time.Since(t))
		var m struct {
			Type      string `json:"type"`
			RequestID string `json:"request_id"`
			Success   bool   `json:"success"`
		}
		if json.Unmarshal(data, &m) != nil || m.Type != streamer.TypeResponse || !m.Success || m.RequestID != id {
			fails++
		}
	}
	return lat, fails
}

func runLoadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "push":
			return runPushCommand(ctx, args[1:], stdout, stderr)
		case "idle":
			return runIdleCommand(ctx, args[1:], stdout, stderr)
		case "connect":
			return runConnectCommand(ctx, args[1:], stdout, stderr)
		case "floor":
			return runFloor(ctx, args[1:], stdout, stderr)
		case "bench":
			return runBenchCommand(ctx, args[1:], stdout, stderr)
		case "echo":
			args = args[1:]
		}
	}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := loadConfig{}
	fs.StringVar(&cfg.url, "url", envOr("STREAMER_URL", defaultWSURL), "WebSocket URL of the server")
	fs.StringVar(&cfg.token, "token", "", "JWT (default $STREAMER_TOKEN, or one minted with $STREAMER_JWT_SECRET or the secret `streamer dev` keeps in --data-dir)")
	dataDir := fs.String("data-dir", devserver.DefaultDataDir, "data dir of `streamer dev`, whose jwt-secret mints a token when no other is given")
	fs.StringVar(&cfg.action, "action", "echo", "a synchronous action to call")
	payload := fs.String("payload", `{"message":"hello"}`, "JSON payload of every request")
	fs.IntVar(&cfg.conns, "conns", 200, "connections (1-10000)")
	fs.IntVar(&cfg.requests, "requests", 50, "sequential requests per connection (1-100000)")
	fs.DurationVar(&cfg.timeout, "timeout", time.Minute, "stop the run after this long")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) > 0:
		return usageError{fmt.Sprintf("unexpected argument %q", pos[0])}
	case cfg.conns < 1 || cfg.conns > 10000:
		return usageError{"--conns must be 1-10000"}
	case cfg.requests < 1 || cfg.requests > 100000:
		return usageError{"--requests must be 1-100000"}
	case cfg.timeout <= 0:
		return usageError{"--timeout must be positive"}
	case !json.Valid([]byte(*payload)):
		return usageError{fmt.Sprintf("--payload %q is not valid JSON", *payload)}
	}
	cfg.payload = json.RawMessage(*payload)
	if cfg.token == "" {
		cfg.token, _, err = tokenFromEnv(*dataDir)
		if err != nil {
			return err
		}
	}
	res, err := runLoad(ctx, cfg)
	if err != nil && res.requests == 0 {
		return err
	}
	fmt.Fprintf(stdout, "requests: %d (%d failed) over %d connections in %v\n", res.requests, res.failures, cfg.conns, res.elapsed.Round(time.Millisecond))
	fmt.Fprintf(stdout, "throughput: %.0f req/s\n", res.throughput())
	fmt.Fprintf(stdout, "latency: p50 %v  p90 %v  p99 %v  max %v\n",
		res.quantile(0.5).Round(time.Microsecond), res.quantile(0.9).Round(time.Microsecond),
		res.quantile(0.99).Round(time.Microsecond), res.quantile(1).Round(time.Microsecond))
	if err != nil {
		return err
	}
	if res.failures > 0 {
		return errors.New("some requests failed")
	}
	return nil
}
