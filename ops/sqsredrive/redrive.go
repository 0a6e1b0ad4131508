// Package sqsredrive redrives the processor's failure queue straight from
// Amazon SQS: it receives the queue's messages in batches, hands each body
// to [ops.Ops.Redrive], and deletes a message only once its outcome says
// it is done with. It is the AWS-facing half of `streamer ops redrive
// --queue-url`; the ops package itself imports no AWS SDK.
//
// [Queue] speaks SQS's Query protocol (form-encoded POSTs signed with
// Signature Version 4, XML answers), which SQS serves alongside the JSON
// protocol of the current AWS SDKs. The module's AWS SDK core cannot run
// the last SDK SQS client that spoke it (service/sqs v1.26.0), and the
// local SQS-compatible server the tests use (goaws) speaks only that
// protocol, so the few calls a redrive makes are written here.
//
// # What is deleted
//
// A message is deleted when [ops.Ops.Redrive] handled it with any outcome
// but [ops.OutcomeLive] (redriven, retried, finished, gone, a stream
// batch): nothing is left to do for it. A live request's message, with no
// dispatcher to run its job, stays: it comes back after the queue's
// visibility timeout, to redrive later. A body that is not a failure
// record ([ops.ErrNotFailureRecord]) is reported and stays, unless
// [Config.DropMalformed]. A message whose redrive failed (the store, the
// dispatch) stays.
package sqsredrive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/streamer-go/streamer/ops"
)

// Defaults of [Config].
const (
	// DefaultMax is how many messages one run handles at most.
	DefaultMax = 1000
	// DefaultWait is how long one receive waits for a message; an empty
	// answer ends the run.
	DefaultWait = time.Second
)

// Messages is the part of an SQS queue a redrive uses; [*Queue] is one.
type Messages interface {
	// Receive receives up to max (1 to 10) messages, waiting up to wait.
	Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error)
	// Delete deletes a received message.
	Delete(ctx context.Context, receiptHandle string) error
}

var _ Messages = (*Queue)(nil)

// Config configures [Run].
type Config struct {
	// Queue is the failure queue. Required.
	Queue Messages
	// Ops is the store's inspector the bodies are redriven with. Required.
	Ops *ops.Ops
	// Dispatch runs a live request's job again (on AWS: invokes the
	// processor function); nil leaves live requests to the reaper and
	// their messages on the queue.
	Dispatch ops.Dispatcher
	// RetryFailed retries the requests that failed ([ops.Ops.Retry]).
	RetryFailed bool
	// DropMalformed deletes the messages whose body is not a failure
	// record; by default they are reported and stay on the queue.
	DropMalformed bool
	// Max is how many messages to handle at most; zero means
	// [DefaultMax]. Negative is an error.
	Max int
	// Wait is how long each receive waits for a message (whole seconds,
	// at most 20 s); zero means [DefaultWait].
	Wait time.Duration
	// OnMessage, when set, is called with each message's result as soon
	// as it is handled (to print progress), in order, from Run's
	// goroutine.
	OnMessage func(Result)
}

// Result is what a run did with one message.
type Result struct {
	// MessageID is SQS's id of the message.
	MessageID string
	// Redrive is what [ops.Ops.Redrive] did; valid when Err is nil.
	Redrive ops.RedriveResult
	// Err is the redrive's error: errors.Is(Err, ops.ErrNotFailureRecord)
	// for a malformed body; or the deletion's error (the message stays).
	Err error
	// Deleted says the message was deleted from the queue.
	Deleted bool
}

// Summary is what a run did.
type Summary struct {
	// Results has one entry per message handled, in the order received.
	Results []Result
	// Deleted and Left count the messages deleted and left on the queue.
	Deleted, Left int
}

// Run redrives the queue's messages until a receive answers none, Max
// messages were handled, or a receive only returns messages this run has
// handled already (their visibility timeout ran out during the run). It
// receives up to 10 messages at a time and handles them one by one in
// the calling goroutine; it starts none. A message's redrive or deletion
// error is recorded in its Result and the run goes on; a receive error,
// or ctx ending, stops it: the summary so far is returned with the error.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	var sum Summary
	switch {
	case cfg.Queue == nil:
		return sum, errors.New("sqsredrive: Config.Queue is required")
	case cfg.Ops == nil:
		return sum, errors.New("sqsredrive: Config.Ops is required")
	case cfg.Max < 0:
		return sum, fmt.Errorf("sqsredrive: Max %d: must be positive", cfg.Max)
	case cfg.Wait < 0 || cfg.Wait > 20*time.Second:
		return sum, fmt.Errorf("sqsredrive: Wait %v: must be 0 to 20s", cfg.Wait)
	}
	if cfg.Max == 0 {
		cfg.Max = DefaultMax
	}
	if cfg.Wait == 0 {
		cfg.Wait = DefaultWait
	}
	seen := make(map[string]bool)
	for len(sum.Results) < cfg.Max {
		if err := ctx.Err(); err != nil {
			return sum, err
		}
		msgs, err := cfg.Queue.Receive(ctx, min(10, cfg.Max-len(sum.Results)), cfg.Wait)
		if err != nil {
			return sum, err
		}
		if len(msgs) == 0 {
			return sum, nil
		}
		fresh := 0
		for _, m := range msgs {
			if seen[m.ID] || len(sum.Results) >= cfg.Max {
				continue // handled already in this run, or past Max: it comes back later
			}
			seen[m.ID] = true
			fresh++
			res := handle(ctx, cfg, m)
			if res.Deleted {
				sum.Deleted++
			} else {
				sum.Left++
			}
			sum.Results = append(sum.Results, res)
			if cfg.OnMessage != nil {
				cfg.OnMessage(res)
			}
		}
		if fresh == 0 {
			return sum, nil // the queue came round to what this run left
		}
	}
	return sum, nil
}

// handle redrives one message and deletes it when it is done with.
func handle(ctx context.Context, cfg Config, m Message) Result {
	res := Result{MessageID: m.ID}
	rr, err := cfg.Ops.Redrive(ctx, []byte(m.Body), cfg.Dispatch, cfg.RetryFailed)
	res.Redrive, res.Err = rr, err
	done := err == nil && rr.Outcome != ops.OutcomeLive
	if errors.Is(err, ops.ErrNotFailureRecord) && cfg.DropMalformed {
		done = true
	}
	if !done {
		return res
	}
	if derr := cfg.Queue.Delete(ctx, m.ReceiptHandle); derr != nil {
		res.Err = errors.Join(res.Err, fmt.Errorf("sqsredrive: deleting message %s: %w", m.ID, derr))
		return res
	}
	res.Deleted = true
	return res
}
