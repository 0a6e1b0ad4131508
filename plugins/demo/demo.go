package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/streamer-go/streamer"
)

// Action names of the plugin.
const (
	ActionEcho  = "echo"
	ActionDelay = "delay"
	ActionFail  = "fail"
	ActionBlob  = "blob"
	// ActionCheckpointed processes items one by one, checkpointing after
	// each, so a run stopped midway is continued, not started over.
	ActionCheckpointed = "checkpointed"
)

// Limits of the payloads.
const (
	// MaxDelayMs is the largest delay ms: 10 minutes.
	MaxDelayMs = 600000
	// MaxDelaySteps is the largest number of delay steps.
	MaxDelaySteps = 1000
	// MaxBlobBytes is the largest blob: 10 MiB.
	MaxBlobBytes = 10 << 20
	// MaxSucceedOn is the largest succeed_on of fail.
	MaxSucceedOn = 5
	// MaxItems is the most items of checkpointed.
	MaxItems = 100000
	// MaxItemMs is the longest item_ms of checkpointed: a minute.
	MaxItemMs = 60000
)

// delayTimeout bounds one run of delay: the longest delay plus a margin.
const delayTimeout = 11 * time.Minute

// New returns the demo plugin, named "demo", with the actions echo, delay,
// fail and blob described in the package documentation.
func New() streamer.Plugin {
	return streamer.Plugin{
		Name: "demo",
		Actions: []streamer.Action{
			{
				Name:    ActionEcho,
				Handler: streamer.HandlerFunc(echo),
				Options: streamer.ActionOptions{Mode: streamer.ModeSync},
			},
			{
				Name:    ActionDelay,
				Handler: streamer.Typed(delay),
				Options: streamer.ActionOptions{Mode: streamer.ModeAsync, Timeout: delayTimeout},
			},
			{
				Name:    ActionFail,
				Handler: streamer.Typed(fail),
				Options: streamer.ActionOptions{
					Mode: streamer.ModeAsync,
					// Only a payload with succeed_on fails retryably.
					Retry: streamer.RetryPolicy{MaxAttempts: MaxSucceedOn, InitialBackoff: 200 * time.Millisecond, MaxBackoff: time.Second},
				},
			},
			{
				Name:    ActionBlob,
				Handler: streamer.Typed(blob),
				Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			},
			{
				Name:    ActionCheckpointed,
				Handler: streamer.Typed(checkpointed),
				Options: streamer.ActionOptions{Mode: streamer.ModeAsync},
			},
		},
	}
}

// echo answers with the payload as given, or null when there is none.
func echo(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
	if len(req.Payload) == 0 {
		return json.RawMessage("null"), nil
	}
	return req.Payload, nil
}

// DelayPayload is the payload of delay. Both fields are required; the
// pointers tell an absent ms from a zero one.
type DelayPayload struct {
	// Ms is the total duration in milliseconds, 0 to [MaxDelayMs].
	Ms *int `json:"ms" validate:"required,gte=0,lte=600000"`
	// Steps is the number of progress events, 1 to [MaxDelaySteps].
	Steps *int `json:"steps" validate:"required,gte=1,lte=1000"`
}

// DelayResult is the result of delay.
type DelayResult struct {
	// Steps is the number of progress events reported.
	Steps int `json:"steps"`
	// Ms is the total duration in milliseconds.
	Ms int `json:"ms"`
}

// delay reports in.Steps progress events spread evenly over in.Ms. It
// returns the context's error as soon as ctx is done.
func delay(ctx context.Context, in DelayPayload, rep streamer.Reporter) (DelayResult, error) {
	ms, steps := *in.Ms, *in.Steps
	total := time.Duration(ms) * time.Millisecond
	start := time.Now()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for i := 1; i <= steps; i++ {
		due := start.Add(total * time.Duration(i) / time.Duration(steps))
		if wait := time.Until(due); wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait) // since Go 1.23 no stale tick survives a Reset
			}
			select {
			case <-ctx.Done():
				return DelayResult{}, fmt.Errorf("demo: delay step %d/%d: %w", i, steps, ctx.Err())
			case <-timer.C:
			}
		} else if err := ctx.Err(); err != nil {
			return DelayResult{}, fmt.Errorf("demo: delay step %d/%d: %w", i, steps, err)
		}
		// Report fails only when ctx is done, which the next step sees.
		_ = rep.Report(ctx, streamer.Update{
			Percentage: float64(100*i) / float64(steps),
			Message:    fmt.Sprintf("step %d/%d", i, steps),
		})
	}
	return DelayResult{Steps: steps, Ms: ms}, nil
}

// FailPayload is the payload of fail.
type FailPayload struct {
	// Code is the error code to fail with, upper snake case (see
	// [streamer.ValidCode]); required.
	Code string `json:"code" validate:"required"`
	// Message is the error message; when empty a generic one is used.
	Message string `json:"message" validate:"max=1024"`
	// SucceedOn, when set (2 to [MaxSucceedOn]), makes the failure
	// retryable until that attempt, which succeeds with {"attempt": N}.
	SucceedOn int `json:"succeed_on" validate:"omitempty,gte=2,lte=5"`
}

