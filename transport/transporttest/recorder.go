// Package transporttest provides a recording [transport.Sender] for tests.
package transporttest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/transport"
)

// Recorder is a [transport.Sender] that keeps every message per connection.
// Connections are live until [Recorder.Gone] marks them gone, after which
// Send returns [transport.ErrGone]. It is safe for concurrent use.
type Recorder struct {
	mu      sync.Mutex
	msgs    map[string][][]byte
	gone    map[string]bool
	changed chan struct{}
}

var _ transport.Sender = (*Recorder)(nil)

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder {
	return &Recorder{msgs: map[string][][]byte{}, gone: map[string]bool{}, changed: make(chan struct{})}
}

// Send records data for connID, or returns ErrGone.
func (r *Recorder) Send(ctx context.Context, _ string, connID string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.gone[connID] {
		return fmt.Errorf("transporttest: send to %s: %w", connID, transport.ErrGone)
	}
	r.msgs[connID] = append(r.msgs[connID], append([]byte(nil), data...))
	close(r.changed)
	r.changed = make(chan struct{})
	return nil
}

// Gone marks a connection gone.
func (r *Recorder) Gone(connID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gone[connID] = true
}

// Raw returns the messages sent to connID so far.
func (r *Recorder) Raw(connID string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.msgs[connID]...)
}

// Messages returns the decoded messages sent to connID so far.
func (r *Recorder) Messages(t testing.TB, connID string) []streamer.Message {
	t.Helper()
	raw := r.Raw(connID)
	out := make([]streamer.Message, 0, len(raw))
	for _, b := range raw {
		var m streamer.Message
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("transporttest: message to %s is not JSON: %v: %s", connID, err, b)
		}
		if len(b) > streamer.MaxMessageSize {
			t.Fatalf("transporttest: message to %s is %d bytes, above the limit", connID, len(b))
		}
		out = append(out, m)
	}
	return out
}

// WaitFor polls until match returns true for the messages sent to connID
// so far, failing the test after timeout. It returns those messages.
func (r *Recorder) WaitFor(t testing.TB, connID string, timeout time.Duration, match func([]streamer.Message) bool) []streamer.Message {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ch := r.changed
		r.mu.Unlock()
		msgs := r.Messages(t, connID)
		if match(msgs) {
			return msgs
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("transporttest: condition not met on %s within %v; got %d messages", connID, timeout, len(msgs))
			return nil
		}
	}
}

// HasType returns a WaitFor matcher that is true once a message of type typ
// for requestID has arrived.
func HasType(typ, requestID string) func([]streamer.Message) bool {
	return func(ms []streamer.Message) bool {
		for _, m := range ms {
			if m.Type == typ && m.RequestID == requestID {
				return true
			}
		}
		return false
	}
}

// HasTerminal returns a WaitFor matcher that is true once a terminal event
// for requestID has arrived.
func HasTerminal(requestID string) func([]streamer.Message) bool {
	return func(ms []streamer.Message) bool {
		for _, m := range ms {
			if m.RequestID == requestID && m.Terminal() {
				return true
			}
		}
		return false
	}
}
