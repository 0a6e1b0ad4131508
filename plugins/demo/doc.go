// Package demo is a plugin of small actions that exercise the framework from
// a client: they are what the dev server's demo page and the acceptance tests
// call.
//
// The actions, built by [New]:
//
//   - echo (sync): answers with its payload as given; no payload answers null.
//   - delay (async): payload {"ms": 0..600000, "steps": 1..1000}, both
//     required. Reports steps progress events spread evenly over ms (step i
//     at i·ms/steps after the start, percentage 100·i/steps, message
//     "step i/steps"), then completes with {"steps", "ms"}.
//   - fail (async): payload {"code": "UPPER_SNAKE", "message": "...",
//     "succeed_on": 2..5}. Reports 50% and then fails with that code and
//     message, not retried. With succeed_on the failure is retryable until
//     that attempt (200 ms, then 400 ms... between them), which completes
//     with {"attempt": N}: each retried failure sends a retrying event.
//   - blob (async): payload {"bytes": 1..10485760}. Completes with a JSON
//     string of exactly that many "x", large enough to be sent in chunks.
//   - checkpointed (async): payload {"items": 1..100000, "item_ms":
//     0..60000}. Processes the items one by one, item_ms each, reporting
//     "item i/N" and saving a checkpoint after each (streamer.Checkpoint),
//     so a run stopped midway (a Lambda deadline, a restart) is continued
//     by the next from the last item done. Completes with {"items": N,
//     "runs": R}, R being the number of runs that did some of the work.
//
// Invalid payloads are refused with VALIDATION_ERROR and a detail per field
// before anything is stored or run.
package demo
