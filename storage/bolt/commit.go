package bolt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"github.com/streamer-go/streamer/storage"
)

// ErrClosed is the error of a write made after [Store.Close], or still
// waiting for its turn when Close was called: it was not stored.
var ErrClosed = errors.New("bolt: the store is closed")

// Group commit limits, used when [Options.MaxBatch] or
// [Options.MaxBatchBytes] is zero.
const (
	// DefaultMaxBatch is the most writes committed together.
	DefaultMaxBatch = 1000
	// DefaultMaxBatchBytes is the most encoded bytes (about) committed
	// together; a single larger write is committed alone.
	DefaultMaxBatchBytes = 4 << 20
)

// txFunc is one step of a write, run inside a read-write transaction.
type txFunc func(tx *bbolt.Tx) error

// write is one call's write, waiting for the committer. check decides
// whether the write is refused and must write nothing; apply writes. Both
// may run more than once (a batch that meets a failing apply is rolled back
// and run again without it), so they reset what they compute on each run.
type write struct {
	ctx   context.Context
	size  int
	check txFunc // nil: never refused
	apply txFunc
	// log, when set, is the event the write appends, and the write's
	// apply only stores it: a batch of such writes goes to the event log
	// (see wal.go), with check run in a read-only transaction.
	log *logRecord

	err   error         // the result, set before done is closed
	done  chan struct{} // closed when err is final
	taken bool          // in a batch (or failed by Close); guarded by committer.mu
}

// committer is the Store's group commit: one goroutine commits the writes
// that queue up, in order of arrival, as many together as the limits allow,
// in one bbolt transaction (one fsync'd commit). A write that arrives while
// the committer is idle is committed at once; writes that arrive while a
// commit is in flight go into the next one. Each caller waits until the
// commit that holds its write has returned, so a write that returned nil is
// durable as before.
//
// Each write runs its check, then its apply, in the batch's transaction,
// seeing the writes before it. A refused check writes nothing and fails
// only its own call. A failing apply (a bbolt error, a damaged page) may
// have written part of its change: the transaction is rolled back and the
// batch run again without it. The outcome of each call is that of a
// transaction of its own run in the batch's order.
type committer struct {
	db       *bbolt.DB
	maxOps   int
	maxBytes int
	wake     chan struct{} // capacity 1: work or Close
	stopped  chan struct{} // closed when the loop has returned
	commits  atomic.Int64  // committed transactions, for tests and benchmarks
	reruns   atomic.Int64  // batches rolled back for a failed apply, for tests
	flushes  atomic.Int64  // flushes of the event log that committed, for tests

	// wal is the event log (see wal.go); pend its events not yet in the
	// file. A batch goes to the log only while it is not broken. flushing
	// is set while a flush goroutine runs and closed when it has ended.
	// Only the loop uses wal and flushing.
	wal      *wal
	pend     *pending
	flushing chan struct{}
	// preRecs are the pending events a bbolt-path batch copies into the
	// file before its writes, through preLSN; preDone is set once a
	// transaction that did so committed.
	preRecs []logRecord
	preLSN  uint64
	preDone bool
	// fences caches the fence of the requests events were logged for:
	// only the bbolt path changes a request, and it clears the cache.
	fences map[string]storage.Request
	// flushRecords, flushBytes and flushAfter are the flush thresholds
	// (the constants of the same names; tests lower them).
	flushRecords, flushBytes int
	flushAfter               time.Duration
	buf                      []byte // the encoding of a batch for the log

	mu     sync.Mutex
	queue  []*write
	closed bool
	// hook, when set (tests), is called with each batch before it runs.
	hook func(batch []*write)
}

func newCommitter(db *bbolt.DB, w *wal, maxOps, maxBytes int) *committer {
	c := &committer{
		db:       db,
		maxOps:   maxOps,
		maxBytes: maxBytes,
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		wal:      w,
		pend:     newPending(),
		fences:   map[string]storage.Request{},

		flushRecords: flushRecords,
		flushBytes:   flushBytes,
		flushAfter:   flushAfter,
	}
	go c.loop()
	return c
}

// do queues w and waits for its result. When w.ctx ends before w is taken
// into a batch, w is withdrawn and the context's error returned; once taken,
// do waits for the commit (w's check fails a write whose context has ended).
func (c *committer) do(w *write) error {
	w.done = make(chan struct{})
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.queue = append(c.queue, w)
	c.mu.Unlock()
	c.signal()

	select {
	case <-w.done:
		return w.err
	case <-w.ctx.Done():
	}
	c.mu.Lock()
	if !w.taken {
		if i := slices.Index(c.queue, w); i >= 0 {
			c.queue = slices.Delete(c.queue, i, i+1)
		}
		c.mu.Unlock()
		return w.ctx.Err()
	}
	c.mu.Unlock()
	<-w.done
	return w.err
}

