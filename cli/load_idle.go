package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// parseVmRSS returns the VmRSS line of a /proc/PID/status text, in bytes.
func parseVmRSS(r io.Reader) (int64, error) { return parseStatusKB(r, "VmRSS") }

// parseStatusKB returns the field (a number of kB) of a /proc/PID/status
// text, in bytes.
func parseStatusKB(r io.Reader, field string) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field+":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%s line %q: want a number of kB", field, sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return 0, fmt.Errorf("%s line %q: want a number of kB", field, sc.Text())
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s line", field)
}

// readRSS returns the resident set size of process pid, in bytes.
func readRSS(pid int) (int64, error) { return readStatusKB(pid, "VmRSS") }

// readPeakRSS returns the peak resident set size of process pid, in bytes.
func readPeakRSS(pid int) (int64, error) { return readStatusKB(pid, "VmHWM") }

func readStatusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read the %s of process %d: %w", field, pid, err)
	}
	defer f.Close() //nolint:errcheck // read only
	n, err := parseStatusKB(f, field)
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return n, nil
}

// pprofGCURL is the URL that makes the server behind wsURL collect its
// garbage: its /debug/pprof/heap?gc=1 (`streamer dev --pprof`, `streamer
// load floor`).
func pprofGCURL(wsURL string) (string, error) {
	u, err := url.Parse(wsURL)
	if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
		return "", fmt.Errorf("--url %q: want a ws:// or wss:// URL with a host", wsURL)
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	return scheme + "://" + u.Host + pprofPrefix + "heap?gc=1", nil
}

// forceGC asks the server to collect its garbage, then lets it settle.
func forceGC(ctx context.Context, gcURL string) error {
	for range 2 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, gcURL, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("force a GC at %s: %w", gcURL, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("force a GC at %s: %s (is pprof on? streamer dev --pprof)", gcURL, resp.Status)
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(500 * time.Millisecond):
	}
	return nil
}

// dialMany dials n connections, parallel at a time, and returns them
// open, with the time it took. On an error it closes what it opened.
func dialMany(ctx context.Context, wsURL string, tokens func(int) string, n, parallel int, keep bool) ([]*websocket.Conn, time.Duration, error) {
	conns := make([]*websocket.Conn, n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t0 := time.Now()
	var wg sync.WaitGroup
	for range min(parallel, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := dialLoad(ctx, wsURL, tokens(i))
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("dial connection %d of %d: %w", i+1, n, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				if keep {
					conns[i] = c
				} else {
					_ = c.CloseNow()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	if firstErr != nil {
		closeAll(conns)
		return nil, elapsed, firstErr
	}
	return conns, elapsed, nil
}

func closeAll(conns []*websocket.Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.CloseNow()
		}
	}
}

// idleResult is what an idle run measured.
type idleResult struct {
	conns        int
	before       int64 // RSS with no load connection, after a GC
	after        int64 // RSS with conns open, after a GC
	dialDuration time.Duration
}

func (r idleResult) perConn() float64 { return float64(r.after-r.before) / float64(r.conns) }

// runIdle reads the server's RSS after a GC, opens conns connections,
// waits settle, reads it again after a GC, and closes them.
func runIdle(ctx context.Context, wsURL, gcURL string, pid int, tokens func(int) string, n int, settle time.Duration) (idleResult, error) {
	res := idleResult{conns: n}
	if err := forceGC(ctx, gcURL); err != nil {
		return res, err
	}
	var err error
	if res.before, err = readRSS(pid); err != nil {
		return res, err
	}
	conns, took, err := dialMany(ctx, wsURL, tokens, n, 16, true)
	if err != nil {
		return res, err
	}
	defer closeAll(conns)
	res.dialDuration = took
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(settle):
	}
	if err := forceGC(ctx, gcURL); err != nil {
		return res, err
	}
	res.after, err = readRSS(pid)
	return res, err
}
