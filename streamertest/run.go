package streamertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/progress"
)

// run sends the request frame and, when the router admitted the request as
// async, hands it to the processor until it ends.
func (k *kit) run(ctx context.Context) (*Outcome, error) {
	err := k.app.HandleMessage(ctx, k.conn, k.frame, false)
	k.admit()
	if err != nil {
		return nil, err
	}
	if k.isAsync() {
		if err := k.process(ctx); err != nil {
			return nil, err
		}
	}
	out, err := k.outcome()
	if err != nil {
		return nil, err
	}
	if k.after > 0 && out.Mode != streamer.ModeAsync {
		return nil, fmt.Errorf("streamertest: WithCancelAfter: %w", ErrNotAsync)
	}
	return out, nil
}

// process delivers the request to the processor, as the embedded worker or
// the AWS stream does, until its terminal event is sent. A request that is
// not due yet (a retry's backoff) makes the clock jump to when it is.
func (k *kit) process(ctx context.Context) error {
	for range maxDeliveries {
		if k.ended() {
			return nil
		}
		err := k.app.Process(ctx, k.key)
		var nd *streamer.NotDueError
		switch {
		case errors.As(err, &nd):
			k.clock.jumpTo(nd.At)
		case err != nil:
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		}
	}
	if k.ended() {
		return nil
	}
	return fmt.Errorf("streamertest: request %s did not end after %d deliveries to the processor: %w", k.key.ID, maxDeliveries, ErrNoReply)
}

// ended reports whether the connection received the request's terminal
// event.
func (k *kit) ended() bool {
	for _, b := range k.rec.Raw(ConnectionID) {
		var m streamer.Message
		if json.Unmarshal(b, &m) == nil && m.RequestID == k.key.ID && m.Terminal() {
			return true
		}
	}
	return false
}

// send is the App's Sender: the recorder, watched for the acknowledgment
// and for the progress event after which the client cancels.
func (k *kit) send(ctx context.Context, endpoint, connID string, data []byte) error {
	if err := k.rec.Send(ctx, endpoint, connID, data); err != nil {
		return err
	}
	var m streamer.Message
	if connID == ConnectionID && json.Unmarshal(data, &m) == nil && m.RequestID == k.key.ID {
		return k.observe(ctx, &m)
	}
	return nil
}

// observe notes the acknowledgment and counts progress events, sending the
// cancel after the one WithCancelAfter names.
func (k *kit) observe(ctx context.Context, m *streamer.Message) error {
	switch {
	case m.Type == streamer.TypeAcknowledgment:
		k.mu.Lock()
		k.async = true
		k.mu.Unlock()
		k.admit()
	case m.Type == streamer.TypeProgress && m.Seq > 0:
		k.mu.Lock()
		k.progress++
		now := k.progress == k.after
		k.mu.Unlock()
		if now {
			// Sent before Report returns, so the handler sees its context
			// canceled at its next step, as it would if the client's
			// cancel arrived between two events.
			return k.cancel(context.WithoutCancel(ctx))
		}
	}
	return nil
}

func (k *kit) admit() { k.admitOnce.Do(func() { close(k.admitted) }) }

func (k *kit) isAsync() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.async
}

// cancel sends the protocol's cancel frame for the request.
func (k *kit) cancel(ctx context.Context) error {
	ref, err := json.Marshal(struct {
		RequestID string `json:"request_id"`
	}{k.key.ID})
	if err != nil {
		return fmt.Errorf("streamertest: encode the cancel payload: %w", err)
	}
	f, err := json.Marshal(streamer.Frame{Action: streamer.ActionCancel, Payload: ref})
	if err != nil {
		return fmt.Errorf("streamertest: encode the cancel frame: %w", err)
	}
	return k.app.HandleMessage(ctx, k.conn, f, false)
}

// jumpClock is the App's clock: base, moved forward by jumpTo. The kit
// jumps it only between two runs of a request, to the time a retried
// request is due, so no test sleeps through a backoff.
type jumpClock struct {
	base progress.Clock
	mu   sync.Mutex
	skip time.Duration
}

var _ progress.Clock = (*jumpClock)(nil)

func (c *jumpClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.base.Now().Add(c.skip)
}

func (c *jumpClock) AfterFunc(d time.Duration, f func()) progress.Timer {
	return c.base.AfterFunc(d, f)
}

// jumpTo moves the clock to t, if t is ahead.
func (c *jumpClock) jumpTo(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := t.Sub(c.base.Now().Add(c.skip)); d > 0 {
		c.skip += d
	}
}
