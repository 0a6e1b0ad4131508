// Package awslocal runs Streamer's AWS path on one machine: DynamoDB Local
// for storage and, in place of the Lambda event source mapping, a poller
// that reads the table's DynamoDB stream and invokes the processor with
// Lambda-shaped batches. [LambdaService] stands in for the Lambda Invoke
// API, running registered functions in process or, through [RIEPool],
// under the Runtime Interface Emulator.
package awslocal

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer/storage/dynamodb"
)

// StreamsAPI is the part of the DynamoDB Streams client the poller uses.
type StreamsAPI interface {
	DescribeStream(ctx context.Context, in *dynamodbstreams.DescribeStreamInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, in *dynamodbstreams.GetShardIteratorInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *dynamodbstreams.GetRecordsInput, optFns ...func(*dynamodbstreams.Options)) (*dynamodbstreams.GetRecordsOutput, error)
}

// BatchHandler is a stream-invoked Lambda handler, such as the processor's.
type BatchHandler func(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error)

// PollerConfig configures a [Poller]. Zero values mean the defaults, which
// are serverless.yml's for the processor's event source mapping.
type PollerConfig struct {
	Streams   StreamsAPI
	StreamARN string
	Region    string
	Handler   BatchHandler
	// Filter keeps the records the event source mapping's filter pattern
	// would pass; nil passes all.
	Filter func(events.DynamoDBEventRecord) bool
	// BatchSize is the most records per invocation; default 10.
	BatchSize int
	// MaxRetries is how often a failed record is retried before it is
	// dropped (and logged, standing in for the on-failure queue); default 3.
	MaxRetries int
	// Interval is the wait between polls of an idle shard; default 100ms.
	Interval time.Duration
	// Parallelization is the number of lanes of each shard, as the event
	// source mapping's ParallelizationFactor; default 10. A record's lane
	// is chosen by a hash of its partition key; a lane delivers its records
	// in order, one batch at a time. A batch whose handler runs long holds
	// up the later records of its lane, but not those of the other lanes.
	Parallelization int
	// PartitionKey is the key attribute the lanes hash, read from the
	// records' Keys; default the table's, dynamodb.AttrPK.
	PartitionKey string
	Logger       zerolog.Logger
}

// Poller reads a DynamoDB stream and invokes a handler with Lambda-shaped
// batches, as an event source mapping with ReportBatchItemFailures does:
// failed records are retried from the first failure on, up to MaxRetries.
// Like an event source mapping with a ParallelizationFactor, it processes
// each shard in Parallelization lanes: records of one partition key share
// a lane, a lane has at most one batch in flight, and its next batch
// starts once the previous one succeeded or exhausted its retries.
// It starts each shard at TRIM_HORIZON, so requests queued while it was
// down are not missed (processing them again is harmless: the processor's
// claim runs each request once).
type Poller struct {
	cfg PollerConfig
	wg  sync.WaitGroup

	mu     sync.Mutex
	shards map[string]*shardLanes // touched by Run and the lanes' goroutines
}

// shardLanes are the lanes of one shard.
type shardLanes struct {
	lanes  []lane
	queued int // records waiting in the lanes
}

// lane is a FIFO of records and whether a goroutine delivers them.
type lane struct {
	queue []events.DynamoDBEventRecord
	busy  bool
}

