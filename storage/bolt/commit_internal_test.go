package bolt

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
)

// wait is the deadline of everything that should be quick: generous, for a
// loaded machine.
const wait = 30 * time.Second

// plugged is a store whose committer can be held on a batch (a connection
// "plug") until release is called, so that the writes started meanwhile
// queue up, in the order they are started, for the next batch.
type plugged struct {
	s       *Store
	path    string
	release func()
	plugErr chan error
	mu      sync.Mutex
	batches []int // the size of each batch taken since hold
}

// plug opens a store and holds its committer.
func plug(t *testing.T) *plugged {
	t.Helper()
	p := openPlugged(t)
	p.hold(t)
	return p
}

func openPlugged(t *testing.T) *plugged {
	t.Helper()
	p := &plugged{path: filepath.Join(t.TempDir(), "streamer.db"), plugErr: make(chan error, 1)}
	s, err := Open(p.path, Options{})
	require.NoError(t, err)
	p.s = s
	return p
}

// hold makes the committer stop on the next batch, the plug write, until
// release, and records the size of every batch from there on.
func (p *plugged) hold(t *testing.T) {
	t.Helper()
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	p.release = func() { once.Do(func() { close(release) }) }
	t.Cleanup(p.release)
	p.s.gc.mu.Lock()
	p.s.gc.hook = func(batch []*write) {
		p.mu.Lock()
		p.batches = append(p.batches, len(batch))
		first := len(p.batches) == 1
		p.mu.Unlock()
		if first {
			close(held)
			<-release
		}
	}
	p.s.gc.mu.Unlock()
	go func() {
		p.plugErr <- p.s.putMark(context.Background(), "plug")
	}()
	select {
	case <-held:
	case <-time.After(wait):
		t.Fatal("the plug write never reached the committer")
	}
}

// queued returns how many writes wait for the committer.
func (p *plugged) queued() int {
	p.s.gc.mu.Lock()
	defer p.s.gc.mu.Unlock()
	return len(p.s.gc.queue)
}

// start runs fn in a goroutine and returns once its write is queued, so
// that writes queue in the order they are started.
func (p *plugged) start(t *testing.T, fn func() error) <-chan error {
	t.Helper()
	n := p.queued()
	out := make(chan error, 1)
	go func() { out <- fn() }()
	require.Eventually(t, func() bool { return p.queued() == n+1 }, wait, time.Millisecond, "the write is queued")
	return out
}

func result(t *testing.T, ch <-chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(wait):
		t.Fatal("a write did not return")
		return nil
	}
}

// claimed creates and claims the request id (attempt 1).
func claimed(t *testing.T, s *Store, id string) storage.Key {
	t.Helper()
	ctx := t.Context()
	k := storage.Key{Tenant: "t", Subject: "alice", ID: id}
	now := time.Now()
	require.NoError(t, s.CreateRequest(ctx, storage.Request{Key: k, Status: storage.StatusQueued, CreatedAt: now}))
	_, err := s.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Hour)})
	require.NoError(t, err)
	return k
}

func seqs(t *testing.T, s *Store, k storage.Key) []int64 {
	t.Helper()
	evs, err := s.ReadEvents(t.Context(), k, 0, 0)
	require.NoError(t, err)
	out := []int64{}
	for _, e := range evs {
		out = append(out, e.Seq)
	}
	return out
}

