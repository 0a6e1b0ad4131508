package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/streamer-go/streamer"
)

// Action is one action the server serves, as its actions message lists it.
type Action struct {
	// Name is the action's name, to pass to [Client.Request].
	Name string
	// Mode is "sync", "async", or "auto" when the server decides per
	// request.
	Mode string
	// Scopes are the scopes the action requires (the principal holds them
	// all); nil when it requires none.
	Scopes []string
}

// Actions asks the server for the actions the connection's principal may
// call, sorted by name (the reserved action "actions", a protocol
// extension: docs/protocol.md section 5). It survives reconnects and
// returns ctx.Err() when ctx ends first.
func (c *Client) Actions(ctx context.Context) ([]Action, error) {
	id := newID()
	frame, err := json.Marshal(streamer.Frame{Action: streamer.ActionActions, ID: id})
	if err != nil {
		return nil, fmt.Errorf("client: encoding frame: %w", err)
	}
	// The reply carries the frame's id, so it waits with the status
	// calls, under an id no request uses.
	w := &waiter{frame: frame, done: make(chan reply, 1)}
	r, err := c.await(ctx, w, func() { c.statusQ[id] = append(c.statusQ[id], w) })
	if err != nil {
		return nil, err
	}
	m := r.msg
	if m.Type == streamer.TypeError {
		return nil, newError("", m.Error)
	}
	out := make([]Action, len(m.Actions))
	for i, a := range m.Actions {
		out[i] = Action{Name: a.Name, Mode: a.Mode, Scopes: a.Scopes}
	}
	return out, nil
}
