package awslocal

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/smithy-go/middleware"
)

// Faults is fault injection for tests: it makes the local runtime's
// DynamoDB misbehave as AWS's can. The zero value injects nothing; the
// Lambdas have no such setting.
type Faults struct {
	// DynamoDBThrottle is the fraction of the handlers' DynamoDB calls
	// (each attempt, retries included) answered with a
	// ProvisionedThroughputExceededException instead of being sent, as
	// DynamoDB answers a throttled call: 0.2 throttles one in five. The
	// stream poller and the table's creation are not throttled.
	DynamoDBThrottle float64
	// Seed seeds the choice of the throttled calls, so that a run's
	// sequence of choices is reproducible (which call gets which choice
	// still depends on the calls' timing).
	Seed uint64
}

// validate reports a fraction outside [0, 1].
func (f Faults) validate() error {
	if f.DynamoDBThrottle < 0 || f.DynamoDBThrottle > 1 || math.IsNaN(f.DynamoDBThrottle) {
		return fmt.Errorf("awslocal: Faults.DynamoDBThrottle %v is not a fraction between 0 and 1", f.DynamoDBThrottle)
	}
	return nil
}

// throttler is a smithy middleware that fails a fraction of the DynamoDB
// calls with a throttling error. It sits at the end of the finalize step,
// inside the SDK's retry loop, so the retryer sees the error as it would
// see DynamoDB's own and retries it.
type throttler struct {
	rate float64

	mu  sync.Mutex
	rnd *rand.Rand

	calls, throttled atomic.Int64
}

func newThrottler(f Faults) *throttler {
	return &throttler{rate: f.DynamoDBThrottle, rnd: rand.New(rand.NewPCG(f.Seed, 0x5eed))} //nolint:gosec // reproducible, not secret
}

// ID names the middleware in the stack.
func (*throttler) ID() string { return "StreamerFaultThrottle" }

// HandleFinalize throttles the call or passes it on.
func (t *throttler) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
	if awsmiddleware.GetServiceID(ctx) != "DynamoDB" {
		return next.HandleFinalize(ctx, in)
	}
	t.calls.Add(1)
	t.mu.Lock()
	throttle := t.rnd.Float64() < t.rate
	t.mu.Unlock()
	if !throttle {
		return next.HandleFinalize(ctx, in)
	}
	t.throttled.Add(1)
	return middleware.FinalizeOutput{}, middleware.Metadata{}, &types.ProvisionedThroughputExceededException{
		Message: aws.String("injected by awslocal.Faults: the level of configured provisioned throughput for the table was exceeded"),
	}
}

// addTo is an aws.Config APIOptions entry.
func (t *throttler) addTo(stack *middleware.Stack) error {
	return stack.Finalize.Add(t, middleware.After)
}

// counts returns how many DynamoDB attempts went through the throttler and
// how many of them it failed.
func (t *throttler) counts() (calls, throttled int64) {
	return t.calls.Load(), t.throttled.Load()
}
