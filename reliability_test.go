package streamer_test

// Fault-injection tests of the promises in RELIABILITY.md: every async
// request ends in exactly one terminal event, its seqs are contiguous, and
// it is never left running forever.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/storage/storagetest"
	"github.com/streamer-go/streamer/transport/transporttest"
)

// faultBundle is an App on a Faulty memory store.
type faultBundle struct {
	app    *streamer.App
	store  *storagetest.Faulty
	rec    *transporttest.Recorder
	conn   streamer.Conn
	other  streamer.Conn // a second connection of the same principal
	runs   atomic.Int64
	cancel context.CancelFunc
	done   chan error
}

type faultOpts struct {
	run bool // run the embedded worker
	cfg func(*streamer.Config)
	// hold makes the "work" action wait on this channel (when non-nil)
	// after its reports and before returning.
	hold chan struct{}
	// returned is called by "work" just before it returns.
	returned func(req *streamer.Request)
}

// faultSetup builds an App whose actions report from two goroutines.
func faultSetup(t *testing.T, o faultOpts) *faultBundle {
	t.Helper()
	b := &faultBundle{store: storagetest.NewFaulty(memory.New()), rec: transporttest.NewRecorder()}
	work := streamer.Action{
		Name:    "work",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
		Handler: streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			b.runs.Add(1)
			var wg sync.WaitGroup
			for g := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 1; i <= 10; i++ {
						_ = rep.Report(ctx, streamer.Update{Percentage: float64(10*i - 5*g), Message: fmt.Sprintf("g%d step %d", g, i)})
					}
				}()
			}
			wg.Wait()
			if o.hold != nil {
				select {
				case <-o.hold:
				case <-ctx.Done():
				}
			}
			if o.returned != nil {
				o.returned(req)
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return map[string]int{"attempt": req.Attempt}, nil
		}),
	}
	flaky := streamer.Action{
		Name: "flaky",
		Options: streamer.ActionOptions{Mode: streamer.ModeAsync,
			Retry: streamer.RetryPolicy{MaxAttempts: 3, InitialBackoff: time.Millisecond, Jitter: -1}},
		Handler: streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			b.runs.Add(1)
			_ = rep.Report(ctx, streamer.Update{Percentage: float64(10 * req.Attempt), Message: "trying"})
			if req.Attempt < 2 {
				return nil, streamer.Retryable(errors.New("transient"))
			}
			return "ok", nil
		}),
	}
	cfg := streamer.Config{
		Store: b.store, Sender: b.rec, CoalesceInterval: -1,
		Plugins: []streamer.Plugin{{Name: "faults", Actions: []streamer.Action{work, flaky}}},
		Lease:   600 * time.Millisecond, StallTimeout: 200 * time.Millisecond, ReapInterval: 200 * time.Millisecond,
	}
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	app, err := streamer.New(cfg)
	require.NoError(t, err)
	b.app = app
	p := &streamer.Principal{Subject: "alice", Tenant: "t1"}
	b.conn = streamer.Conn{ID: "conn-1", Principal: p}
	b.other = streamer.Conn{ID: "conn-2", Principal: p}
	if o.run {
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel, b.done = cancel, make(chan error, 1)
		go func() { b.done <- app.Run(ctx, 4) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-b.done)
		})
	}
	return b
}

func (b *faultBundle) key(id string) storage.Key {
	return storage.Key{Tenant: "t1", Subject: "alice", ID: id}
}

func (b *faultBundle) send(t *testing.T, conn streamer.Conn, frame string) {
	t.Helper()
	require.NoError(t, b.app.HandleMessage(context.Background(), conn, []byte(frame), false))
}