func (c *committer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close fails the queued writes with ErrClosed, waits for the commit in
// flight and stops the loop. It may be called more than once.
func (c *committer) close() {
	c.mu.Lock()
	queued := c.queue
	c.queue = nil
	c.closed = true
	for _, w := range queued {
		w.taken = true
	}
	c.mu.Unlock()
	for _, w := range queued {
		w.err = ErrClosed
		close(w.done)
	}
	c.signal()
	<-c.stopped
}

func (c *committer) loop() {
	defer close(c.stopped)
	for {
		batch := c.next()
		if batch == nil {
			c.finish()
			return
		}
		c.commit(batch)
	}
}

// next waits for queued writes and takes the next batch, or returns nil
// when the committer is closed.
func (c *committer) next() []*write {
	for {
		c.mu.Lock()
		if n := len(c.queue); n > 0 {
			size, i := 0, 0
			for ; i < n && i < c.maxOps; i++ {
				if i > 0 && size+c.queue[i].size > c.maxBytes {
					break
				}
				size += c.queue[i].size
				c.queue[i].taken = true
			}
			batch := slices.Clone(c.queue[:i])
			rest := copy(c.queue, c.queue[i:])
			clear(c.queue[rest:])
			c.queue = c.queue[:rest]
			hook := c.hook
			c.mu.Unlock()
			if hook != nil {
				hook(batch)
			}
			return batch
		}
		if c.closed {
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		c.idle()
	}
}

// idle waits for a write, starting a flush when pending events have waited
// long enough meanwhile.
func (c *committer) idle() {
	if c.flushing != nil {
		select {
		case <-c.wake:
		case <-c.flushing:
			c.flushing = nil
		}
		return
	}
	n, _, oldest := c.pend.stats()
	if n == 0 {
		<-c.wake
		return
	}
	t := time.NewTimer(c.flushAfter - time.Since(oldest))
	defer t.Stop()
	select {
	case <-c.wake:
	case <-t.C:
		c.maybeFlush()
	}
}

// errRerun rolls a batch back to run it again without a failed write.
var errRerun = errors.New("bolt: rerun the batch")

// commit runs batch in one transaction and gives each write its result.
// After two reruns the rest is committed one write per transaction, which
// bounds the work a batch full of failing writes costs.
func (c *committer) commit(batch []*write) {
	defer func() {
		for _, w := range batch {
			close(w.done)
		}
	}()
	if c.wal.broken == nil && !slices.ContainsFunc(batch, func(w *write) bool { return w.log == nil }) {
		c.commitLog(batch)
		return
	}
	// Any other write sees the logged events: they are copied into the
	// file first, in its transaction.
	c.waitFlush()
	clear(c.fences) // the batch may change them
	c.preRecs, c.preLSN = c.pend.all()
	defer c.dropPending()
	live := slices.Clone(batch) // batch keeps every write: DeleteFunc clears the tail
	for rerun := 0; len(live) > 0; rerun++ {
		if rerun == 2 && len(live) > 1 {
			for _, w := range live {
				c.commitAlone(w)
			}
			return
		}
		var failed *write
		err := c.guard(func() error {
			return c.db.Update(func(tx *bbolt.Tx) error {
				if err := c.pre(tx); err != nil {
					return err
				}
				for _, w := range live {
					var dirty bool
					dirty, w.err = w.run(tx, c.db.Path())
					if dirty {
						failed = w
						return errRerun
					}
				}
				return nil
			})
		})
		if failed != nil {
			c.reruns.Add(1)
			live = slices.DeleteFunc(live, func(w *write) bool { return w == failed })
			continue
		}
		if err == nil {
			c.commits.Add(1)
			c.preDone = true
			return
		}
		// The commit itself failed: nothing of the batch is stored. A
		// refused write keeps its refusal, as alone it would have.
		for _, w := range live {
			if w.err == nil {
				w.err = err
			}
		}
		return
	}
}

// commitAlone commits w in a transaction of its own.
func (c *committer) commitAlone(w *write) {
	var failed error
	err := c.guard(func() error {
		return c.db.Update(func(tx *bbolt.Tx) error {
			if err := c.pre(tx); err != nil {
				return err
			}
			var dirty bool
			dirty, w.err = w.run(tx, c.db.Path())
			if dirty {
				failed = w.err
				return errRerun
			}
			return nil
		})
	})
	switch {
	case failed != nil:
		w.err = failed
	case err == nil:
		c.commits.Add(1)
		c.preDone = true
	case w.err == nil:
		w.err = err
	}
}

// guard runs fn, a bbolt transaction, turning a panic (a damaged page)
// into an error wrapping ErrCorrupt.
func (c *committer) guard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = corruptError(c.db.Path(), p)
		}
	}()
	return fn()
}

// run runs w in tx. dirty reports a failure after w may have written: the
// transaction must be rolled back. A panic (a damaged page) is such a
// failure, with an error wrapping ErrCorrupt.
func (w *write) run(tx *bbolt.Tx, path string) (dirty bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			dirty, err = true, corruptError(path, p)
		}
	}()
	// The wait for the batch may have been long.
	if err := w.ctx.Err(); err != nil {
		return false, err
	}
	if w.check != nil {
		if err := w.check(tx); err != nil {
			return false, err
		}
	}
	if err := w.apply(tx); err != nil {
		return true, err
	}
	return false, nil
}