// NewPoller validates cfg.
func NewPoller(cfg PollerConfig) (*Poller, error) {
	switch {
	case cfg.Streams == nil:
		return nil, errors.New("awslocal: PollerConfig.Streams is required")
	case cfg.StreamARN == "":
		return nil, errors.New("awslocal: PollerConfig.StreamARN is required")
	case cfg.Handler == nil:
		return nil, errors.New("awslocal: PollerConfig.Handler is required")
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 10
	}
	if cfg.MaxRetries <= 0 {
		cfg.MaxRetries = 3
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 100 * time.Millisecond
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Parallelization <= 0 {
		cfg.Parallelization = 10
	}
	if cfg.PartitionKey == "" {
		cfg.PartitionKey = dynamodb.AttrPK
	}
	return &Poller{cfg: cfg, shards: map[string]*shardLanes{}}, nil
}

// readAhead is how many records a shard's lanes may hold before the poller
// stops reading the shard until they drain.
func (p *Poller) readAhead() int {
	return max(1000, 10*p.cfg.BatchSize*p.cfg.Parallelization)
}

// Run polls until ctx is canceled, then returns nil after the invocations in
// progress end.
func (p *Poller) Run(ctx context.Context) error {
	defer p.wg.Wait()
	iters := map[string]*string{} // open shards and their iterators
	done := map[string]bool{}     // closed shards, fully read
	rediscover := time.Time{}
	for ctx.Err() == nil {
		if time.Now().After(rediscover) {
			if err := p.discover(ctx, iters, done); err != nil && ctx.Err() == nil {
				p.cfg.Logger.Warn().Err(err).Msg("awslocal: describing the stream failed")
			}
			rediscover = time.Now().Add(2 * time.Second)
		}
		got := 0
		for shard, it := range iters {
			if p.backlog(shard) >= p.readAhead() {
				continue // its lanes are behind: read on once they drain
			}
			n, next, err := p.poll(ctx, shard, it)
			if err != nil {
				if ctx.Err() != nil {
					return nil //nolint:nilerr // canceled: stopping is not a failure
				}
				p.cfg.Logger.Warn().Err(err).Str("shard", shard).Msg("awslocal: reading the stream failed")
				delete(iters, shard) // rediscovered with a fresh iterator
				rediscover = time.Time{}
				continue
			}
			got += n
			if next == nil {
				delete(iters, shard)
				done[shard] = true
				continue
			}
			iters[shard] = next
		}
		if got == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(p.cfg.Interval):
			}
		}
	}
	return nil
}

func (p *Poller) discover(ctx context.Context, iters map[string]*string, done map[string]bool) error {
	var start *string
	for {
		out, err := p.cfg.Streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(p.cfg.StreamARN), ExclusiveStartShardId: start})
		if err != nil {
			return fmt.Errorf("describe stream: %w", err)
		}
		for _, sh := range out.StreamDescription.Shards {
			id := aws.ToString(sh.ShardId)
			if _, open := iters[id]; open || done[id] {
				continue
			}
			it, err := p.cfg.Streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
				StreamArn: aws.String(p.cfg.StreamARN), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
			})
			if err != nil {
				return fmt.Errorf("shard iterator %s: %w", id, err)
			}
			iters[id] = it.ShardIterator
		}
		start = out.StreamDescription.LastEvaluatedShardId
		if start == nil {
			return nil
		}
	}
}

// backlog returns how many records wait in the lanes of a shard.
func (p *Poller) backlog(shard string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sh := p.shards[shard]; sh != nil {
		return sh.queued
	}
	return 0
}

// poll reads one page of a shard and queues its matching records in their
// lanes.
func (p *Poller) poll(ctx context.Context, shard string, it *string) (int, *string, error) {
	out, err := p.cfg.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(1000)})
	if err != nil {
		return 0, nil, err
	}
	for _, r := range out.Records {
		rec := ConvertRecord(r, p.cfg.StreamARN, p.cfg.Region)
		if p.cfg.Filter == nil || p.cfg.Filter(rec) {
			p.enqueue(ctx, shard, laneOf(rec, p.cfg.PartitionKey, p.cfg.Parallelization), rec)
		}
	}
	return len(out.Records), out.NextShardIterator, nil
}

// enqueue appends a record to its lane and starts the lane's goroutine
// unless it runs.
func (p *Poller) enqueue(ctx context.Context, shard string, i int, rec events.DynamoDBEventRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sh := p.shards[shard]
	if sh == nil {
		sh = &shardLanes{lanes: make([]lane, p.cfg.Parallelization)}
		p.shards[shard] = sh
	}
	l := &sh.lanes[i]
	l.queue = append(l.queue, rec)
	sh.queued++
	if !l.busy {
		l.busy = true
		p.wg.Go(func() { p.drain(ctx, sh, i) })
	}
}

// drain delivers a lane's records in order, one batch at a time, until the
// lane is empty or ctx is canceled.
func (p *Poller) drain(ctx context.Context, sh *shardLanes, i int) {
	for {
		p.mu.Lock()
		l := &sh.lanes[i]
		if len(l.queue) == 0 || ctx.Err() != nil {
			sh.queued -= len(l.queue)
			l.queue, l.busy = nil, false
			p.mu.Unlock()
			return
		}
		n := min(len(l.queue), p.cfg.BatchSize)
		batch := append([]events.DynamoDBEventRecord(nil), l.queue[:n]...)
		l.queue = l.queue[n:]
		sh.queued -= n
		p.mu.Unlock()
		p.deliver(ctx, batch)
	}
}

