// Package progress coalesces progress reports so that a handler reporting in
// a tight loop costs at most a bounded number of stored and sent events.
//
// A [Coalescer] emits the first update at once, then at most one update per
// interval, always keeping the latest: the trailing update is emitted when
// its interval ends, or by [Coalescer.Flush]. Time comes from a [Clock], so
// tests control it.
package progress

import "time"

// Clock is the time source of a [Coalescer]. [System] is the real one.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless the returned
	// timer is stopped first.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started, and reports whether it
	// did so.
	Stop() bool
}

// System is the real clock, backed by package time.
var System Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
