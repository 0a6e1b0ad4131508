// Package loadpush is the push action of `streamer load push`: an async
// action that reports progress events at a fixed rate for a fixed time,
// each stamped with the time of its Report call, so the load tool can time
// its delivery. The bare floor server (`streamer load floor`) sends the
// same events on the same schedule. It is served only when asked
// (`streamer dev --bench`), and every request is bounded: at most
// [MaxRate] events a second, for at most [MaxDuration], [MaxEvents] in
// all.
package loadpush

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/streamer-go/streamer"
)

// Action is the name of the push action.
const Action = "loadpush"

// Limits of one request.
const (
	// MaxRate is the most events a second one request may ask for.
	MaxRate = 1000
	// MaxDuration is the longest a request may report for.
	MaxDuration = time.Minute
	// MaxEvents is the most events of one request (rate × duration).
	MaxEvents = 10000
)

// Metadata keys of every event.
const (
	// KeyIndex is the event's index, 1 to the request's event count.
	KeyIndex = "i"
	// KeySent is the wall-clock time of the event's Report call, in Unix
	// nanoseconds.
	KeySent = "t"
)

// Payload is a push request's payload.
type Payload struct {
	// Rate is events a second, 1 to [MaxRate].
	Rate int `json:"rate"`
	// DurationMs is how long to report, in milliseconds, 1 to
	// [MaxDuration].
	DurationMs int `json:"duration_ms"`
}

// Events is how many events p reports: Rate × DurationMs / 1000, at least
// one.
func (p Payload) Events() int {
	return max(1, int(int64(p.Rate)*int64(p.DurationMs)/1000))
}

// Check reports what is wrong with p, or nil.
func (p Payload) Check() error {
	switch {
	case p.Rate < 1 || p.Rate > MaxRate:
		return fmt.Errorf("rate %d: must be 1-%d", p.Rate, MaxRate)
	case p.DurationMs < 1 || time.Duration(p.DurationMs)*time.Millisecond > MaxDuration:
		return fmt.Errorf("duration_ms %d: must be 1-%d", p.DurationMs, MaxDuration.Milliseconds())
	case p.Events() > MaxEvents:
		return fmt.Errorf("rate × duration is %d events: at most %d", p.Events(), MaxEvents)
	}
	return nil
}

// Validate checks the payload before the request is stored
// ([streamer.Validator]).
func (p *Payload) Validate() error {
	if err := p.Check(); err != nil {
		return streamer.NewError(streamer.CodeValidation, "payload failed validation: "+err.Error())
	}
	return nil
}

// Result is a push request's result.
type Result struct {
	// Events is how many events were reported.
	Events int `json:"events"`
}

// Run calls emit for events 1 to p.Events(), event i at i/Rate seconds
// after the start, with the metadata to send (index and Report time). It
// stops at the first error of emit, or when ctx is done.
func Run(ctx context.Context, p Payload, emit func(i int, md map[string]string) error) error {
	if err := p.Check(); err != nil {
		return err
	}
	n := p.Events()
	interval := time.Second / time.Duration(p.Rate)
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 1; i <= n; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-timer.C:
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		md := map[string]string{KeyIndex: strconv.Itoa(i), KeySent: strconv.FormatInt(time.Now().UnixNano(), 10)}
		if err := emit(i, md); err != nil {
			return err
		}
	}
	return nil
}

// Plugin returns the plugin "loadpush" with the async push action: each
// event is one Report with Percentage i×100/n and the metadata of [Run].
func Plugin() streamer.Plugin {
	return streamer.Plugin{
		Name: "loadpush",
		Actions: []streamer.Action{{
			Name:    Action,
			Handler: streamer.Typed(push),
			Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Timeout: MaxDuration + time.Minute},
		}},
	}
}

func push(ctx context.Context, in Payload, rep streamer.Reporter) (Result, error) {
	n := in.Events()
	err := Run(ctx, in, func(i int, md map[string]string) error {
		return rep.Report(ctx, streamer.Update{Percentage: float64(100*i) / float64(n), Metadata: md})
	})
	if err != nil {
		if errors.Is(err, ctx.Err()) {
			return Result{}, fmt.Errorf("loadpush: %w", err)
		}
		return Result{}, err
	}
	return Result{Events: n}, nil
}
