package awsretry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"
)

func canceled(codes ...string) error {
	reasons := make([]types.CancellationReason, len(codes))
	for i, c := range codes {
		reasons[i] = types.CancellationReason{Code: aws.String(c)}
	}
	return fmt.Errorf("operation error: %w", &types.TransactionCanceledException{Message: aws.String("canceled"), CancellationReasons: reasons})
}

func TestRetryable(t *testing.T) {
	r := New(Options{})
	require.Equal(t, DefaultMaxAttempts, r.MaxAttempts())
	for _, tc := range []struct {
		name      string
		err       error
		retryable bool
	}{
		{"ProvisionedThroughputExceededException", &types.ProvisionedThroughputExceededException{Message: aws.String("slow down")}, true},
		{"ThrottlingException", &smithy.GenericAPIError{Code: "ThrottlingException"}, true},
		{"RequestLimitExceeded", &types.RequestLimitExceeded{}, true},
		{"transaction throttled", canceled("None", "ThrottlingError"), true},
		{"transaction over its throughput", canceled("ProvisionedThroughputExceeded", "None"), true},
		{"transaction condition failed", canceled("ConditionalCheckFailed", "ThrottlingError"), false},
		{"transaction conflict (the store retries it)", canceled("TransactionConflict"), false},
		{"transaction with no reason", canceled("None", "None"), false},
		{"condition failed", &types.ConditionalCheckFailedException{}, false},
		{"validation", &smithy.GenericAPIError{Code: "ValidationException"}, false},
		{"plain", errors.New("boom"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.retryable, r.IsErrorRetryable(tc.err))
		})
	}
}

func TestBackoffIsBounded(t *testing.T) {
	o := Options{}.withDefaults()
	b := backoff{o: o, throttles: throttledTransaction{}}
	throttle := canceled("ThrottlingError")
	for attempt := 1; attempt < o.MaxAttempts; attempt++ {
		limit := bound(o.ThrottleBaseDelay, o.MaxBackoff, attempt)
		other := bound(o.BaseDelay, o.MaxBackoff, attempt)
		for range 200 {
			d, err := b.BackoffDelay(attempt, throttle)
			require.NoError(t, err)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.Less(t, d, limit)
			d, err = b.BackoffDelay(attempt, errors.New("connection reset"))
			require.NoError(t, err)
			require.Less(t, d, other)
		}
	}
	require.Equal(t, 50*time.Millisecond, bound(o.ThrottleBaseDelay, o.MaxBackoff, 1))
	require.Equal(t, 800*time.Millisecond, bound(o.ThrottleBaseDelay, o.MaxBackoff, 5))
	require.Equal(t, time.Second, bound(o.ThrottleBaseDelay, o.MaxBackoff, 9))
	// 50+100+200+400+800 ms, then four retries of at most 1s.
	require.Equal(t, 5550*time.Millisecond, Options{}.MaxSleep())
}

func TestProvider(t *testing.T) {
	p := Provider(Options{MaxAttempts: 4})
	a, b := p(), p()
	require.Equal(t, 4, a.MaxAttempts())
	require.NotSame(t, a, b, "each client gets its own retry quota")
}

// TestNoRetryQuota: the SDK's retry quota stops retries once a client's
// calls failed often enough; NoRetryQuota (the local AWS runtime, one
// client for many emulated instances) never runs out.
func TestNoRetryQuota(t *testing.T) {
	t.Parallel()
	fail := errors.New("a transient failure")
	takeAll := func(r aws.RetryerV2) error {
		for range 1000 {
			if _, err := r.GetRetryToken(context.Background(), fail); err != nil {
				return err
			}
		}
		return nil
	}
	require.Error(t, takeAll(New(Options{})), "the default quota runs out")
	require.NoError(t, takeAll(New(Options{NoRetryQuota: true})))
}
