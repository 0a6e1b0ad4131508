package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/internal/loadpush"
)

// jobTally accounts for the events of one push job as they arrive.
type jobTally struct {
	expected   int
	seen       []bool // by event index - 1
	last       int    // highest index seen
	delivered  int    // distinct indexes seen
	duplicates int
	outOfOrder int // events whose index is below one seen before
	bad        int // events with no or a bad index
	done       bool
	failed     string // the error code of a job that ended in error
}

func newJobTally(expected int) *jobTally {
	return &jobTally{expected: expected, seen: make([]bool, expected)}
}

// add accounts for the event of index i.
func (t *jobTally) add(i int) {
	switch {
	case i < 1 || i > t.expected:
		t.bad++
	case t.seen[i-1]:
		t.duplicates++
	default:
		t.seen[i-1] = true
		t.delivered++
		if i < t.last {
			t.outOfOrder++
		}
		t.last = max(t.last, i)
	}
}

// lost is how many events never arrived.
func (t *jobTally) lost() int { return t.expected - t.delivered }

// pushConfig is one push run: jobs async jobs of the push action spread
// over conns connections, each reporting rate events a second for
// duration.
type pushConfig struct {
	url      string
	tokens   func(conn int) string
	action   string
	jobs     int
	conns    int
	rate     int
	duration time.Duration
	timeout  time.Duration
	// strict: every event must arrive (the server does not coalesce).
	strict bool
}

// maxAnomalies bounds pushResult.anomalies.
const maxAnomalies = 10

// pushResult is what a push run measured.
type pushResult struct {
	jobs, completed, failedJobs  int
	expected, delivered          int
	duplicates, outOfOrder, bad  int
	jobsOutOfOrder, jobsWithLoss int
	elapsed                      time.Duration // first submit to last event
	latencies                    []time.Duration
	timedOut                     bool
	// anomalies lists the first jobs that lost, repeated or reordered
	// events, or failed (at most maxAnomalies).
	anomalies []string
}

func (r pushResult) lost() int { return r.expected - r.delivered }

func (r pushResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.delivered) / r.elapsed.Seconds()
}

func quantileOf(sorted []time.Duration, q float64) time.Duration {
	return loadResult{latencies: sorted}.quantile(q)
}

// check returns the run's failure, if any: a job that failed or did not
// complete, a duplicate or out-of-order event, an event without a valid
// index, or (strict) a lost event.
func (r pushResult) check(strict bool) error {
	var errs []error
	if r.failedJobs > 0 {
		errs = append(errs, fmt.Errorf("%d jobs failed", r.failedJobs))
	}
	if n := r.jobs - r.completed - r.failedJobs; n > 0 {
		errs = append(errs, fmt.Errorf("%d jobs did not complete in time", n))
	}
	if r.duplicates > 0 {
		errs = append(errs, fmt.Errorf("%d duplicate events", r.duplicates))
	}
	if r.outOfOrder > 0 {
		errs = append(errs, fmt.Errorf("%d events out of order", r.outOfOrder))
	}
	if r.bad > 0 {
		errs = append(errs, fmt.Errorf("%d events without a valid index", r.bad))
	}
	if strict && r.lost() > 0 {
		errs = append(errs, fmt.Errorf("%d events lost", r.lost()))
	}
	return errors.Join(errs...)
}

// dialLoad opens a load connection with token, if any.
func dialLoad(ctx context.Context, url, token string) (*websocket.Conn, error) {
	hdr := http.Header{}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(streamer.MaxMessageSize * 2)
	return c, nil
}

// runPush dials every connection, submits every job at once, and reads
// events until every job ended or cfg.timeout passed since the submits.
func runPush(ctx context.Context, cfg pushConfig) (pushResult, error) {
	return runPushPayload(ctx, cfg, "")
}

