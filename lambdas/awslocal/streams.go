// Package awslocal runs Streamer's AWS path on one machine: DynamoDB Local
// for storage and, in place of the Lambda event source mapping, a poller
// that reads the table's DynamoDB stream and invokes the processor with
// Lambda-shaped batches.
package awslocal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/rs/zerolog"
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
	// Parallelization is how many batches run at once, as the event
	// source mapping's ParallelizationFactor; default 10. A batch whose
	// handler runs a long request does not hold up the requests behind it.
	Parallelization int
	Logger          zerolog.Logger
}

// Poller reads a DynamoDB stream and invokes a handler with Lambda-shaped
// batches, as an event source mapping with ReportBatchItemFailures does:
// failed records are retried from the first failure on, up to MaxRetries.
// It starts each shard at TRIM_HORIZON, so requests queued while it was
// down are not missed (processing them again is harmless: the processor's
// claim runs each request once).
type Poller struct {
	cfg      PollerConfig
	inflight chan struct{}
	wg       sync.WaitGroup
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
	return &Poller{cfg: cfg, inflight: make(chan struct{}, cfg.Parallelization)}, nil
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
			n, next, err := p.poll(ctx, it)
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

// poll reads one page of a shard and delivers its matching records.
func (p *Poller) poll(ctx context.Context, it *string) (int, *string, error) {
	out, err := p.cfg.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: it, Limit: aws.Int32(1000)})
	if err != nil {
		return 0, nil, err
	}
	var batch []events.DynamoDBEventRecord
	for _, r := range out.Records {
		rec := ConvertRecord(r, p.cfg.StreamARN, p.cfg.Region)
		if p.cfg.Filter == nil || p.cfg.Filter(rec) {
			batch = append(batch, rec)
		}
	}
	for len(batch) > 0 {
		n := min(len(batch), p.cfg.BatchSize)
		select {
		case p.inflight <- struct{}{}:
		case <-ctx.Done():
			return len(out.Records), out.NextShardIterator, nil
		}
		b := batch[:n]
		p.wg.Go(func() {
			defer func() { <-p.inflight }()
			p.deliver(ctx, b)
		})
		batch = batch[n:]
	}
	return len(out.Records), out.NextShardIterator, nil
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