// Validate checks that Code is a valid protocol code.
func (p *FailPayload) Validate() error {
	if streamer.ValidCode(p.Code) {
		return nil
	}
	return streamer.NewError(streamer.CodeValidation, "payload failed validation").WithDetails([]streamer.FieldError{{
		Field:   "code",
		Rule:    "upper_snake",
		Message: "code must be upper snake case (such as MY_ERROR), at most 64 characters",
	}})
}

// defaultFailMessage is fail's message when the payload has none.
const defaultFailMessage = "the demo action failed as asked"

// fail reports 50% and then fails with the requested code and message.
func fail(ctx context.Context, in FailPayload, rep streamer.Reporter) (json.RawMessage, error) {
	_ = rep.Report(ctx, streamer.Update{Percentage: 50, Message: "about to fail"})
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("demo: fail: %w", err)
	}
	msg := in.Message
	if msg == "" {
		msg = defaultFailMessage
	}
	if in.SucceedOn > 0 {
		req, _ := streamer.RequestFromContext(ctx)
		if req != nil && req.Attempt >= in.SucceedOn {
			return json.RawMessage(fmt.Sprintf(`{"attempt":%d}`, req.Attempt)), nil
		}
		return nil, streamer.Retryable(streamer.NewError(in.Code, msg))
	}
	return nil, streamer.NewError(in.Code, msg)
}

// BlobPayload is the payload of blob.
type BlobPayload struct {
	// Bytes is the length of the result string, 1 to [MaxBlobBytes].
	Bytes int `json:"bytes" validate:"required,gte=1,lte=10485760"`
}

// blob answers with a JSON string of in.Bytes times "x".
func blob(ctx context.Context, in BlobPayload, _ streamer.Reporter) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("demo: blob: %w", err)
	}
	return xString(in.Bytes), nil
}

// xString returns the JSON text of a string of n "x": n+2 bytes.
func xString(n int) json.RawMessage {
	b := make([]byte, n+2)
	b[0], b[n+1] = '"', '"'
	body := b[1 : n+1]
	if n > 0 {
		body[0] = 'x'
		for filled := 1; filled < n; filled *= 2 {
			copy(body[filled:], body[:filled])
		}
	}
	return b
}

// CheckpointedPayload is the payload of checkpointed.
type CheckpointedPayload struct {
	// Items is how many items to process, 1 to [MaxItems]; required.
	Items int `json:"items" validate:"required,gte=1,lte=100000"`
	// ItemMs is how long each item takes, 0 to [MaxItemMs] milliseconds.
	ItemMs int `json:"item_ms" validate:"gte=0,lte=60000"`
}

// CheckpointedState is the checkpoint of checkpointed.
type CheckpointedState struct {
	// Done is how many items are done.
	Done int `json:"done"`
	// Runs is how many runs did some of the work, this one included.
	Runs int `json:"runs"`
}

// CheckpointedResult is the result of checkpointed.
type CheckpointedResult struct {
	// Items is how many items were processed.
	Items int `json:"items"`
	// Runs is how many runs it took: more than one when a run was stopped
	// (a Lambda deadline, a restart) and the next continued from the
	// checkpoint.
	Runs int `json:"runs"`
}

// checkpointed processes in.Items items, one every in.ItemMs, reporting
// "item i/N" and checkpointing after each; a run continues after the last
// item its predecessors checkpointed.
func checkpointed(ctx context.Context, in CheckpointedPayload, rep streamer.Reporter) (CheckpointedResult, error) {
	state, _, err := streamer.CheckpointOf[CheckpointedState](ctx)
	if err != nil {
		return CheckpointedResult{}, err
	}
	state.Runs++
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for i := state.Done + 1; i <= in.Items; i++ {
		if in.ItemMs > 0 {
			d := time.Duration(in.ItemMs) * time.Millisecond
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case <-ctx.Done():
				return CheckpointedResult{}, fmt.Errorf("demo: checkpointed item %d/%d: %w", i, in.Items, ctx.Err())
			case <-timer.C:
			}
		} else if err := ctx.Err(); err != nil {
			return CheckpointedResult{}, fmt.Errorf("demo: checkpointed item %d/%d: %w", i, in.Items, err)
		}
		_ = rep.Report(ctx, streamer.Update{
			Percentage: float64(100*i) / float64(in.Items),
			Message:    fmt.Sprintf("item %d/%d", i, in.Items),
		})
		state.Done = i
		// Saved with the progress above when it is still waiting to be
		// sent: one write per item at most.
		if err := streamer.Checkpoint(ctx, rep, state); err != nil {
			return CheckpointedResult{}, fmt.Errorf("demo: checkpointed item %d/%d: %w", i, in.Items, err)
		}
	}
	return CheckpointedResult{Items: in.Items, Runs: state.Runs}, nil
}
