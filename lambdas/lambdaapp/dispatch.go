package lambdaapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
)

// InvokeAPI is the part of the Lambda client the processor uses to hand
// each request to an invocation of its own.
type InvokeAPI interface {
	Invoke(ctx context.Context, in *lambda.InvokeInput, optFns ...func(*lambda.Options)) (*lambda.InvokeOutput, error)
}

var _ InvokeAPI = (*lambda.Client)(nil)

// DispatchConcurrency bounds how many Invoke calls one stream batch makes
// at once.
const DispatchConcurrency = 10

// Job is the payload of a processor invocation that runs one request:
// {"streamer_job":{"key":"<tenant>|<subject>|<id>"}}, the key as
// storage.Key.String encodes it.
type Job struct {
	Job *JobKey `json:"streamer_job"`
}

// JobKey names the request a [Job] runs.
type JobKey struct {
	Key string `json:"key"`
}

// NewJob returns the job of the request k.
func NewJob(k storage.Key) Job { return Job{Job: &JobKey{Key: k.String()}} }

// Handle is the processor function's entry point. It takes the two kinds of
// event the function receives: a DynamoDB stream batch, which it dispatches
// ([Handlers.Dispatch]), and a [Job], which it runs ([Handlers.Run]).
func (h *Handlers) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	ctx = h.invocation(ctx)
	var probe struct {
		Job     json.RawMessage `json:"streamer_job"`
		Records json.RawMessage `json:"Records"`
	}
	if err := json.Unmarshal(payload, &probe); err != nil {
		return nil, fmt.Errorf("lambdaapp: processor: the event is not a JSON object: %w", err)
	}
	switch {
	case probe.Job != nil:
		var job Job
		if err := json.Unmarshal(payload, &job); err != nil {
			return nil, fmt.Errorf("lambdaapp: processor: malformed job: %w", err)
		}
		return nil, h.Run(ctx, job)
	case probe.Records != nil:
		var ev events.DynamoDBEvent
		if err := json.Unmarshal(payload, &ev); err != nil {
			return nil, fmt.Errorf("lambdaapp: processor: malformed stream batch: %w", err)
		}
		return h.Dispatch(ctx, ev)
	}
	return nil, errors.New(`lambdaapp: processor: the event is neither a DynamoDB stream batch ("Records") nor a job ("streamer_job")`)
}

// Dispatch is the processor's stream handler: it hands each newly queued
// request of the batch to an invocation of its own, an asynchronous Invoke
// (InvocationType Event) of this function with the request's [Job], and
// returns within milliseconds, so the stream never waits for a job. Only
// the records it could not dispatch are reported as failed, for the stream
// to deliver again. Lambda runs, retries and queues the jobs: a job beyond
// the function's concurrency waits in Lambda's queue, not in the stream.
// Duplicate dispatches are harmless: a request runs once, under its claim.
func (h *Handlers) Dispatch(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	ctx = h.invocation(ctx)
	if h.invoker == nil || h.cfg.FunctionName == "" {
		return events.DynamoDBEventResponse{}, fmt.Errorf("lambdaapp: dispatch: the processor has no function to invoke (%s)", EnvFunctionName)
	}
	return h.eachQueued(ctx, ev, DispatchConcurrency, h.dispatch)
}

// dispatch invokes this function with the job of k.
func (h *Handlers) dispatch(ctx context.Context, k storage.Key) error {
	payload, err := json.Marshal(NewJob(k))
	if err != nil {
		return fmt.Errorf("lambdaapp: encode job %s: %w", k.ID, err)
	}
	_, err = h.invoker.Invoke(ctx, &lambda.InvokeInput{
		FunctionName:   aws.String(h.cfg.FunctionName),
		InvocationType: types.InvocationTypeEvent,
		Payload:        payload,
	})
	if err != nil {
		return fmt.Errorf("lambdaapp: dispatch %s to %s: %w", k.ID, h.cfg.FunctionName, err)
	}
	return nil
}

