package progress

import (
	"sync"
	"time"
)

// DefaultInterval is the default coalescing interval: at most 10 updates a
// second.
const DefaultInterval = 100 * time.Millisecond

// Coalescer limits how often updates of type T are emitted. It is safe for
// concurrent use. Emit calls never overlap and happen in the order the
// updates were accepted; an update that arrives while an emit is running
// waits for it.
type Coalescer[T any] struct {
	interval time.Duration
	clock    Clock
	emit     func(T) error

	mu       sync.Mutex // guards the fields below
	last     time.Time  // when the last emit started, or was due (see fire)
	due      time.Time  // when the armed timer is due
	emitted  bool       // whether anything was emitted yet
	pending  T
	has      bool // pending holds an update
	timer    Timer
	closed   bool
	emitting sync.Mutex     // serializes emit calls
	errMu    sync.Mutex     // guards err; never held while taking mu
	err      error          // first emit error
	timers   sync.WaitGroup // timer callbacks armed or running
	dropped  int64          // updates accepted and never emitted
}

// NewCoalescer returns a coalescer that calls emit at most once per interval.
// An interval ≤ 0 disables coalescing: every update is emitted. A nil clock
// means [System].
func NewCoalescer[T any](interval time.Duration, clock Clock, emit func(T) error) *Coalescer[T] {
	if clock == nil {
		clock = System
	}
	return &Coalescer[T]{interval: interval, clock: clock, emit: emit}
}

// Add offers an update. It is emitted now when the interval since the last
// emit has passed, and otherwise kept (replacing any older pending update)
// to be emitted when the interval ends. Add returns the first error emit
// returned, if any; after an error or Close, updates are dropped.
func (c *Coalescer[T]) Add(u T) error {
	c.mu.Lock()
	if c.closed || c.firstErr() != nil {
		err := c.firstErr()
		c.mu.Unlock()
		return err
	}
	now := c.clock.Now()
	if c.has {
		// The pending update is replaced, now or below: never emitted.
		c.dropped++
	}
	if c.interval <= 0 || !c.emitted || now.Sub(c.last) >= c.interval {
		c.stopTimer()
		c.has = false
		c.last, c.emitted = now, true
		c.emitting.Lock()
		c.mu.Unlock()
		return c.doEmit(u)
	}
	c.pending, c.has = u, true
	if c.timer == nil {
		c.timers.Add(1)
		c.due = c.last.Add(c.interval)
		c.timer = c.clock.AfterFunc(c.due.Sub(now), c.fire)
	}
	c.mu.Unlock()
	return nil
}

// doEmit runs emit while holding c.emitting, and releases it.
func (c *Coalescer[T]) doEmit(u T) error {
	defer c.emitting.Unlock()
	if err := c.emit(u); err != nil {
		c.errMu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.errMu.Unlock()
		return err
	}
	return nil
}

// fire emits the pending update when its interval ends. The next interval
// counts from when this emit was due, not from when the timer ran: a timer
// that fires late (a busy machine) would otherwise push every later
// update of a steady reporter behind a timer too, adding up to an
// interval of delay to each. Emits stay at most one per interval on
// average.
func (c *Coalescer[T]) fire() {
	defer c.timers.Done()
	c.mu.Lock()
	c.timer = nil
	if c.closed || !c.has || c.firstErr() != nil {
		c.mu.Unlock()
		return
	}
	u := c.pending
	var zero T
	c.pending, c.has = zero, false
	c.last, c.emitted = c.due, true
	c.emitting.Lock()
	c.mu.Unlock()
	_ = c.doEmit(u)
}

// Flush emits the pending update, if any, now. It waits for a running emit
// to finish first.
func (c *Coalescer[T]) Flush() error {
	c.mu.Lock()
	c.stopTimer()
	if !c.has || c.closed || c.firstErr() != nil {
		err := c.firstErr()
		c.mu.Unlock()
		// Wait for an emit in flight, so the caller sees its effects.
		c.emitting.Lock()
		c.emitting.Unlock() //nolint:staticcheck // an empty critical section waits for the emit in flight
		return err
	}
	u := c.pending
	var zero T
	c.pending, c.has = zero, false
	c.last, c.emitted = c.clock.Now(), true
	c.emitting.Lock()
	c.mu.Unlock()
	return c.doEmit(u)
}

// FlushWith takes the pending update, if any, and calls fn with it (and
// has set) while no emit runs, so fn may emit it together with a write of
// its own, in order with every other emit. It counts as an emit when has
// is set. An error fn returns is returned and, when has is set, kept as
// the coalescer's error like an emit's. After an earlier emit error or
// Close, fn is not called and that error (nil after Close) is returned.
func (c *Coalescer[T]) FlushWith(fn func(u T, has bool) error) error {
	c.mu.Lock()
	if c.closed || c.firstErr() != nil {
		err := c.firstErr()
		c.mu.Unlock()
		return err
	}
	c.stopTimer()
	u, has := c.pending, c.has
	var zero T
	c.pending, c.has = zero, false
	if has {
		c.last, c.emitted = c.clock.Now(), true
	}
	c.emitting.Lock()
	c.mu.Unlock()
	defer c.emitting.Unlock()
	err := fn(u, has)
	if err != nil && has {
		c.errMu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.errMu.Unlock()
	}
	return err
}

// Close drops any pending update, stops the timer and waits for an emit in
// flight. No emit starts after Close returns.
func (c *Coalescer[T]) Close() {
	c.mu.Lock()
	c.closed = true
	c.stopTimer()
	if c.has {
		c.dropped++
	}
	var zero T
	c.pending, c.has = zero, false
	c.mu.Unlock()
	c.emitting.Lock()
	c.emitting.Unlock() //nolint:staticcheck // an empty critical section waits for the emit in flight
	c.timers.Wait()
}

// stopTimer cancels the pending timer; c.mu must be held. A timer that could
// not be stopped has started fire, which marks itself done.
func (c *Coalescer[T]) stopTimer() {
	if c.timer != nil {
		if c.timer.Stop() {
			c.timers.Done()
		}
		c.timer = nil
	}
}

func (c *Coalescer[T]) firstErr() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	return c.err
}

// Dropped returns how many accepted updates were never emitted: replaced
// by a later one within the interval, or pending at Close.
func (c *Coalescer[T]) Dropped() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped
}