// checkLog asserts the stored promises of one request: seqs 1..n with
// exactly one terminal event, the last; stored percentages never decrease;
// the request is final.
func checkLog(t *testing.T, s storage.Store, k storage.Key) []storage.Event {
	t.Helper()
	evs, err := s.ReadEvents(context.Background(), k, 0, 0)
	require.NoError(t, err)
	require.NotEmpty(t, evs)
	pct := 0.0
	for i, ev := range evs {
		require.Equal(t, int64(i+1), ev.Seq, "seqs are contiguous")
		require.Equal(t, i == len(evs)-1, ev.Terminal(), "exactly one terminal event, the last (seq %d is %s)", ev.Seq, ev.Type)
		if ev.Type == streamer.TypeProgress {
			require.GreaterOrEqual(t, ev.Percentage, pct, "stored percentages never decrease (seq %d)", ev.Seq)
			pct = ev.Percentage
		}
	}
	r, err := s.GetRequest(context.Background(), k)
	require.NoError(t, err)
	require.True(t, r.Status.Final(), "the request is final, not %s", r.Status)
	return evs
}

// checkReceived asserts that a connection received, live or replayed, the
// seqs 1..last of request id exactly as stored (duplicates allowed), ending
// with the terminal event.
func checkReceived(t *testing.T, rec *transporttest.Recorder, connID, id string, stored []storage.Event) {
	t.Helper()
	ms := rec.WaitFor(t, connID, wait, transporttest.HasTerminal(id))
	seen := map[int64]bool{}
	for _, m := range ms {
		switch m.Type {
		case streamer.TypeProgress, streamer.TypeResultChunk, streamer.TypeComplete, streamer.TypeError,
			streamer.TypeStarted, streamer.TypeContinued, streamer.TypeRetrying:
		default:
			continue // replies such as status carry the last seq too
		}
		if m.RequestID != id || m.Seq == 0 {
			continue
		}
		require.LessOrEqual(t, m.Seq, int64(len(stored)), "no seq beyond the stored log")
		require.Equal(t, stored[m.Seq-1].Type, m.Type, "seq %d as stored", m.Seq)
		seen[m.Seq] = true
	}
	for seq := int64(1); seq <= int64(len(stored)); seq++ {
		require.True(t, seen[seq], "%s received seq %d of %s", connID, seq, id)
	}
}

// waitFinal polls the store until the request is final.
func waitFinal(t *testing.T, s storage.Store, k storage.Key) storage.Request {
	t.Helper()
	var r storage.Request
	require.Eventually(t, func() bool {
		var err error
		r, err = s.GetRequest(context.Background(), k)
		return err == nil && r.Status.Final()
	}, 3*wait, 5*time.Millisecond, "request %s never finished", k.ID)
	return r
}

// TestFencingRefusesAZombieRun: processor A claimed the request and stalled
// past its lease; B took it over. A wakes right after B read the last seq
// and writes the next one, then the terminal event. The store refuses both,
// and B's run ends the request with exactly one terminal event.
func TestFencingRefusesAZombieRun(t *testing.T) {
	t.Parallel()
	b := faultSetup(t, faultOpts{})
	b.send(t, b.conn, `{"action":"work","id":"z1"}`)
	k := b.key("z1")
	now := time.Now()
	a, err := b.store.ClaimRequest(context.Background(), k, storage.Claim{Now: now, LeaseUntil: now.Add(-time.Millisecond)})
	require.NoError(t, err)
	require.Equal(t, 1, a.Attempt)

	var zombie sync.Once
	var appendErr, finishErr error
	b.store.After(func(method string, key storage.Key, err error) {
		if method != "LastEvent" || key != k {
			return
		}
		zombie.Do(func() {
			ev := storage.Event{Seq: 1, Type: streamer.TypeProgress, Percentage: 99, Data: []byte(`{"type":"progress"}`)}
			appendErr = b.store.Store.AppendEvent(context.Background(), k, a.Attempt, ev, a.SubsVersion)
			fin := storage.Finish{Attempt: a.Attempt, Status: storage.StatusFailed, Now: time.Now(),
				Event: storage.Event{Seq: 1, Type: streamer.TypeError, Data: []byte(`{"type":"error"}`)}}
			finishErr = b.store.Store.FinishRequest(context.Background(), k, fin)
		})
	})
	require.NoError(t, b.app.Process(context.Background(), k))
	require.ErrorIs(t, appendErr, storage.ErrConflict, "the zombie's append is fenced off")
	require.ErrorIs(t, finishErr, storage.ErrConflict, "the zombie's finish is fenced off")
	require.ErrorIs(t, b.store.ExtendLease(context.Background(), k, a.Attempt, time.Now().Add(time.Minute)), storage.ErrConflict)
	evs := checkLog(t, b.store, k)
	require.Equal(t, streamer.TypeComplete, evs[len(evs)-1].Type)
	r, err := b.store.GetRequest(context.Background(), k)
	require.NoError(t, err)
	require.Equal(t, storage.StatusSucceeded, r.Status)
	require.Equal(t, 1, r.Stalls, "the takeover counts a stall")
	checkReceived(t, b.rec, b.conn.ID, "z1", evs)
}

