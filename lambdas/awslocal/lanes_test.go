package awslocal_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/lambdas/awslocal"
)

// fakeStream is a one-shard stream whose records the test appends.
type fakeStream struct {
	mu   sync.Mutex
	recs []types.Record
}

func (f *fakeStream) add(pk string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	seq := fmt.Sprintf("%06d", len(f.recs)+1)
	f.recs = append(f.recs, types.Record{
		EventID: aws.String("ev" + seq), EventName: types.OperationTypeInsert,
		Dynamodb: &types.StreamRecord{
			SequenceNumber: aws.String(seq),
			Keys:           map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: pk}, "sk": &types.AttributeValueMemberS{Value: "REQ"}},
		},
	})
	return seq
}

func (f *fakeStream) DescribeStream(context.Context, *dynamodbstreams.DescribeStreamInput, ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error) {
	return &dynamodbstreams.DescribeStreamOutput{StreamDescription: &types.StreamDescription{Shards: []types.Shard{{ShardId: aws.String("shard-1")}}}}, nil
}

func (f *fakeStream) GetShardIterator(context.Context, *dynamodbstreams.GetShardIteratorInput, ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error) {
	return &dynamodbstreams.GetShardIteratorOutput{ShardIterator: aws.String("0")}, nil
}

func (f *fakeStream) GetRecords(_ context.Context, in *dynamodbstreams.GetRecordsInput, _ ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	from, err := strconv.Atoi(aws.ToString(in.ShardIterator))
	if err != nil {
		return nil, err
	}
	to := min(len(f.recs), from+int(aws.ToInt32(in.Limit)))
	return &dynamodbstreams.GetRecordsOutput{Records: slices.Clone(f.recs[from:to]), NextShardIterator: aws.String(strconv.Itoa(to))}, nil
}

// keysIn returns n partition keys of lane want and n of other lanes.
func keysIn(t *testing.T, want, lanes, n int) (same, other []string) {
	t.Helper()
	for i := 0; len(same) < n || len(other) < n; i++ {
		pk := fmt.Sprintf("REQ#subject-%d", i)
		rec := events.DynamoDBEventRecord{Change: events.DynamoDBStreamRecord{Keys: map[string]events.DynamoDBAttributeValue{"pk": events.NewStringAttribute(pk)}}}
		if awslocal.LaneOf(rec, "pk", lanes) == want {
			same = append(same, pk)
		} else {
			other = append(other, pk)
		}
		require.Less(t, i, 10000)
	}
	return same[:n], other[:n]
}

// recorder is a batch handler that records the sequence numbers it was
// given and can hold the batches of chosen records until released.
type recorder struct {
	mu      sync.Mutex
	got     []string        // sequence numbers, in delivery order
	done    map[string]bool // handler returned for this record
	hold    map[string]chan struct{}
	failFor map[string]int // fail the record this many times
}

func newRecorder() *recorder {
	return &recorder{done: map[string]bool{}, hold: map[string]chan struct{}{}, failFor: map[string]int{}}
}

func (r *recorder) handle(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	var resp events.DynamoDBEventResponse
	for _, rec := range ev.Records {
		seq := rec.Change.SequenceNumber
		r.mu.Lock()
		r.got = append(r.got, seq)
		hold := r.hold[seq]
		fail := r.failFor[seq] > 0
		if fail {
			r.failFor[seq]--
		}
		r.mu.Unlock()
		if hold != nil {
			select {
			case <-hold:
			case <-ctx.Done():
			}
		}
		r.mu.Lock()
		r.done[seq] = true
		r.mu.Unlock()
		if fail {
			resp.BatchItemFailures = append(resp.BatchItemFailures, events.DynamoDBBatchItemFailure{ItemIdentifier: seq})
			return resp, nil
		}
	}
	return resp, nil
}

func (r *recorder) delivered(seq string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.got {
		if s == seq {
			n++
		}
	}
	return n
}

func (r *recorder) order() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func runPoller(t *testing.T, cfg awslocal.PollerConfig) {
	t.Helper()
	p, err := awslocal.NewPoller(cfg)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("the poller did not stop")
		}
	})
}

const waitFor, tick = 30 * time.Second, 5 * time.Millisecond

// A batch whose handler runs long holds back the later records of its lane
// (those with a partition key hashing to it), but not those of the other
// lanes, which keep flowing.
func TestPollerLaneHeadOfLineBlocking(t *testing.T) {
	t.Parallel()
	const lanes = 4
	same, other := keysIn(t, 1, lanes, 3)
	stream := &fakeStream{}
	rec := newRecorder()

	slow := stream.add(same[0])
	release := make(chan struct{})
	rec.hold[slow] = release
	behind := []string{stream.add(same[1]), stream.add(same[0]), stream.add(same[2])}
	var others []string
	for _, pk := range other {
		others = append(others, stream.add(pk))
	}

	runPoller(t, awslocal.PollerConfig{
		Streams: stream, StreamARN: "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x", Handler: rec.handle,
		BatchSize: 1, Parallelization: lanes, Interval: time.Millisecond,
	})

	require.Eventually(t, func() bool { return rec.delivered(slow) == 1 }, waitFor, tick)
	// Records of the other lanes, read after the blocked lane's, all arrive
	// while the slow batch runs; more appended later do too.
	others = append(others, stream.add(other[0]), stream.add(other[1]))
	require.Eventually(t, func() bool {
		for _, s := range others {
			if rec.delivered(s) != 1 {
				return false
			}
		}
		return true
	}, waitFor, tick)
	for _, s := range behind {
		require.Zero(t, rec.delivered(s), "record %s of the slow batch's lane was delivered while it ran", s)
	}

	close(release)
	require.Eventually(t, func() bool {
		for _, s := range behind {
			if rec.delivered(s) != 1 {
				return false
			}
		}
		return true
	}, waitFor, tick)
	// The lane delivered its records in stream order, one batch at a time.
	var lane []string
	for _, s := range rec.order() {
		if s == slow || slices.Contains(behind, s) {
			lane = append(lane, s)
		}
	}
	require.Equal(t, append([]string{slow}, behind...), lane)
}

// A failed batch is retried before its lane moves on; once it exhausted
// its retries the lane continues with the records after it.
func TestPollerLaneRetriesBeforeMovingOn(t *testing.T) {
	t.Parallel()
	const lanes = 3
	same, _ := keysIn(t, 0, lanes, 2)
	stream := &fakeStream{}
	rec := newRecorder()
	flaky := stream.add(same[0])
	rec.failFor[flaky] = 1 // fails once, then succeeds
	next := stream.add(same[1])
	broken := stream.add(same[0])
	rec.failFor[broken] = 100 // never succeeds
	last := stream.add(same[1])

	runPoller(t, awslocal.PollerConfig{
		Streams: stream, StreamARN: "arn:aws:dynamodb:us-east-1:000000000000:table/t/stream/x", Handler: rec.handle,
		BatchSize: 1, Parallelization: lanes, MaxRetries: 2, Interval: time.Millisecond,
	})
	require.Eventually(t, func() bool { return rec.delivered(last) == 1 }, waitFor, tick)
	require.Equal(t, []string{flaky, flaky, next, broken, broken, broken, last}, rec.order(),
		"the flaky record twice, the broken one 1+MaxRetries times, each before the records behind it")
}
