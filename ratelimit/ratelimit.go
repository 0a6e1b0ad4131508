// Package ratelimit is Streamer's token-bucket rate limiter: one interface,
// [Limiter], with an in-process backend (package ratelimit/memory, for the
// embedded runtime) and a DynamoDB backend (package ratelimit/dynamodb, for
// Lambda, where every invocation may run in another process).
//
// A [Rule] describes a bucket: it holds at most Burst tokens, starts full,
// and refills at Rate tokens per Per. Each admitted request takes tokens
// (usually one); a request that finds too few is refused, takes nothing,
// and is told how long to wait ([Decision.RetryAfter]).
//
// The bucket arithmetic lives here, in [Rule.Take] on a [State], so both
// backends compute the same thing and tests can drive it with any clock.
// The middleware that refuses requests with RATE_LIMITED is
// middleware.RateLimit; the conformance suite every backend passes is
// package ratelimit/ratelimittest.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limiter takes tokens from named buckets. Implementations are safe for
// concurrent use, and two Take calls on the same key and rule never admit
// more than the bucket holds, whichever process makes them (within the
// backend's scope: one process for memory, every process sharing the table
// for DynamoDB).
type Limiter interface {
	// Take takes n tokens from the bucket named key, which follows rule.
	// It returns a Decision: Allowed when the bucket held n tokens (they
	// are taken), otherwise a refusal that takes nothing and says when n
	// tokens will be there. err is non-nil only when the limiter could not
	// decide (a storage failure, an invalid rule or n, an empty key); the
	// Decision is then zero.
	Take(ctx context.Context, key string, rule Rule, n int) (Decision, error)
}

// Decision is the outcome of [Limiter.Take].
type Decision struct {
	// Allowed reports that the tokens were taken.
	Allowed bool
	// Remaining is the whole number of tokens left in the bucket after the
	// take (or, when refused, now).
	Remaining int
	// RetryAfter is how long until the bucket holds the tokens asked for;
	// zero when Allowed.
	RetryAfter time.Duration
}

// Rule describes a token bucket.
type Rule struct {
	// Rate is how many tokens the bucket gains per Per. Must be positive.
	Rate float64
	// Per is the period of Rate. Zero means one second.
	Per time.Duration
	// Burst is the bucket's capacity: how many requests may pass at once
	// after a quiet period. Zero means Rate rounded up (at least 1).
	Burst int
}

// Errors of [Limiter.Take] and [ParseRule].
var (
	// ErrInvalidRule: the rule's Rate is not positive and finite, or Per
	// or Burst is negative.
	ErrInvalidRule = errors.New("ratelimit: invalid rule")
	// ErrInvalidTake: n is below 1 or above the rule's burst (such a take
	// could never be allowed), or the key is empty.
	ErrInvalidTake = errors.New("ratelimit: invalid take")
)

// Normalize returns r with its defaults filled in (Per one second, Burst
// the rate rounded up), or ErrInvalidRule.
func (r Rule) Normalize() (Rule, error) {
	if !(r.Rate > 0) || math.IsInf(r.Rate, 0) || r.Per < 0 || r.Burst < 0 {
		return r, fmt.Errorf("%w: rate %v per %s, burst %d", ErrInvalidRule, r.Rate, r.Per, r.Burst)
	}
	if r.Per == 0 {
		r.Per = time.Second
	}
	if r.Burst == 0 {
		r.Burst = int(max(1, math.Ceil(r.Rate)))
	}
	return r, nil
}

// perNano is the refill rate in tokens per nanosecond.
func (r Rule) perNano() float64 { return r.Rate / float64(r.Per) }

// FillTime is how long an empty bucket takes to refill to Burst. A bucket
// untouched for that long is full, the same as a bucket never used: a
// backend may forget it.
func (r Rule) FillTime() time.Duration {
	return time.Duration(math.Ceil(float64(r.Burst) / r.perNano()))
}