// runPushPayload is runPush with the payload of every submit replaced by
// payload, when not empty (to test the server's checks).
func runPushPayload(ctx context.Context, cfg pushConfig, payload string) (pushResult, error) {
	p := loadpush.Payload{Rate: cfg.rate, DurationMs: int(cfg.duration.Milliseconds())}
	if err := p.Check(); err != nil {
		return pushResult{}, err
	}
	n := p.Events()
	conns := make([]*websocket.Conn, cfg.conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.CloseNow()
			}
		}
	}()
	dialCtx, cancelDial := context.WithTimeout(ctx, cfg.timeout)
	defer cancelDial()
	for i := range conns {
		c, err := dialLoad(dialCtx, cfg.url, cfg.tokens(i))
		if err != nil {
			return pushResult{}, fmt.Errorf("dial connection %d of %d: %w", i+1, cfg.conns, err)
		}
		conns[i] = c
	}
	if payload == "" {
		b, _ := json.Marshal(p)
		payload = string(b)
	}
	runCtx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	type connOut struct {
		tallies []*jobTally
		ids     []string
		lat     []time.Duration
		last    time.Time
	}
	outs := make([]connOut, cfg.conns)
	start := time.Now()
	var wg sync.WaitGroup
	for ci, c := range conns {
		// Jobs ci, ci+conns, ci+2×conns, ... go over connection ci.
		var jobs []int
		for j := ci; j < cfg.jobs; j += cfg.conns {
			jobs = append(jobs, j)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[ci]
			byID := make(map[string]*jobTally, len(jobs))
			for _, j := range jobs {
				t := newJobTally(n)
				o.tallies = append(o.tallies, t)
				o.ids = append(o.ids, "push-"+strconv.Itoa(j))
				byID["push-"+strconv.Itoa(j)] = t
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, j := range jobs {
					frame := `{"action":` + strconv.Quote(cfg.action) + `,"id":"push-` + strconv.Itoa(j) + `","payload":` + payload + `}`
					if c.Write(runCtx, websocket.MessageText, []byte(frame)) != nil {
						return
					}
				}
			}()
			open := len(jobs)
			for open > 0 {
				_, data, err := c.Read(runCtx)
				if err != nil {
					return
				}
				now := time.Now()
				var m streamer.Message
				if json.Unmarshal(data, &m) != nil {
					continue
				}
				t := byID[m.RequestID]
				if t == nil || t.done {
					continue
				}
				switch m.Type {
				case streamer.TypeProgress:
					i, err := strconv.Atoi(m.Metadata[loadpush.KeyIndex])
					if err != nil {
						i = 0
					}
					t.add(i)
					if sent, err := strconv.ParseInt(m.Metadata[loadpush.KeySent], 10, 64); err == nil {
						o.lat = append(o.lat, now.Sub(time.Unix(0, sent)))
					}
					o.last = now
				case streamer.TypeComplete:
					t.done = true
					open--
				case streamer.TypeError:
					t.done = true
					t.failed = "error"
					if m.Error != nil {
						t.failed = m.Error.Code
					}
					open--
				}
			}
		}()
	}
	wg.Wait()
	res := pushResult{jobs: cfg.jobs, expected: cfg.jobs * n, timedOut: runCtx.Err() != nil && ctx.Err() == nil}
	var last time.Time
	for _, o := range outs {
		res.latencies = append(res.latencies, o.lat...)
		if o.last.After(last) {
			last = o.last
		}
		for k, t := range o.tallies {
			if (t.lost() > 0 || t.duplicates > 0 || t.outOfOrder > 0 || t.bad > 0 || t.failed != "") && len(res.anomalies) < maxAnomalies {
				res.anomalies = append(res.anomalies, fmt.Sprintf("%s: %d/%d delivered, %d duplicates, %d out of order, %d without index, done %t %s",
					o.ids[k], t.delivered, t.expected, t.duplicates, t.outOfOrder, t.bad, t.done, t.failed))
			}
			res.delivered += t.delivered
			res.duplicates += t.duplicates
			res.outOfOrder += t.outOfOrder
			res.bad += t.bad
			if t.outOfOrder > 0 {
				res.jobsOutOfOrder++
			}
			if t.lost() > 0 {
				res.jobsWithLoss++
			}
			switch {
			case t.failed != "":
				res.failedJobs++
			case t.done:
				res.completed++
			}
		}
	}
	if !last.IsZero() {
		res.elapsed = last.Sub(start)
	}
	slices.Sort(res.latencies)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

func printPush(w io.Writer, cfg pushConfig, r pushResult) {
	fmt.Fprintf(w, "jobs: %d (%d complete, %d failed, %d unfinished) over %d connections, %d events/s × %v each\n",
		r.jobs, r.completed, r.failedJobs, r.jobs-r.completed-r.failedJobs, cfg.conns, cfg.rate, cfg.duration)
	fmt.Fprintf(w, "events: %d/%d delivered, %d lost (in %d jobs), %d duplicates, %d out of order (in %d jobs), %d without index\n",
		r.delivered, r.expected, r.lost(), r.jobsWithLoss, r.duplicates, r.outOfOrder, r.jobsOutOfOrder, r.bad)
	fmt.Fprintf(w, "delivered: %.0f events/s over %v\n", r.rate(), r.elapsed.Round(time.Millisecond))
	fmt.Fprintf(w, "latency (Report to receipt): p50 %v  p99 %v  max %v\n",
		quantileOf(r.latencies, 0.5).Round(time.Microsecond), quantileOf(r.latencies, 0.99).Round(time.Microsecond), quantileOf(r.latencies, 1).Round(time.Microsecond))
	for _, a := range r.anomalies {
		fmt.Fprintf(w, "  job %s\n", a)
	}
	if r.timedOut {
		fmt.Fprintf(w, "stopped at --timeout %v\n", cfg.timeout)
	}
	if !cfg.strict && r.lost() > 0 {
		fmt.Fprintln(w, "(events the server coalesced count as lost; run the server with coalescing off and pass --coalesce-off to require every event)")
	}
}