// laneOf returns the lane of a record: a hash of its partition key
// attribute, modulo the number of lanes. A record without the attribute
// goes to lane 0.
func laneOf(rec events.DynamoDBEventRecord, key string, lanes int) int {
	v, ok := rec.Change.Keys[key]
	if !ok {
		return 0
	}
	h := fnv.New32a()
	switch v.DataType() {
	case events.DataTypeString:
		_, _ = h.Write([]byte(v.String()))
	case events.DataTypeNumber:
		_, _ = h.Write([]byte(v.Number()))
	case events.DataTypeBinary:
		_, _ = h.Write(v.Binary())
	default:
		return 0
	}
	return int(h.Sum32() % uint32(lanes)) //nolint:gosec // lanes is positive
}

// deliver invokes the handler with one batch, retrying from the first
// failed record on, as Lambda does with ReportBatchItemFailures.
func (p *Poller) deliver(ctx context.Context, batch []events.DynamoDBEventRecord) {
	for attempt := 0; len(batch) > 0 && ctx.Err() == nil; attempt++ {
		resp, err := p.cfg.Handler(ctx, events.DynamoDBEvent{Records: batch})
		first := len(batch)
		if err != nil {
			first = 0 // the whole batch failed
		} else {
			for _, f := range resp.BatchItemFailures {
				for i, r := range batch {
					if r.Change.SequenceNumber == f.ItemIdentifier && i < first {
						first = i
					}
				}
			}
		}
		if first == len(batch) {
			return
		}
		if attempt >= p.cfg.MaxRetries {
			p.cfg.Logger.Error().Err(err).Int("records", len(batch)-first).Str("sequence_number", batch[first].Change.SequenceNumber).
				Msg("awslocal: records failed after their retries (the on-failure destination would get them)")
			return
		}
		batch = batch[first:]
	}
}

// ConvertRecord turns a DynamoDB Streams record into the record shape Lambda
// delivers to stream-invoked functions.
func ConvertRecord(r types.Record, streamARN, region string) events.DynamoDBEventRecord {
	out := events.DynamoDBEventRecord{
		AWSRegion:      region,
		EventID:        aws.ToString(r.EventID),
		EventName:      string(r.EventName),
		EventSource:    "aws:dynamodb",
		EventVersion:   aws.ToString(r.EventVersion),
		EventSourceArn: streamARN,
	}
	if r.Dynamodb != nil {
		d := r.Dynamodb
		out.Change = events.DynamoDBStreamRecord{
			Keys:           convertMap(d.Keys),
			NewImage:       convertMap(d.NewImage),
			OldImage:       convertMap(d.OldImage),
			SequenceNumber: aws.ToString(d.SequenceNumber),
			SizeBytes:      aws.ToInt64(d.SizeBytes),
			StreamViewType: string(d.StreamViewType),
		}
		if d.ApproximateCreationDateTime != nil {
			out.Change.ApproximateCreationDateTime = events.SecondsEpochTime{Time: *d.ApproximateCreationDateTime}
		}
	}
	return out
}

func convertMap(m map[string]types.AttributeValue) map[string]events.DynamoDBAttributeValue {
	if m == nil {
		return nil
	}
	out := make(map[string]events.DynamoDBAttributeValue, len(m))
	for k, v := range m {
		out[k] = convertValue(v)
	}
	return out
}

func convertValue(v types.AttributeValue) events.DynamoDBAttributeValue {
	switch t := v.(type) {
	case *types.AttributeValueMemberS:
		return events.NewStringAttribute(t.Value)
	case *types.AttributeValueMemberN:
		return events.NewNumberAttribute(t.Value)
	case *types.AttributeValueMemberB:
		return events.NewBinaryAttribute(t.Value)
	case *types.AttributeValueMemberBOOL:
		return events.NewBooleanAttribute(t.Value)
	case *types.AttributeValueMemberNULL:
		return events.NewNullAttribute()
	case *types.AttributeValueMemberSS:
		return events.NewStringSetAttribute(t.Value)
	case *types.AttributeValueMemberNS:
		return events.NewNumberSetAttribute(t.Value)
	case *types.AttributeValueMemberBS:
		return events.NewBinarySetAttribute(t.Value)
	case *types.AttributeValueMemberL:
		l := make([]events.DynamoDBAttributeValue, len(t.Value))
		for i, e := range t.Value {
			l[i] = convertValue(e)
		}
		return events.NewListAttribute(l)
	case *types.AttributeValueMemberM:
		return events.NewMapAttribute(convertMap(t.Value))
	default:
		return events.NewNullAttribute()
	}
}
