// Package awsretry builds the retryer of every AWS SDK client Streamer's
// Lambdas use (DynamoDB, and the API Gateway Management API), so throttling
// is retried the same way everywhere.
//
// The SDK's standard retryer already classifies ThrottlingException,
// ProvisionedThroughputExceededException, RequestLimitExceeded and the
// like as throttles (retry.DefaultThrottleErrorCodes). On top of it this
// package treats a TransactionCanceledException whose only reasons are
// throttles (ThrottlingError, ProvisionedThroughputExceeded) or None as a
// throttle: DynamoDB wrote nothing, so sending the transaction again is
// safe. Transaction conflicts stay with the store, which retries them
// itself.
//
// Throttles are retried more times than the SDK's default, with a full
// jitter backoff that starts small and is capped, so the worst case of all
// the sleeps of one call is bounded (see [Options.MaxSleep]) and fits well
// within a Lambda's deadline. The sleeps also end with the call's context.
package awsretry

import (
	"errors"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// Defaults of [Options], for DynamoDB: with 20% of the calls throttled, a
// call fails after 10 attempts with a probability of 0.2^10 (about 1e-7).
const (
	DefaultMaxAttempts       = 10
	DefaultBaseDelay         = 25 * time.Millisecond
	DefaultThrottleBaseDelay = 50 * time.Millisecond
	DefaultMaxBackoff        = time.Second
)

// Options configure [New]. Zero fields take the defaults above.
type Options struct {
	// MaxAttempts is the number of attempts of one call, the first
	// included.
	MaxAttempts int
	// BaseDelay is the first retry's delay bound after a transient error
	// that is not a throttle (a 5xx, a connection reset).
	BaseDelay time.Duration
	// ThrottleBaseDelay is the first retry's delay bound after a throttle.
	ThrottleBaseDelay time.Duration
	// MaxBackoff caps the delay bound of one retry. The n-th retry sleeps a
	// uniformly random time below min(base * 2^(n-1), MaxBackoff).
	MaxBackoff time.Duration
	// NoRetryQuota turns the SDK's retry quota off: the token bucket that
	// a client's calls share, which stops all retries once many calls
	// failed. On AWS each Lambda instance has its own client and quota;
	// a process that stands in for many instances at once (the local
	// AWS runtime) turns it off rather than share one quota among them.
	NoRetryQuota bool
}

func (o Options) withDefaults() Options {
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BaseDelay <= 0 {
		o.BaseDelay = DefaultBaseDelay
	}
	if o.ThrottleBaseDelay <= 0 {
		o.ThrottleBaseDelay = DefaultThrottleBaseDelay
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	return o
}

// MaxSleep is the longest a call can sleep between its attempts: the sum
// of the delay bounds of its retries after throttles.
func (o Options) MaxSleep() time.Duration {
	o = o.withDefaults()
	var total time.Duration
	for n := 1; n < o.MaxAttempts; n++ {
		total += bound(o.ThrottleBaseDelay, o.MaxBackoff, n)
	}
	return total
}

// New returns a standard SDK retryer with o's attempts and backoff, and
// throttled transactions counted as throttles. Each call returns a new
// retryer, with its own retry quota.
func New(o Options) aws.RetryerV2 {
	o = o.withDefaults()
	throttles := retry.IsErrorThrottles(append(append([]retry.IsErrorThrottle{}, retry.DefaultThrottles...), throttledTransaction{}))
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = o.MaxAttempts
		so.MaxBackoff = o.MaxBackoff
		so.Throttles = append(so.Throttles, throttledTransaction{})
		so.Retryables = append(so.Retryables, retry.IsErrorRetryableFunc(func(err error) aws.Ternary {
			if (throttledTransaction{}).IsErrorThrottle(err) == aws.TrueTernary {
				return aws.TrueTernary
			}
			return aws.UnknownTernary
		}))
		so.Backoff = backoff{o: o, throttles: throttles}
		if o.NoRetryQuota {
			so.RateLimiter = ratelimit.None
		}
	})
}

// Provider returns a function for aws.Config.Retryer: every client built
// from the configuration gets a retryer of [New] with o.
func Provider(o Options) func() aws.Retryer {
	return func() aws.Retryer { return New(o) }
}

// bound is the delay bound of the n-th retry (n >= 1).
func bound(base, ceiling time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < ceiling; i++ {
		d *= 2
	}
	return min(d, ceiling)
}

// backoff is full jitter: a uniformly random delay below the retry's bound.
type backoff struct {
	o         Options
	throttles retry.IsErrorThrottle
}

// BackoffDelay returns the delay before retrying after attempt (1-based)
// failed with err.
func (b backoff) BackoffDelay(attempt int, err error) (time.Duration, error) {
	base := b.o.BaseDelay
	if b.throttles.IsErrorThrottle(err) == aws.TrueTernary {
		base = b.o.ThrottleBaseDelay
	}
	return time.Duration(rand.Int64N(int64(bound(base, b.o.MaxBackoff, max(attempt, 1))))), nil //nolint:gosec // jitter needs no crypto
}

// throttledTransaction classifies a transaction canceled only by throttling.
type throttledTransaction struct{}

// IsErrorThrottle reports true for a TransactionCanceledException whose
// reasons are all None or throttles, at least one a throttle.
func (throttledTransaction) IsErrorThrottle(err error) aws.Ternary {
	var canceled *types.TransactionCanceledException
	if !errors.As(err, &canceled) {
		return aws.UnknownTernary
	}
	throttled := false
	for _, r := range canceled.CancellationReasons {
		switch aws.ToString(r.Code) {
		case "None", "":
		case "ThrottlingError", "ProvisionedThroughputExceeded":
			throttled = true
		default:
			return aws.UnknownTernary
		}
	}
	if !throttled {
		return aws.UnknownTernary
	}
	return aws.TrueTernary
}