// Process runs the request of each newly queued record of the batch in
// this invocation, as [Handlers.Run] runs one, and reports the records
// whose processing failed. The processor Lambda dispatches instead
// ([Handlers.Dispatch]); Process serves tests and runtimes that run a batch
// where it arrives.
//
// A request whose retry delay has not passed is waited for when it falls
// due before the invocation's deadline less [streamer.StopMargin], and
// reported as failed otherwise, so the stream delivers it again.
func (h *Handlers) Process(ctx context.Context, ev events.DynamoDBEvent) (events.DynamoDBEventResponse, error) {
	ctx = h.invocation(ctx)
	return h.eachQueued(ctx, ev, ProcessConcurrency, func(ctx context.Context, k storage.Key) error {
		return h.process(ctx, k, false)
	})
}

// eachQueued calls do for the key of every newly queued record of ev, up to
// limit at once, and reports the records that failed (and unreadable ones)
// as BatchItemFailures; the list is empty, never null, when all succeeded.
func (h *Handlers) eachQueued(ctx context.Context, ev events.DynamoDBEvent, limit int, do func(context.Context, storage.Key) error) (events.DynamoDBEventResponse, error) {
	var (
		mu       sync.Mutex
		failures = []events.DynamoDBBatchItemFailure{}
		wg       sync.WaitGroup
		sem      = make(chan struct{}, limit)
	)
	fail := func(seq string) {
		mu.Lock()
		failures = append(failures, events.DynamoDBBatchItemFailure{ItemIdentifier: seq})
		mu.Unlock()
	}
	for _, rec := range ev.Records {
		seq := rec.Change.SequenceNumber
		k, ok, err := QueuedKey(rec)
		if err != nil {
			h.log.Error().Err(err).Str("sequence_number", seq).Msg("unreadable stream record")
			fail(seq)
			continue
		}
		if !ok {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := do(ctx, k); err != nil {
				h.log.Error().Err(err).Str("request_id", k.ID).Str("sequence_number", seq).Msg("processing the record failed")
				fail(seq)
			}
		}()
	}
	wg.Wait()
	return events.DynamoDBEventResponse{BatchItemFailures: failures}, nil
}

// Run is the processor's job handler: it runs the job's request in this
// invocation. A request that is not due yet is waited for when it falls due
// before the invocation's deadline less [streamer.StopMargin]; one due
// later is handed to a new invocation of this function just before the
// deadline. A request that another processor holds is waited for once, up
// to its lease: when that processor died the request is taken over then;
// when it lives (it renewed its lease) Run returns, leaving it the request.
// An error makes Lambda retry the job (the function's async retry
// settings), then send it to the on-failure destination.
func (h *Handlers) Run(ctx context.Context, job Job) error {
	ctx = h.invocation(ctx)
	if job.Job == nil {
		return errors.New("lambdaapp: run: the job names no request")
	}
	k, err := storage.ParseKey(job.Job.Key)
	if err != nil {
		return fmt.Errorf("lambdaapp: run: job key %q: %w", job.Job.Key, err)
	}
	return h.process(ctx, k, true)
}

// process runs one request, waiting for it while it is not due (see Run).
// With redispatch, a request due after the deadline is handed to a new
// invocation instead of failing.
func (h *Handlers) process(ctx context.Context, k storage.Key, redispatch bool) error {
	waitedForHolder := false
	for {
		err := h.app.Process(ctx, k)
		var nd *streamer.NotDueError
		if !errors.As(err, &nd) {
			if err != nil {
				return fmt.Errorf("lambdaapp: %w", err)
			}
			return nil
		}
		if nd.Held {
			if waitedForHolder {
				return nil // its holder is alive: it keeps renewing the lease
			}
			waitedForHolder = true
		}
		at := nd.At
		dl, hasDeadline := ctx.Deadline()
		if hasDeadline && at.After(dl.Add(-streamer.StopMargin)) {
			if !redispatch || nd.Held {
				return fmt.Errorf("lambdaapp: request %s is not due before the deadline: %w", k.ID, err)
			}
			// Wait out this invocation, then hand the request on.
			at = dl.Add(-streamer.StopMargin)
		}
		t := time.NewTimer(time.Until(at))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("lambdaapp: waiting for request %s: %w", k.ID, ctx.Err())
		case <-t.C:
		}
		if at != nd.At {
			return h.dispatch(context.WithoutCancel(ctx), k)
		}
	}
}