// TestStorageFailures fails one call of a store method while requests run
// on the embedded worker. Each request still ends in exactly one terminal
// event within lease plus backoff, with contiguous seqs, and both the
// sender and a subscriber receive it.
func TestStorageFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		method string
		fault  storagetest.Fault
		action string
	}{
		{"LastEvent fails at the start of a run", "LastEvent", storagetest.Fault{Calls: []int{1}}, "work"},
		{"AppendEvent fails mid-run", "AppendEvent", storagetest.Fault{Calls: []int{3}}, "work"},
		{"RequeueRequest fails after a retryable error", "RequeueRequest", storagetest.Fault{Calls: []int{1}}, "flaky"},
		{"FinishRequest commits and times out", "FinishRequest", storagetest.Fault{Calls: []int{1}, Commit: true}, "work"},
		{"ExtendLease keeps failing", "ExtendLease", storagetest.Fault{Calls: seq(1, 100)}, "work"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hold := make(chan struct{})
			o := faultOpts{run: true}
			if tc.method == "ExtendLease" {
				// Hold the run past several renewals.
				o.hold = hold
				time.AfterFunc(2*time.Second, func() { close(hold) })
			}
			b := faultSetup(t, o)
			b.store.Fail(tc.method, tc.fault)
			b.send(t, b.conn, fmt.Sprintf(`{"action":%q,"id":"f1"}`, tc.action))
			b.send(t, b.other, `{"action":"resume","payload":{"request_id":"f1"}}`)
			k := b.key("f1")
			waitFinal(t, b.store, k)
			require.Positive(t, b.store.Failed(tc.method), "the fault fired")
			evs := checkLog(t, b.store, k)
			checkReceived(t, b.rec, b.conn.ID, "f1", evs)
			checkReceived(t, b.rec, b.other.ID, "f1", evs)
			if tc.method == "ExtendLease" {
				require.GreaterOrEqual(t, b.runs.Load(), int64(2), "the handler was stopped when its lease ran out, and run again")
			}
		})
	}
}

// TestRetentionMustOutliveARun: a configuration in which a run could
// outlive its request is refused at start, naming the setting.
func TestRetentionMustOutliveARun(t *testing.T) {
	t.Parallel()
	_, err := streamer.New(streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder(), Retention: 10 * time.Minute})
	require.ErrorContains(t, err, "Config.Retention (10m0s) must exceed AsyncTimeout (15m0s) plus Lease (1m0s)")
	long := streamer.Action{Name: "long", Options: streamer.ActionOptions{Timeout: 2 * time.Hour},
		Handler: streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return nil, nil })}
	_, err = streamer.New(streamer.Config{Store: memory.New(), Sender: transporttest.NewRecorder(), Retention: time.Hour,
		Plugins: []streamer.Plugin{{Name: "p", Actions: []streamer.Action{long}}}})
	require.ErrorContains(t, err, `action "long": Timeout (2h0m0s) plus Lease (1m0s) exceeds Config.Retention (1h0m0s)`)
}

