package lambdaapp_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// opCounter counts AWS API calls by service and operation, through an SDK
// middleware on every client built from the configuration.
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *opCounter) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("streamer-count", func(
		ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler,
	) (middleware.InitializeOutput, middleware.Metadata, error) {
		c.mu.Lock()
		c.n[awsmiddleware.GetServiceID(ctx)+"."+awsmiddleware.GetOperationName(ctx)]++
		c.mu.Unlock()
		return next.HandleInitialize(ctx, in)
	}), middleware.Before)
}

func (c *opCounter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.n
	c.n = map[string]int{}
	return out
}

var dynamoWrites = map[string]bool{"PutItem": true, "UpdateItem": true, "DeleteItem": true, "TransactWriteItems": true, "BatchWriteItem": true}
var dynamoReads = map[string]bool{"GetItem": true, "Query": true, "Scan": true, "BatchGetItem": true}

// counterOps parses cost's detail back into counts.
func counterOps(detail string) map[string]int {
	out := map[string]int{}
	for _, f := range strings.Fields(detail) {
		op, n, _ := strings.Cut(f, "=")
		var v int
		_, _ = fmt.Sscan(n, &v)
		out[op] = v
	}
	return out
}

// cost sums calls: DynamoDB writes and reads, and PostToConnection.
func cost(ops map[string]int) (writes, reads, posts int, detail string) {
	var parts []string
	for op, n := range ops {
		svc, name, _ := strings.Cut(op, ".")
		switch {
		case svc == "DynamoDB" && dynamoWrites[name]:
			writes += n
		case svc == "DynamoDB" && dynamoReads[name]:
			reads += n
		case name == "PostToConnection":
			posts += n
		}
		parts = append(parts, fmt.Sprintf("%s=%d", op, n))
	}
	sort.Strings(parts)
	return writes, reads, posts, strings.Join(parts, " ")
}

// TestCostPerAsyncRequest counts what one async request with N progress
// events costs on the AWS path (router and processor, against DynamoDB
// Local and the local gateway's Management API). BENCHMARKS.md records the
// figures. The writes are held to the target of at most 4 + N.
func TestCostPerAsyncRequest(t *testing.T) {
	t.Parallel()
	lambdatest.DynamoDBLocal(t) // skips or fails before anything else when there is none
	counter := &opCounter{n: map[string]int{}}
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	require.NoError(t, err)
	awsCfg.APIOptions = append(awsCfg.APIOptions, counter.add)
	s := newStackWith(t, lambdaapp.Options{AWS: &awsCfg})
	c, id := s.open(t, "dora")
	counter.take()

	const steps = 4 // 200 ms apart: above the 100 ms coalescing interval, so all are stored
	s.send(t, id, fmt.Sprintf(`{"action":"delay","id":"cost-1","payload":{"ms":%d,"steps":%d}}`, 200*steps, steps))
	require.Equal(t, streamer.TypeAcknowledgment, lambdatest.Read(t, c).Type)
	rw, rr, rp, rd := cost(counter.take())

	_, insert := s.capture(t, isQueuedInsert("cost-1"))
	counter.take()
	require.Empty(t, s.process(t, context.Background(), decode(t, insert)))
	got := lambdatest.ReadUntil(t, c, streamer.TypeComplete)
	pw, pr, pp, pd := cost(counter.take())

	progress := 0
	for _, m := range got {
		if m.Type == streamer.TypeProgress {
			progress++
		}
	}
	require.Equal(t, steps, progress, "every step stored and sent")
	t.Logf("router:    %d writes, %d reads, %d posts (%s)", rw, rr, rp, rd)
	t.Logf("processor: %d writes, %d reads, %d posts (%s)", pw, pr, pp, pd)
	t.Logf("per request with N=%d progress events: %d writes, %d reads, %d posts", steps, rw+pw, rr+pr, rp+pp)
	require.LessOrEqual(t, rw+pw, 4+steps, "DynamoDB writes per request: at most 4 + N")
	processorOps := counterOps(pd)
	require.Equal(t, 4, processorOps["DynamoDB.Query"],
		"no read per progress event: the last event, the subscribers once, and again before the terminal, "+
			"and the finish's look for a parked request of the tenant (the tenant limits are on)")
	require.Equal(t, 1+1+steps+1, rp+pp, "one post per message: the acknowledgment, started, each progress, the complete")
}

// TestCostPerReaperRun counts what the reaper costs: a run that finds
// nothing (its price once a minute), a run that re-queues one stalled
// request, and a run that ends one with PROCESSING_FAILED. BENCHMARKS.md
// records the figures.
func TestCostPerReaperRun(t *testing.T) {
	t.Parallel()
	lambdatest.DynamoDBLocal(t)
	counter := &opCounter{n: map[string]int{}}
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	require.NoError(t, err)
	awsCfg.APIOptions = append(awsCfg.APIOptions, counter.add)
	s := newReapStack(t, lambdaapp.Options{AWS: &awsCfg})
	ctx := context.Background()

	// reap runs the reaper until a run reaps one request (or, with want
	// 0, once), and returns that run's calls.
	reap := func(want int) map[string]int {
		deadline := time.Now().Add(reapStallTimeout + 2*lambdatest.Wait)
		for {
			counter.take()
			res, err := s.reaper.Reap(ctx, scheduled())
			require.NoError(t, err)
			ops := counter.take()
			if res.Reaped == want {
				return ops
			}
			require.Zero(t, res.Reaped)
			require.True(t, time.Now().Before(deadline), "nothing was reaped")
			time.Sleep(100 * time.Millisecond)
		}
	}

	_, _, _, idle := cost(reap(0))
	iw, ir, ip, _ := cost(counterOps(idle))
	t.Logf("a run that finds nothing: %d writes, %d reads, %d posts (%s)", iw, ir, ip, idle)
	require.Zero(t, iw+ip)
	require.Zero(t, counterOps(idle)["DynamoDB.Scan"], "never a scan")
	require.Equal(t, 3*dynamodb.StatusShards+1, ir,
		"one query per live status and shard of the status index, and one of the keys with parked requests")

	c, key := s.openAsync(t, "cost", "reap-1")
	s.capture(t, isQueuedInsert("reap-1"))
	crash(t, s.store(t), key)
	rw, rr, rp, requeue := cost(reap(1))
	t.Logf("a run that re-queues one:  %d writes, %d reads, %d posts (%s)", rw, rr, rp, requeue)
	require.Equal(t, 2, rw, "the claim and the re-queue")
	require.Equal(t, 3, rr-ir, "the request (BatchGetItem), its last event, and the look for a parked request of the tenant")
	require.Zero(t, rp)

	s.requeueRecord(t, "reap-1", 1)
	crash(t, s.store(t), key)
	ew, er, ep, end := cost(reap(1))
	t.Logf("a run that ends one:       %d writes, %d reads, %d posts (%s)", ew, er, ep, end)
	require.Equal(t, streamer.TypeError, lambdatest.ReadUntil(t, c, streamer.TypeError)[0].Type)
	require.Equal(t, 2, ew, "the claim and the finish")
	require.Equal(t, 4, er-ir, "the request, its last event, its subscribers and the look for a parked request")
	require.Equal(t, 1, ep, "the terminal event, posted to the one subscriber")
}
