package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// Defaults of checkpoints and continuations (see [Config]).
const (
	// DefaultMaxCheckpoint is the largest checkpoint, in bytes of JSON.
	DefaultMaxCheckpoint = 64 << 10
	// DefaultMaxContinuations is how many times a request may be
	// continued.
	DefaultMaxContinuations = 100
)

// ErrCheckpointTooLarge is returned, wrapped, by [Checkpoint] for a state
// whose JSON is larger than Config.MaxCheckpoint.
var ErrCheckpointTooLarge = errors.New("streamer: checkpoint too large")

// ErrNoCheckpoints is returned by [Checkpoint] when the reporter it is
// given cannot save checkpoints: it is not the one the runtime passed to
// the handler (a middleware replaced it, or a test made its own).
var ErrNoCheckpoints = errors.New("streamer: this reporter cannot save checkpoints (pass the Reporter the handler received)")

// Checkpointer is implemented by the [Reporter] of an async run, which can
// save the run's resumable state. Use [Checkpoint] rather than calling it.
type Checkpointer interface {
	// Checkpoint saves state, encoded as JSON, as the request's
	// checkpoint.
	Checkpoint(ctx context.Context, state json.RawMessage) error
}

// Checkpoint saves state (any value encoding/json encodes) as the request's
// resumable state, so that a run stopped before it finished (at a Lambda's
// deadline, by a crash, a restart or a shutdown) is continued by the next
// run from there instead of from the start: the next run reads it with
// [CheckpointOf]. Save it after each unit of work whose redoing you want to
// avoid, and make the work up to the next checkpoint safe to do twice.
//
// The checkpoint is durable when Checkpoint returns nil, and its write is
// fenced: a run that lost its request (taken over after its lease passed)
// cannot overwrite the new run's state. When progress reported with rep is
// waiting to be sent (coalesced), it is stored and sent now, in the same
// write as the checkpoint; otherwise the checkpoint is one write of its
// own. The state's JSON is at most Config.MaxCheckpoint bytes (default 64
// KiB), or Checkpoint returns an error wrapping [ErrCheckpointTooLarge].
//
// In a sync run there is nothing to continue: Checkpoint does nothing and
// returns nil. It returns an error wrapping [ErrNoCheckpoints] when rep is
// not a runtime's reporter.
func Checkpoint(ctx context.Context, rep Reporter, state any) error {
	cp, ok := rep.(Checkpointer)
	if !ok {
		return ErrNoCheckpoints
	}
	data, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("streamer: checkpoint: %w", err)
	}
	return cp.Checkpoint(ctx, data)
}

// CheckpointOf decodes the checkpoint the request's previous runs saved
// last (see [Checkpoint]) into a T. ok is false when there is none: the
// first run, or no run saved one. It reads the request from ctx (the
// context a handler receives), so [Typed] handlers use it too:
//
//	func work(ctx context.Context, in In, rep streamer.Reporter) (Out, error) {
//		state, _, err := streamer.CheckpointOf[State](ctx) // zero State on the first run
//		...
//	}
func CheckpointOf[T any](ctx context.Context) (state T, ok bool, err error) {
	req, found := RequestFromContext(ctx)
	if !found || len(req.Checkpoint) == 0 {
		return state, false, nil
	}
	if err := json.Unmarshal(req.Checkpoint, &state); err != nil {
		return state, false, fmt.Errorf("streamer: decoding the checkpoint of request %s: %w", req.ID, err)
	}
	return state, true, nil
}

// Checkpoint implements [Checkpointer] for an async run: it stores the
// pending progress update, if any, with the checkpoint in one write, or
// the checkpoint alone.
func (r *eventReporter) Checkpoint(ctx context.Context, state json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if limit := r.st.app.cfg.MaxCheckpoint; len(state) > limit {
		return fmt.Errorf("%w: %d bytes of JSON; the limit is %d (Config.MaxCheckpoint)", ErrCheckpointTooLarge, len(state), limit)
	}
	return r.co.FlushWith(func(u Update, pending bool) error {
		if pending {
			return r.st.emitProgressWith(u, state)
		}
		return r.st.saveCheckpoint(state)
	})
}

// Checkpoint implements [Checkpointer] for a sync run: there is nothing to
// continue, so it saves nothing.
func (r *liveReporter) Checkpoint(context.Context, json.RawMessage) error { return nil }
