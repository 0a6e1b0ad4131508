package bolt

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"

	"go.etcd.io/bbolt"
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

	mu     sync.Mutex
	queue  []*write
	closed bool
	// hook, when set (tests), is called with each batch before it runs.
	hook func(batch []*write)
}

func newCommitter(db *bbolt.DB, maxOps, maxBytes int) *committer {
	c := &committer{
		db:       db,
		maxOps:   maxOps,
		maxBytes: maxBytes,
		wake:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
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
		<-c.wake
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
