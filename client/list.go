package client

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/streamer-go/streamer"
)

// MaxListLimit is the largest page [Client.List] may ask for.
const MaxListLimit = 100

// ListOptions selects a page of [Client.List].
type ListOptions struct {
	// Statuses keeps the requests in one of these statuses (queued,
	// running, canceling, succeeded, failed, canceled); empty keeps all.
	Statuses []string
	// Limit is the most requests of the page, 1 to [MaxListLimit]; 0 means
	// the server's default (20).
	Limit int
	// Cursor is the Cursor of the previous page; empty starts with the
	// newest request.
	Cursor string
}

// ListedRequest is one request of a [ListPage].
type ListedRequest struct {
	RequestID string
	Action    string
	// Status is queued, running, canceling, succeeded, failed or canceled.
	Status string
	// Seq is the last stored seq (0 before the first event): pass it to
	// [Client.Resume] to follow the request from there.
	Seq int64
	// Percentage and Message are the latest progress (Message cut to 512
	// bytes).
	Percentage float64
	Message    string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Live reports whether the request has not finished yet: queued, running
// or canceling.
func (r ListedRequest) Live() bool {
	return r.Status == "queued" || r.Status == "running" || r.Status == "canceling"
}

// ListPage is a page of [Client.List].
type ListPage struct {
	// Requests are newest first.
	Requests []ListedRequest
	// Cursor continues the listing (pass it in ListOptions.Cursor); empty
	// on the last page. A page may hold fewer requests than the limit, even
	// none, and still have a Cursor.
	Cursor string
}

// listPayload is the payload of a list frame.
type listPayload struct {
	Status []string `json:"status,omitempty"`
	Limit  int      `json:"limit,omitempty"`
	Cursor string   `json:"cursor,omitempty"`
}

// List asks the server for a page of the requests of the connection's
// principal, newest first (the reserved action "list", a protocol
// extension: docs/protocol.md section 5), to find them again after the
// client lost its state, and follow the live ones with [Client.Resume]. A
// bad option gives an [*Error] with code VALIDATION_ERROR (from the
// server). List survives reconnects and returns ctx.Err() when ctx ends
// first.
func (c *Client) List(ctx context.Context, opts ListOptions) (ListPage, error) {
	if opts.Limit < 0 || opts.Limit > MaxListLimit {
		return ListPage{}, fmt.Errorf("client: list limit %d must be 0 (the default) to %d: %w", opts.Limit, MaxListLimit, ErrInvalidArgument)
	}
	payload, err := json.Marshal(listPayload{Status: opts.Statuses, Limit: opts.Limit, Cursor: opts.Cursor})
	if err != nil {
		return ListPage{}, fmt.Errorf("client: encoding payload: %w", err)
	}
	id := newID()
	frame, err := json.Marshal(streamer.Frame{Action: streamer.ActionList, ID: id, Payload: payload})
	if err != nil {
		return ListPage{}, fmt.Errorf("client: encoding frame: %w", err)
	}
	// The reply carries the frame's id, so it waits with the status
	// calls, under an id no request uses.
	w := &waiter{frame: frame, done: make(chan reply, 1)}
	r, err := c.await(ctx, w, func() { c.statusQ[id] = append(c.statusQ[id], w) })
	if err != nil {
		return ListPage{}, err
	}
	m := r.msg
	if m.Type == streamer.TypeError {
		return ListPage{}, newError("", m.Error)
	}
	page := ListPage{Requests: make([]ListedRequest, len(m.Requests)), Cursor: m.Cursor}
	for i, s := range m.Requests {
		page.Requests[i] = ListedRequest{
			RequestID: s.RequestID, Action: s.Action, Status: s.Status,
			Seq: s.Seq, Percentage: s.Percentage, Message: s.Message,
			CreatedAt: unixMilli(s.CreatedAt), UpdatedAt: unixMilli(s.UpdatedAt),
		}
	}
	return page, nil
}