// TestCancelRaces fires a cancel, and a resume from another connection, at
// each step of a run: right after the claim, between an append and its
// send, and just before the handler returns. A cancel made before the
// handler returns ends the request canceled; every connection receives
// seqs as stored, ending with the terminal event.
func TestCancelRaces(t *testing.T) {
	t.Parallel()
	steps := []struct {
		name   string
		method string // fire after this store call (for the request)
		nth    int
	}{
		{"after the claim", "ClaimRequest", 1},
		{"between append and send", "AppendEvent", 4},
		{"before the handler returns", "", 0},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			t.Parallel()
			var b *faultBundle
			var fired sync.Once
			fire := func() {
				fired.Do(func() {
					b.send(t, b.other, `{"action":"resume","payload":{"request_id":"c1"}}`)
					b.send(t, b.other, `{"action":"cancel","payload":{"request_id":"c1"}}`)
				})
			}
			o := faultOpts{run: true}
			if step.method == "" {
				o.returned = func(*streamer.Request) { fire() }
			}
			b = faultSetup(t, o)
			if step.method != "" {
				var calls atomic.Int64
				b.store.After(func(method string, k storage.Key, err error) {
					if method == step.method && k.ID == "c1" && err == nil && calls.Add(1) == int64(step.nth) {
						fire()
					}
				})
			}
			b.send(t, b.conn, `{"action":"work","id":"c1"}`)
			k := b.key("c1")
			r := waitFinal(t, b.store, k)
			require.Equal(t, storage.StatusCanceled, r.Status, "a cancel made before the handler returned ends the request canceled")
			evs := checkLog(t, b.store, k)
			checkReceived(t, b.rec, b.conn.ID, "c1", evs)
			checkReceived(t, b.rec, b.other.ID, "c1", evs)
		})
	}
}

// TestProgressNeverGoesBackwards: two goroutines report at once; the
// stored percentages never decrease (run many times to meet the race).
func TestProgressNeverGoesBackwards(t *testing.T) {
	t.Parallel()
	b := faultSetup(t, faultOpts{run: true})
	for i := range 20 {
		id := fmt.Sprintf("p%d", i)
		b.send(t, b.conn, fmt.Sprintf(`{"action":"work","id":%q}`, id))
	}
	for i := range 20 {
		k := b.key(fmt.Sprintf("p%d", i))
		waitFinal(t, b.store, k)
		checkLog(t, b.store, k)
	}
}