// TestBatchFailureIsolation queues nine writes behind a held commit, so
// that they are committed as one batch, and checks that each gets the
// result it would have had alone, in that order: refusals (a fenced
// append, a taken seq, a changed subscriber version, an existing request)
// and a write that fails after writing fail only their own call and store
// nothing; the others are stored, in one commit, with the refusals costing
// no rerun and the failed write exactly one.
func TestBatchFailureIsolation(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	p := openPlugged(t)
	s := p.s
	defer func() { require.NoError(t, s.Close()) }()
	r1, r2, r3 := claimed(t, s, "r1"), claimed(t, s, "r2"), claimed(t, s, "r3")
	p.hold(t)
	commits, reruns := s.gc.commits.Load(), s.gc.reruns.Load()

	ev := func(seq int64) storage.Event {
		return storage.Event{Seq: seq, Type: "progress", Data: []byte(`{"seq":` + strconv.FormatInt(seq, 10) + `}`)}
	}
	errFailed := errors.New("failed while writing")
	a := p.start(t, func() error { return s.AppendEvent(ctx, r1, 1, ev(1), 0) })
	fenced := p.start(t, func() error { return s.AppendEvent(ctx, r2, 2, ev(1), 0) })
	c := p.start(t, func() error { return s.AppendEvent(ctx, r3, 1, ev(1), 0) })
	taken := p.start(t, func() error { return s.AppendEvent(ctx, r1, 1, ev(1), 0) })
	sub := p.start(t, func() error { return s.Subscribe(ctx, r3, "c1", time.Time{}) })
	changed := p.start(t, func() error { return s.AppendEvent(ctx, r3, 1, ev(2), 0) })
	exists := p.start(t, func() error { return s.CreateRequest(ctx, storage.Request{Key: r1, Status: storage.StatusQueued}) })
	dirty := p.start(t, func() error {
		return s.update(ctx, "dirty", 0, nil, func(tx *bbolt.Tx) error {
			if err := tx.Bucket(bucketConns).Put([]byte("half"), []byte("{}")); err != nil {
				return err
			}
			return errFailed
		})
	})
	i := p.start(t, func() error { return s.AppendEvent(ctx, r1, 1, ev(2), 0) })
	p.release()
	require.NoError(t, result(t, p.plugErr))

	require.NoError(t, result(t, a))
	require.ErrorIs(t, result(t, fenced), storage.ErrConflict)
	require.NoError(t, result(t, c))
	require.ErrorIs(t, result(t, taken), storage.ErrConflict)
	require.NoError(t, result(t, sub))
	var sc *storage.SubscribersChangedError
	require.ErrorAs(t, result(t, changed), &sc)
	require.Equal(t, int64(1), sc.Version, "the subscribe before it in the batch")
	require.ErrorIs(t, result(t, exists), storage.ErrExists)
	err := result(t, dirty)
	require.ErrorIs(t, err, errFailed)
	require.Contains(t, err.Error(), "bolt: dirty: ")
	require.NoError(t, result(t, i))

	p.mu.Lock()
	require.Equal(t, []int{1, 9}, p.batches, "the plug, then the nine writes in one batch")
	p.mu.Unlock()
	require.Equal(t, int64(2), s.gc.commits.Load()-commits, "the plug and the batch: one commit each")
	require.Equal(t, int64(1), s.gc.reruns.Load()-reruns, "only the write that failed after writing reran the batch")

	require.Equal(t, []int64{1, 2}, seqs(t, s, r1))
	require.Empty(t, seqs(t, s, r2), "the fenced append stored nothing")
	require.Equal(t, []int64{1}, seqs(t, s, r3))
	got, err := s.GetRequest(ctx, r3)
	require.NoError(t, err)
	require.Equal(t, int64(1), got.SubsVersion)
	require.False(t, s.hasConnRecord(t, "half"), "the failed write's half is rolled back")
	require.True(t, s.hasMark(t, "plug"))
}

// TestCanceledWhileQueued: a write whose context ends while it waits for
// the committer is withdrawn and stores nothing; the writes around it are
// committed.
func TestCanceledWhileQueued(t *testing.T) {
	t.Parallel()
	p := plug(t)
	s := p.s
	defer func() { require.NoError(t, s.Close()) }()
	ctx := t.Context()
	before := p.start(t, func() error { return s.putMark(ctx, "before") })
	cctx, cancel := context.WithCancel(ctx)
	canceled := p.start(t, func() error { return s.putMark(cctx, "canceled") })
	after := p.start(t, func() error { return s.putMark(ctx, "after") })
	cancel()
	require.ErrorIs(t, result(t, canceled), context.Canceled)
	require.Equal(t, 2, p.queued(), "withdrawn from the queue")
	p.release()
	require.NoError(t, result(t, p.plugErr))
	require.NoError(t, result(t, before))
	require.NoError(t, result(t, after))
	for id, want := range map[string]bool{"before": true, "after": true, "canceled": false} {
		require.Equal(t, want, s.hasMark(t, id), id)
	}
}

// committerGoroutines counts the goroutines running a committer's loop.
func committerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	return strings.Count(string(buf), "bolt.(*committer).loop(")
}