// String formats r as [ParseRule] reads it, such as "10/s,burst=20".
func (r Rule) String() string {
	unit := r.Per.String()
	switch r.Per {
	case 0, time.Second:
		unit = "s"
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return strconv.FormatFloat(r.Rate, 'g', -1, 64) + "/" + unit + ",burst=" + strconv.Itoa(r.Burst)
}

// ParseRule reads a rule written RATE/UNIT[,burst=N]: RATE a positive
// number, UNIT s, m, h or a Go duration (such as 10s), for example
// "10/s,burst=20" or "100/m". Burst defaults as in [Rule].
func ParseRule(s string) (Rule, error) {
	head, opts, _ := strings.Cut(strings.TrimSpace(s), ",")
	rate, unit, ok := strings.Cut(head, "/")
	if !ok {
		return Rule{}, fmt.Errorf("%w: %q is not RATE/UNIT[,burst=N] (e.g. 10/s,burst=20)", ErrInvalidRule, s)
	}
	var r Rule
	var err error
	if r.Rate, err = strconv.ParseFloat(strings.TrimSpace(rate), 64); err != nil {
		return Rule{}, fmt.Errorf("%w: rate %q is not a number", ErrInvalidRule, rate)
	}
	switch unit = strings.TrimSpace(unit); unit {
	case "s":
		r.Per = time.Second
	case "m":
		r.Per = time.Minute
	case "h":
		r.Per = time.Hour
	default:
		if r.Per, err = time.ParseDuration(unit); err != nil || r.Per <= 0 {
			return Rule{}, fmt.Errorf("%w: unit %q is not s, m, h or a positive duration", ErrInvalidRule, unit)
		}
	}
	if opts != "" {
		k, v, _ := strings.Cut(opts, "=")
		if strings.TrimSpace(k) != "burst" {
			return Rule{}, fmt.Errorf("%w: unknown option %q (only burst=N)", ErrInvalidRule, opts)
		}
		if r.Burst, err = strconv.Atoi(strings.TrimSpace(v)); err != nil || r.Burst < 1 {
			return Rule{}, fmt.Errorf("%w: burst %q is not a positive integer", ErrInvalidRule, v)
		}
	}
	return r.Normalize()
}

// State is a bucket's stored state: its tokens as of Updated. The zero
// State is a bucket never used, which is full.
type State struct {
	// Tokens held at Updated.
	Tokens float64
	// Updated is when Tokens was computed; zero for a new bucket.
	Updated time.Time
}

// At returns the tokens the bucket holds at now: Tokens plus the refill
// since Updated, capped at Burst. A clock that went back (now before
// Updated, another process's clock) refills nothing. r must be normalized.
func (r Rule) At(s State, now time.Time) float64 {
	if s.Updated.IsZero() {
		return float64(r.Burst)
	}
	elapsed := now.Sub(s.Updated)
	if elapsed <= 0 {
		return min(s.Tokens, float64(r.Burst))
	}
	return min(float64(r.Burst), s.Tokens+float64(elapsed)*r.perNano())
}

// Take computes a take of n tokens at now from s: the new state and the
// decision. A refused take returns s unchanged, so a backend writes only
// when allowed. r must be normalized and n within 1..Burst. Updated never
// goes back: when now is before s.Updated, the new state keeps s.Updated.
func (r Rule) Take(s State, now time.Time, n int) (State, Decision) {
	tokens := r.At(s, now)
	if tokens >= float64(n) {
		t := now
		if !s.Updated.IsZero() && now.Before(s.Updated) {
			t = s.Updated
		}
		left := tokens - float64(n)
		return State{Tokens: left, Updated: t}, Decision{Allowed: true, Remaining: int(left)}
	}
	wait := time.Duration(math.Ceil((float64(n) - tokens) / r.perNano()))
	return s, Decision{Remaining: int(tokens), RetryAfter: max(wait, time.Nanosecond)}
}

// Check validates a Take's arguments and returns the normalized rule. Both
// backends call it first.
func Check(key string, rule Rule, n int) (Rule, error) {
	r, err := rule.Normalize()
	if err != nil {
		return r, err
	}
	if key == "" {
		return r, fmt.Errorf("%w: empty key", ErrInvalidTake)
	}
	if n < 1 || n > r.Burst {
		return r, fmt.Errorf("%w: %d tokens from a bucket of %d", ErrInvalidTake, n, r.Burst)
	}
	return r, nil
}