// TestReaperEndsARequestThatKeepsStalling: a request whose processor dies
// every time (claimed, never finished) is taken over after each lease, and
// ended with PROCESSING_FAILED once it stalled more than MaxStalls times;
// its sender receives the terminal event.
func TestReaperEndsARequestThatKeepsStalling(t *testing.T) {
	t.Parallel()
	b := faultSetup(t, faultOpts{cfg: func(c *streamer.Config) { c.MaxStalls = 2 }})
	b.send(t, b.conn, `{"action":"work","id":"s1"}`)
	k := b.key("s1")
	// Three processors die holding it: each claim after the first takes
	// over an expired lease.
	for range 3 {
		now := time.Now()
		_, err := b.store.ClaimRequest(context.Background(), k, storage.Claim{Now: now, LeaseUntil: now.Add(-time.Millisecond)})
		require.NoError(t, err)
	}
	// No worker runs: Reap claims it itself (a stall) and ends it.
	time.Sleep(250 * time.Millisecond) // past StallTimeout (200ms)
	n, err := b.app.Reap(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	r := waitFinal(t, b.store, k)
	require.Equal(t, storage.StatusFailed, r.Status)
	require.Equal(t, streamer.CodeProcessingFailed, r.Error.Code)
	require.Zero(t, b.runs.Load(), "the handler never ran")
	evs := checkLog(t, b.store, k)
	checkReceived(t, b.rec, b.conn.ID, "s1", evs)
}

// TestReaperRequeuesAStalledRequest: a request whose stream delivery was
// lost (nothing ran it) is re-queued by Reap once past StallTimeout; a
// processor then runs it to the end.
func TestReaperRequeuesAStalledRequest(t *testing.T) {
	t.Parallel()
	b := faultSetup(t, faultOpts{})
	b.send(t, b.conn, `{"action":"work","id":"l1"}`)
	k := b.key("l1")
	n, err := b.app.Reap(context.Background())
	require.NoError(t, err)
	require.Zero(t, n, "not stalled yet")
	require.Eventually(t, func() bool {
		n, err := b.app.Reap(context.Background())
		require.NoError(t, err)
		return n == 1
	}, wait, 20*time.Millisecond)
	r, err := b.store.GetRequest(context.Background(), k)
	require.NoError(t, err)
	require.Equal(t, storage.StatusQueued, r.Status, "handed back to the queue")
	require.Equal(t, 1, r.Stalls)
	require.NoError(t, b.app.Process(context.Background(), k))
	evs := checkLog(t, b.store, k)
	require.Equal(t, streamer.TypeComplete, evs[len(evs)-1].Type)
	checkReceived(t, b.rec, b.conn.ID, "l1", evs)
}

// TestWorkerReapsWhatItLost: the embedded worker's periodic reap picks up a
// request it never heard of (stored behind its back), without a restart.
func TestWorkerReapsWhatItLost(t *testing.T) {
	t.Parallel()
	b := faultSetup(t, faultOpts{run: true})
	p := []byte(`{"subject":"alice","tenant":"t1"}`)
	now := time.Now()
	k := b.key("lost")
	require.NoError(t, b.store.CreateRequest(context.Background(), storage.Request{
		Key: k, Action: "work", Principal: p, ConnectionID: b.conn.ID, Status: storage.StatusQueued,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour),
	}))
	waitFinal(t, b.store, k)
	evs := checkLog(t, b.store, k)
	checkReceived(t, b.rec, b.conn.ID, "lost", evs)
}

// seq returns from..to.
func seq(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// TestRestartCountsStalls: a request left running by a process that died
// (its lease still valid: Run is the store's only processor) is taken over
// at the restart, counting a stall; one that has crashed the process more
// than MaxStalls times is ended with PROCESSING_FAILED instead of being run
// (and crashing the process) again.
func TestRestartCountsStalls(t *testing.T) {
	t.Parallel()
	b := faultSetup(t, faultOpts{})
	p := []byte(`{"subject":"alice","tenant":"t1"}`)
	now := time.Now()
	for id, stalls := range map[string]int{"again": 0, "poison": 3} {
		require.NoError(t, b.store.CreateRequest(context.Background(), storage.Request{
			Key: b.key(id), Action: "work", Principal: p, ConnectionID: b.conn.ID,
			Status: storage.StatusRunning, Attempt: 2, Stalls: stalls, LeaseUntil: now.Add(time.Minute),
			CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour),
		}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.app.Run(ctx, 4) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()

	again := waitFinal(t, b.store, b.key("again"))
	require.Equal(t, storage.StatusSucceeded, again.Status, "run again after the restart")
	require.Equal(t, 1, again.Stalls)
	poison := waitFinal(t, b.store, b.key("poison"))
	require.Equal(t, storage.StatusFailed, poison.Status)
	require.Equal(t, streamer.CodeProcessingFailed, poison.Error.Code)
	require.Equal(t, 4, poison.Stalls)
	require.Equal(t, int64(1), b.runs.Load(), "only the first one ran")
	checkReceived(t, b.rec, b.conn.ID, "poison", checkLog(t, b.store, b.key("poison")))
}
