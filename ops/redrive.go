package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/streamer-go/streamer/storage"
)

// Failure is a message of the processor's failure queue (on AWS, the SQS
// queue ProcessorDeadLetterQueue of serverless.yml), decoded. The queue
// gets two kinds of message, both Lambda's JSON invocation records:
//
//   - a job that failed on every attempt (the processor's async-invoke
//     on-failure destination): requestPayload is the job,
//     {"streamer_job":{"key":"<storage.Key.String()>"}}, so it names its
//     request;
//   - a DynamoDB stream batch the processor failed on every retry (the
//     event source mapping's on-failure destination): it carries
//     DDBStreamBatchInfo (shard and sequence numbers), not the records, so
//     it names no request.
type Failure struct {
	// Key is the job's request; the zero Key for a stream batch.
	Key storage.Key
	// Job is the job's payload exactly as the function got it (nil for a
	// stream batch): invoking the processor with it again runs the job
	// again.
	Job json.RawMessage
	// Condition is Lambda's reason: RetriesExhausted, EventAgeExceeded,
	// RetryAttemptsExhausted, ...
	Condition string
	// Attempts is the record's approximateInvokeCount.
	Attempts int
	// Error is the last attempt's errorMessage, when Lambda recorded one.
	Error string
	// StreamBatch is set for a stream batch's record.
	StreamBatch bool
}

// ErrNotFailureRecord means a message body is not a failure record the
// processor's failure queue holds.
var ErrNotFailureRecord = errors.New("ops: not a failure-queue record")

// ParseFailure decodes one failure-queue message body (see [Failure]).
func ParseFailure(body []byte) (Failure, error) {
	var rec struct {
		RequestContext struct {
			Condition              string `json:"condition"`
			ApproximateInvokeCount int    `json:"approximateInvokeCount"`
		} `json:"requestContext"`
		RequestPayload  json.RawMessage `json:"requestPayload"`
		ResponsePayload json.RawMessage `json:"responsePayload"`
		StreamBatch     json.RawMessage `json:"DDBStreamBatchInfo"`
	}
	if err := json.Unmarshal(body, &rec); err != nil {
		return Failure{}, fmt.Errorf("%w: %w", ErrNotFailureRecord, err)
	}
	f := Failure{Condition: rec.RequestContext.Condition, Attempts: rec.RequestContext.ApproximateInvokeCount}
	var resp struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if json.Unmarshal(rec.ResponsePayload, &resp) == nil {
		f.Error = resp.ErrorMessage
	}
	if len(rec.StreamBatch) > 0 && string(rec.StreamBatch) != "null" {
		f.StreamBatch = true
		return f, nil
	}
	var job struct {
		Job *struct {
			Key string `json:"key"`
		} `json:"streamer_job"`
	}
	if len(rec.RequestPayload) == 0 || json.Unmarshal(rec.RequestPayload, &job) != nil || job.Job == nil {
		return Failure{}, fmt.Errorf("%w: its requestPayload is not a processor job", ErrNotFailureRecord)
	}
	k, err := storage.ParseKey(job.Job.Key)
	if err != nil {
		return Failure{}, fmt.Errorf("%w: job key %q: %w", ErrNotFailureRecord, job.Job.Key, err)
	}
	f.Key, f.Job = k, rec.RequestPayload
	return f, nil
}

// Dispatcher runs a failed job again: on AWS it invokes the processor
// function asynchronously with the job (f.Job), as the failed invocation
// was.
type Dispatcher func(ctx context.Context, f Failure) error

// Outcome says what [Ops.Redrive] did with a failure record.
type Outcome string

// Outcomes of [Ops.Redrive]. Every one but OutcomeLive means the message
// may be deleted from the queue.
const (
	// OutcomeRedriven: the request is live and its job was dispatched
	// again.
	OutcomeRedriven Outcome = "redriven"
	// OutcomeLive: the request is live but no dispatcher was given; the
	// reaper takes it over once it is due (keep the message to redrive
	// it later).
	OutcomeLive Outcome = "live"
	// OutcomeRetried: the request had failed and a retry (a new request,
	// see [Ops.Retry]) was submitted.
	OutcomeRetried Outcome = "retried"
	// OutcomeFinished: the request has finished (succeeded, canceled, or
	// failed without a retry asked for): nothing to run.
	OutcomeFinished Outcome = "finished"
	// OutcomeGone: the request no longer exists (expired).
	OutcomeGone Outcome = "gone"
	// OutcomeStreamBatch: a stream batch's record, which names no request:
	// the reaper takes over the batch's requests that are still live when
	// they fall due, so there is nothing to redrive.
	OutcomeStreamBatch Outcome = "stream-batch"
)

// RedriveResult is what [Ops.Redrive] did with one record.
type RedriveResult struct {
	Failure Failure
	Outcome Outcome
	// Status is the request's status when redriven (empty when gone).
	Status storage.Status
	// RetryID is the retry's ID for OutcomeRetried.
	RetryID string
}

// Redrive handles one failure-queue message body: a job whose request is
// still live is dispatched again with dispatch (nil: left to the reaper,
// OutcomeLive); one whose request failed is retried ([Ops.Retry]) when
// retryFailed is set; anything else is reported. Redriving is safe to
// repeat: a dispatched job runs the request only if it is still
// claimable, and a retry's ID is its idempotency key.
func (o *Ops) Redrive(ctx context.Context, body []byte, dispatch Dispatcher, retryFailed bool) (RedriveResult, error) {
	f, err := ParseFailure(body)
	if err != nil {
		return RedriveResult{}, err
	}
	res := RedriveResult{Failure: f}
	if f.StreamBatch {
		res.Outcome = OutcomeStreamBatch
		return res, nil
	}
	r, err := o.store.GetRequest(ctx, f.Key)
	if errors.Is(err, storage.ErrNotFound) {
		res.Outcome = OutcomeGone
		return res, nil
	}
	if err != nil {
		return res, err
	}
	res.Status = r.Status
	switch {
	case !r.Status.Final() && dispatch == nil:
		res.Outcome = OutcomeLive
	case !r.Status.Final():
		if err := dispatch(ctx, f); err != nil {
			return res, fmt.Errorf("ops: redrive %s: %w", f.Key.ID, err)
		}
		res.Outcome = OutcomeRedriven
	case r.Status == storage.StatusFailed && retryFailed:
		sub, err := o.Retry(ctx, f.Key)
		if err != nil {
			return res, err
		}
		res.Outcome, res.RetryID = OutcomeRetried, sub.ID
	default:
		res.Outcome = OutcomeFinished
	}
	return res, nil
}