// TestCloseWhileWritersWait: Close fails the writes still waiting for
// their commit with ErrClosed (they store nothing), lets the commit in
// flight finish (its write is stored), stops the committer's goroutine and
// returns every writer. Not parallel: it counts the committer goroutines of
// the whole process, and parallel tests are held while it runs.
func TestCloseWhileWritersWait(t *testing.T) {
	base := committerGoroutines()
	p := plug(t)
	s := p.s
	require.Equal(t, base+1, committerGoroutines(), "one goroutine per store")
	ctx := t.Context()
	const waiting = 10
	results := make([]<-chan error, waiting)
	for i := range results {
		id := "waiting-" + strconv.Itoa(i)
		results[i] = p.start(t, func() error { return s.putMark(ctx, id) })
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	for i, ch := range results {
		err := result(t, ch)
		require.ErrorIs(t, err, ErrClosed, "writer %d", i)
		require.Contains(t, err.Error(), "closed")
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) before the commit in flight", err)
	default:
	}
	p.release()
	require.NoError(t, result(t, p.plugErr), "the commit in flight completes")
	require.NoError(t, result(t, closed))
	require.ErrorIs(t, s.putMark(ctx, "late"), ErrClosed)
	require.NoError(t, s.Close(), "a second Close")
	require.Eventually(t, func() bool { return committerGoroutines() == base }, wait, 10*time.Millisecond, "the committer goroutine ended")

	s, err := Open(p.path, Options{})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	require.True(t, s.hasMark(t, "plug"))
	for i := range waiting {
		require.False(t, s.hasMark(t, "waiting-"+strconv.Itoa(i)))
	}
}

// TestBatchLimits: a batch takes at most MaxBatch writes and about
// MaxBatchBytes, but always at least one write.
func TestBatchLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		opts    Options
		sizes   []int
		batches []int
	}{
		{"ops", Options{MaxBatch: 2}, []int{10, 10, 10, 10, 10}, []int{2, 2, 1}},
		{"bytes", Options{MaxBatchBytes: 1000}, []int{400, 400, 400, 2000, 10}, []int{2, 1, 1, 1}},
		{"one at a time", Options{MaxBatch: 1}, []int{1, 1, 1}, []int{1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := Open(filepath.Join(t.TempDir(), "streamer.db"), tc.opts)
			require.NoError(t, err)
			defer func() { require.NoError(t, s.Close()) }()
			var got []int
			var mu sync.Mutex
			ws := make([]*write, len(tc.sizes))
			// Queued all at once, under the lock the committer takes them with.
			s.gc.mu.Lock()
			for i, size := range tc.sizes {
				id := []byte("c" + strconv.Itoa(i))
				ws[i] = &write{ctx: context.Background(), size: size, done: make(chan struct{}),
					apply: func(tx *bbolt.Tx) error { return tx.Bucket(bucketConns).Put(id, []byte("{}")) }}
				s.gc.queue = append(s.gc.queue, ws[i])
			}
			s.gc.hook = func(b []*write) {
				mu.Lock()
				got = append(got, len(b))
				mu.Unlock()
			}
			s.gc.mu.Unlock()
			s.gc.signal()
			for _, w := range ws {
				select {
				case <-w.done:
					require.NoError(t, w.err)
				case <-time.After(wait):
					t.Fatal("a write was not committed")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			require.Equal(t, tc.batches, got)
		})
	}
}

func TestOpenBadBatchLimits(t *testing.T) {
	t.Parallel()
	for _, o := range []Options{{MaxBatch: -1}, {MaxBatchBytes: -1}} {
		_, err := Open(filepath.Join(t.TempDir(), "streamer.db"), o)
		require.ErrorContains(t, err, "must not be negative")
	}
}

// putMark is a write through the group commit: the key test-mark-ID in the
// meta bucket.
func (s *Store) putMark(ctx context.Context, id string) error {
	return s.update(ctx, "put mark", len(id), nil, func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("test-mark-"+id), []byte{1})
	})
}

// hasMark reports whether putMark(id) is stored.
func (s *Store) hasMark(t *testing.T, id string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, s.view(t.Context(), "has mark", func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketMeta).Get([]byte("test-mark-"+id)) != nil
		return nil
	}))
	return ok
}

// hasConnRecord reports whether the connections bucket holds id.
func (s *Store) hasConnRecord(t *testing.T, id string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, s.view(t.Context(), "has conn record", func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketConns).Get([]byte(id)) != nil
		return nil
	}))
	return ok
}