// pre copies the pending events into the file in tx, until a commit has.
func (c *committer) pre(tx *bbolt.Tx) error {
	if c.preDone || len(c.preRecs) == 0 {
		return nil
	}
	return applyRecords(tx, c.preRecs, c.preLSN)
}

// dropPending forgets the pending events a commit copied into the file and
// empties the log.
func (c *committer) dropPending() {
	recs, done := c.preRecs, c.preDone
	c.preRecs, c.preDone = nil, false
	if !done || len(recs) == 0 {
		return
	}
	c.pend.removeThrough(c.preLSN, time.Now())
	// Failing to retire segments leaves records that the LSN stored with
	// them makes Open skip: nothing to undo.
	_ = c.wal.applied()
}

// commitLog commits a batch of event appends to the event log: each
// write's check runs in one read-only transaction, against the file and
// the pending events, and the accepted events are written and synced
// together. A write returns once its event is synced.
func (c *committer) commitLog(batch []*write) {
	var (
		buf      = c.buf[:0]
		recs     []logRecord
		accepted []*write
		staged   = map[string][]int64{}
	)
	err := c.guard(func() error {
		return c.db.View(func(tx *bbolt.Tx) error {
			for _, w := range batch {
				if w.err = w.ctx.Err(); w.err != nil {
					continue
				}
				r := *w.log
				if w.err = c.checkFence(tx, r); w.err != nil {
					continue
				}
				if w.err = seqFree(tx, []byte(r.rk), r.seq); w.err != nil {
					continue
				}
				if c.pend.has(r.rk, r.seq) || slices.Contains(staged[r.rk], r.seq) {
					w.err = fmt.Errorf("request %s seq %d: %w", r.rk, r.seq, storage.ErrConflict)
					continue
				}
				staged[r.rk] = append(staged[r.rk], r.seq)
				r.lsn = c.wal.next
				c.wal.next++
				buf = r.appendTo(buf)
				recs = append(recs, r)
				accepted = append(accepted, w)
			}
			return nil
		})
	})
	if err != nil {
		for _, w := range batch {
			if w.err == nil {
				w.err = err
			}
		}
		return
	}
	if len(recs) == 0 {
		return
	}
	if cap(buf) <= 1<<20 {
		c.buf = buf // reused by the next batch
	}
	if err := c.wal.append(buf); err != nil {
		c.wal.next = recs[0].lsn // none of them is in the log
		for _, w := range accepted {
			w.err = err
		}
		return
	}
	c.pend.add(recs, time.Now())
	c.commits.Add(1)
	c.maybeFlush()
}

// maybeFlush starts a flush of the pending events when there are enough
// of them, or when the oldest has waited flushAfter, and none is running.
// The flush copies them into the file in a goroutine of its own, while
// appends go on in a new segment of the log.
func (c *committer) maybeFlush() {
	if c.flushing != nil {
		select {
		case <-c.flushing:
			c.flushing = nil
		default:
			return
		}
	}
	n, size, oldest := c.pend.stats()
	if n == 0 || n < c.flushRecords && size < c.flushBytes && time.Since(oldest) < c.flushAfter {
		return
	}
	sealed, err := c.wal.rotate()
	if err != nil {
		return // the next write or flush copies them
	}
	recs, lsn := c.pend.all()
	done := make(chan struct{})
	c.flushing = done
	go func() {
		defer close(done)
		err := c.guard(func() error {
			return c.db.Update(func(tx *bbolt.Tx) error { return applyRecords(tx, recs, lsn) })
		})
		if err != nil {
			return // they stay pending: the next flush or write copies them
		}
		c.flushes.Add(1)
		c.pend.removeThrough(lsn, time.Now())
		_ = retire(c.wal.base, sealed)
	}()
}

// waitFlush waits for the running flush, if any.
func (c *committer) waitFlush() {
	if c.flushing != nil {
		<-c.flushing
		c.flushing = nil
	}
}

// finish copies what is pending into the file and removes the log, when
// the committer stops.
func (c *committer) finish() {
	c.waitFlush()
	recs, lsn := c.pend.all()
	if len(recs) > 0 {
		err := c.guard(func() error {
			return c.db.Update(func(tx *bbolt.Tx) error { return applyRecords(tx, recs, lsn) })
		})
		if err != nil {
			_ = c.wal.close()
			return // Open copies them
		}
		c.pend.removeThrough(lsn, time.Now())
	}
	if c.wal.close() == nil {
		_ = removeLog(c.wal.base)
	}
}

// maxFences bounds the fence cache.
const maxFences = 100_000

// checkFence runs r's fence check on its request's status, attempt and
// subscriber version, read from the file once and cached.
func (c *committer) checkFence(tx *bbolt.Tx, r logRecord) error {
	now := time.Now()
	f, ok := c.fences[r.rk]
	if !ok || expired(f.ExpiresAt, now) {
		var err error
		if f, err = getFence(tx, []byte(r.rk), now); err != nil {
			return err
		}
		if len(c.fences) >= maxFences {
			clear(c.fences)
		}
		c.fences[r.rk] = f
	}
	return r.fence(f)
}
