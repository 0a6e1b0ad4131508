package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/streamer-go/streamer"
)

// Progress is one progress report of a request: a progress event of an
// asynchronous request (Seq > 0), or a live report of a synchronous one
// (Seq 0).
type Progress struct {
	RequestID  string
	Seq        int64
	Percentage float64
	Message    string
	Metadata   map[string]string
}

// Lifecycle is a lifecycle event of an asynchronous request, passed to the
// function [WithLifecycle] sets: a run started (Type "started") or
// continued from a checkpoint ("continued"), or a failed attempt will be
// retried ("retrying").
type Lifecycle struct {
	RequestID string
	Seq       int64
	// Type is "started", "continued" or "retrying".
	Type string
	// Attempt is the attempt's number: 1, plus one per retry.
	Attempt int
	// Continuations is how many times a continued request was continued.
	Continuations int
	// NextAt is when a retrying request runs again.
	NextAt time.Time
	// Error is why a retrying attempt failed.
	Error *Error
	// Percentage and Message are the request's progress so far.
	Percentage float64
	Message    string
}

// Status is the server's view of a request, as its status message says.
type Status struct {
	RequestID string
	Action    string
	// Status is queued, running, canceling, succeeded, failed or canceled.
	Status string
	// Seq is the request's last stored event.
	Seq        int64
	Percentage float64
	Message    string
	// Result is the result of a succeeded request, when it fits one
	// message; otherwise Chunks says how many chunks it was sent in.
	Result json.RawMessage
	Chunks int
	// Error is the failure of a failed or canceled request.
	Error     *Error
	CreatedAt time.Time
	UpdatedAt time.Time
}

// RequestOption sets an option of one Request or Resume call.
type RequestOption func(*requestOptions)

type requestOptions struct {
	id        string
	progress  func(Progress)
	lifecycle func(Lifecycle)
	metadata  map[string]string
}

// WithID sets the request id, 1-128 characters of [A-Za-z0-9_.:-]. The
// default is a random id such as "c-1f0e…". Re-using the id of an existing
// asynchronous request with the same action and payload attaches to it
// (the protocol's idempotency). Resume ignores it.
func WithID(id string) RequestOption {
	return func(o *requestOptions) { o.id = id }
}

// WithProgress sets a function called with each progress report, in order
// and once per seq, on the goroutine that called Request or Resume, before
// that call returns. By default progress is ignored.
func WithProgress(fn func(Progress)) RequestOption {
	return func(o *requestOptions) { o.progress = fn }
}

// WithLifecycle sets a function called with each lifecycle event (started,
// continued, retrying), in seq order with the progress reports, on the
// goroutine that called Request or Resume. By default they are ignored.
func WithLifecycle(fn func(Lifecycle)) RequestOption {
	return func(o *requestOptions) { o.lifecycle = fn }
}

// WithMetadata sets the request's metadata, informational string values the
// server may log. Resume ignores it.
func WithMetadata(md map[string]string) RequestOption {
	return func(o *requestOptions) { o.metadata = maps.Clone(md) }
}

// call is a pending Request or Resume. Fields after frame are guarded by
// Client.mu.
type call struct {
	id        string
	progress  func(Progress)
	lifecycle func(Lifecycle)
	// frame is the request frame, re-sent until acknowledged; nil for a
	// Resume.
	frame []byte

	acked     bool  // async: acknowledged, or an event was seen
	confirmed bool  // a reply arrived on the current connection
	lastSeq   int64 // highest seq delivered
	// resumed: a resume was sent on the current connection. Its replay is
	// awaited while lastSeq < resumeUntil, the highest seq seen since; gaps
	// meanwhile are its replay racing live events, so need no new resume.
	resumed     bool
	resumeUntil int64
	chunks      map[int]string
	queue       []any // Progress and Lifecycle values, in seq order
	finished    bool

	notify chan struct{} // progress queued
	done   chan outcome
}

type outcome struct {
	result json.RawMessage
	err    error
}

// finish ends the call once; the caller holds Client.mu or owns the call.
func (cl *call) finish(result json.RawMessage, err error) {
	if cl.finished {
		return
	}
	cl.finished = true
	cl.done <- outcome{result: result, err: err}
}

// waiter is a pending status, cancel or ping call. abandoned is guarded by
// Client.mu.
type waiter struct {
	frame     []byte
	done      chan reply
	abandoned bool
}

type reply struct {
	msg *streamer.Message
	err error
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "c-" + hex.EncodeToString(b[:])
}

// Request sends action with payload (encoded with encoding/json; nil sends
// none) and blocks until its result: the data of a synchronous response, or
// the result of an asynchronous request's complete event, reassembled when
// sent in chunks. A failure reported by the server is an [*Error] with its
// code. Request survives reconnects (see the package doc). When ctx ends
// first it returns ctx.Err(); the request is not canceled on the server (use
// [Client.Cancel]).
func (c *Client) Request(ctx context.Context, action string, payload any, opts ...RequestOption) (json.RawMessage, error) {
	if !streamer.ValidName(action) {
		return nil, fmt.Errorf("client: action %q must be 1-128 characters of [A-Za-z0-9_.:-]: %w", action, ErrInvalidArgument)
	}
	if streamer.Reserved(action) {
		return nil, fmt.Errorf("client: action %q is reserved; use Ping, Status, Cancel, Resume or Actions: %w", action, ErrInvalidArgument)
	}
	o := applyOptions(opts)
	id := o.id
	if id == "" {
		id = newID()
	} else if !streamer.ValidName(id) {
		return nil, fmt.Errorf("client: request id %q must be 1-128 characters of [A-Za-z0-9_.:-]: %w", id, ErrInvalidArgument)
	}
	var raw json.RawMessage
	if payload != nil {
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("client: encoding payload: %w", err)
		}
		raw = b
	}
	frame, err := json.Marshal(streamer.Frame{Action: action, ID: id, Payload: raw, Metadata: o.metadata})
	if err != nil {
		return nil, fmt.Errorf("client: encoding frame: %w", err)
	}
	if len(frame) > streamer.MaxMessageSize {
		return nil, fmt.Errorf("client: request %s is %d bytes, over %d: %w", id, len(frame), streamer.MaxMessageSize, ErrTooLarge)
	}
	cl := newCall(id, o)
	cl.frame = frame
	return c.do(ctx, cl, frame)
}

// Resume attaches to the existing asynchronous request requestID, as
// `streamer call --resume ID` does, and blocks until its result like
// [Client.Request]. Events with seq ≤ afterSeq are skipped; 0 replays every
// event, so progress starts from the beginning. Only WithProgress and
// WithLifecycle apply.
// If afterSeq is at or past the request's terminal event, nothing more
// arrives and Resume waits for ctx: use [Client.Status] for a finished
// request's result.
func (c *Client) Resume(ctx context.Context, requestID string, afterSeq int64, opts ...RequestOption) (json.RawMessage, error) {
	if !streamer.ValidName(requestID) {
		return nil, fmt.Errorf("client: request id %q must be 1-128 characters of [A-Za-z0-9_.:-]: %w", requestID, ErrInvalidArgument)
	}
	if afterSeq < 0 {
		return nil, fmt.Errorf("client: after_seq %d is negative: %w", afterSeq, ErrInvalidArgument)
	}
	o := applyOptions(opts)
	cl := newCall(requestID, o)
	cl.acked = true
	cl.lastSeq = afterSeq
	return c.do(ctx, cl, resumeFrame(requestID, afterSeq))
}

func applyOptions(opts []RequestOption) requestOptions {
	var o requestOptions
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}

func newCall(id string, o requestOptions) *call {
	return &call{
		id:        id,
		progress:  o.progress,
		lifecycle: o.lifecycle,
		notify:    make(chan struct{}, 1),
		done:      make(chan outcome, 1),
	}
}

// do registers cl, sends frame and waits for the outcome, running the
// progress callback on the way.
func (c *Client) do(ctx context.Context, cl *call, frame []byte) (json.RawMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	err := c.register(frame, func() error {
		if _, dup := c.calls[cl.id]; dup {
			return fmt.Errorf("client: request id %q: %w", cl.id, ErrInFlight)
		}
		c.calls[cl.id] = cl
		if cl.frame == nil {
			cl.resumed, cl.resumeUntil = true, cl.lastSeq
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for {
		select {
		case <-cl.notify:
			c.deliver(cl)
		case o := <-cl.done:
			c.deliver(cl)
			return o.result, o.err
		case <-ctx.Done():
			c.mu.Lock()
			if c.calls[cl.id] == cl {
				delete(c.calls, cl.id)
			}
			c.mu.Unlock()
			select {
			case o := <-cl.done:
				c.deliver(cl)
				return o.result, o.err
			default:
				return nil, ctx.Err()
			}
		}
	}
}

// deliver runs the progress callback for the queued reports.
func (c *Client) deliver(cl *call) {
	c.mu.Lock()
	q := cl.queue
	cl.queue = nil
	c.mu.Unlock()
	for _, v := range q {
		switch v := v.(type) {
		case Progress:
			cl.progress(v)
		case Lifecycle:
			cl.lifecycle(v)
		}
	}
}

// Status asks the server for the state of request requestID. A request the
// principal does not own, or that does not exist, gives an [*Error] with
// code NOT_FOUND. Status survives reconnects; it returns ctx.Err() when ctx
// ends first.
func (c *Client) Status(ctx context.Context, requestID string) (Status, error) {
	return c.statusCall(ctx, streamer.ActionStatus, requestID)
}

// Cancel asks the server to cancel request requestID and returns the status
// it answered: canceling, or the final status when the request had already
// finished. A pending Request or Resume for it then returns an [*Error]
// with code CANCELED.
func (c *Client) Cancel(ctx context.Context, requestID string) (Status, error) {
	return c.statusCall(ctx, streamer.ActionCancel, requestID)
}

func (c *Client) statusCall(ctx context.Context, action, requestID string) (Status, error) {
	if !streamer.ValidName(requestID) {
		return Status{}, fmt.Errorf("client: request id %q must be 1-128 characters of [A-Za-z0-9_.:-]: %w", requestID, ErrInvalidArgument)
	}
	w := &waiter{frame: refFrame(action, requestID, nil), done: make(chan reply, 1)}
	r, err := c.await(ctx, w, func() { c.statusQ[requestID] = append(c.statusQ[requestID], w) })
	if err != nil {
		return Status{}, err
	}
	m := r.msg
	if m.Type == streamer.TypeError {
		return Status{}, newError(m.RequestID, m.Error)
	}
	s := Status{
		RequestID:  m.RequestID,
		Action:     m.Action,
		Status:     m.Status,
		Seq:        m.Seq,
		Percentage: m.Percentage,
		Message:    m.Message,
		Result:     m.Result,
		Chunks:     m.Chunks,
		CreatedAt:  unixMilli(m.CreatedAt),
		UpdatedAt:  unixMilli(m.UpdatedAt),
	}
	if m.Error != nil {
		s.Error = newError(m.RequestID, m.Error)
	}
	return s, nil
}

func unixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Ping sends a ping and waits for the pong. It survives reconnects and
// returns ctx.Err() when ctx ends first.
func (c *Client) Ping(ctx context.Context) error {
	frame, _ := json.Marshal(streamer.Frame{Action: streamer.ActionPing})
	w := &waiter{frame: frame, done: make(chan reply, 1)}
	r, err := c.await(ctx, w, func() { c.pingQ = append(c.pingQ, w) })
	if err != nil {
		return err
	}
	if r.msg.Type == streamer.TypeError {
		return newError(r.msg.RequestID, r.msg.Error)
	}
	return nil
}

// await registers w with add (under mu), sends its frame and waits for the
// reply. On ctx's end w stays queued, marked abandoned, so that the reply
// meant for it is not taken by the next waiter.
func (c *Client) await(ctx context.Context, w *waiter, add func()) (reply, error) {
	if err := ctx.Err(); err != nil {
		return reply{}, err
	}
	if err := c.register(w.frame, func() error { add(); return nil }); err != nil {
		return reply{}, err
	}
	select {
	case r := <-w.done:
		return r, r.err
	case <-ctx.Done():
		c.mu.Lock()
		w.abandoned = true
		c.mu.Unlock()
		select {
		case r := <-w.done:
			return r, r.err
		default:
			return reply{}, ctx.Err()
		}
	}
}

// handle dispatches one server message.
func (c *Client) handle(conn *websocket.Conn, data []byte) {
	m := new(streamer.Message)
	if err := json.Unmarshal(data, m); err != nil {
		c.log.Warn().Err(err).Msg("ignoring a message that is not JSON")
		return
	}
	var out []byte
	c.mu.Lock()
	switch {
	case m.Type == streamer.TypePong:
		c.popPingLocked(m)
	case m.Type == streamer.TypeStatus || m.Type == streamer.TypeActions || m.Type == streamer.TypeList:
		if !c.popStatusLocked(m) {
			c.log.Debug().Str("request_id", m.RequestID).Msg("status reply with no waiter")
		}
	case m.Type == streamer.TypeError && m.RequestID == "":
		// Only a ping frame carries no request id.
		if !c.popPingLocked(m) {
			c.log.Warn().Str("code", codeOfBody(m.Error)).Msg("error about no request")
		}
	case m.Type == streamer.TypeError && m.Seq == 0:
		// A refusal: of a request not yet confirmed, else of a status or
		// cancel call, else of a resume.
		cl := c.calls[m.RequestID]
		switch {
		case cl != nil && !cl.confirmed:
			out = c.eventLocked(cl, m)
		case c.popStatusLocked(m):
		case cl != nil:
			out = c.eventLocked(cl, m)
		default:
			c.log.Debug().Str("request_id", m.RequestID).Msg("error with no pending call")
		}
	default:
		if cl := c.calls[m.RequestID]; cl != nil {
			out = c.eventLocked(cl, m)
		} else {
			c.log.Debug().Str("request_id", m.RequestID).Str("type", m.Type).Msg("message with no pending call")
		}
	}
	c.mu.Unlock()
	if out != nil {
		c.send(conn, out)
	}
}

func codeOfBody(b *streamer.ErrorBody) string {
	if b == nil {
		return ""
	}
	return b.Code
}

func (c *Client) popPingLocked(m *streamer.Message) bool {
	if len(c.pingQ) == 0 {
		return false
	}
	w := c.pingQ[0]
	c.pingQ[0] = nil
	c.pingQ = c.pingQ[1:]
	w.done <- reply{msg: m}
	return true
}

func (c *Client) popStatusLocked(m *streamer.Message) bool {
	q := c.statusQ[m.RequestID]
	if len(q) == 0 {
		return false
	}
	w := q[0]
	q[0] = nil
	if len(q) == 1 {
		delete(c.statusQ, m.RequestID)
	} else {
		c.statusQ[m.RequestID] = q[1:]
	}
	w.done <- reply{msg: m}
	return true
}

// eventLocked applies a message about call cl. It returns a resume frame to
// send when the stream has a gap, or nil.
func (c *Client) eventLocked(cl *call, m *streamer.Message) []byte {
	cl.confirmed = true
	if m.Type == streamer.TypeAcknowledgment {
		cl.acked = true
		if m.Seq > cl.lastSeq && !cl.resumed {
			// Attached to a request that has events we have not seen:
			// only later ones would follow, so ask for the missed ones.
			return c.resumeLocked(cl, m.Seq)
		}
		return nil
	}
	if m.Seq > 0 {
		cl.acked = true
		if m.Seq <= cl.lastSeq {
			return nil // seen already
		}
		if m.Seq > cl.lastSeq+1 {
			// A gap: the resume replays this event too.
			return c.resumeLocked(cl, m.Seq)
		}
		cl.lastSeq = m.Seq
	}
	switch m.Type {
	case streamer.TypeProgress:
		if cl.progress != nil {
			cl.queue = append(cl.queue, Progress{
				RequestID:  cl.id,
				Seq:        m.Seq,
				Percentage: m.Percentage,
				Message:    m.Message,
				Metadata:   m.Metadata,
			})
			select {
			case cl.notify <- struct{}{}:
			default:
			}
		}
	case streamer.TypeStarted, streamer.TypeContinued, streamer.TypeRetrying:
		if cl.lifecycle != nil {
			l := Lifecycle{
				RequestID: cl.id, Seq: m.Seq, Type: m.Type, Attempt: m.Attempt, Continuations: m.Continuations,
				Percentage: m.Percentage, Message: m.Message,
			}
			if m.NextAt > 0 {
				l.NextAt = time.UnixMilli(m.NextAt)
			}
			if m.Error != nil {
				l.Error = newError(cl.id, m.Error)
			}
			cl.queue = append(cl.queue, l)
			select {
			case cl.notify <- struct{}{}:
			default:
			}
		}
	case streamer.TypeResultChunk:
		text, err := m.ChunkText()
		if err != nil || m.Index < 0 {
			c.finishLocked(cl, nil, fmt.Errorf("client: request %s: malformed result chunk %d: %w", cl.id, m.Index, ErrInvalidResult))
			return nil
		}
		if cl.chunks == nil || (m.Index == 0 && m.Seq > 0) {
			// An event with index 0 starts a result over: chunks of an
			// attempt that was retried before its complete are dropped.
			cl.chunks = make(map[int]string)
		}
		cl.chunks[m.Index] = text
	case streamer.TypeComplete:
		result, err := c.resultLocked(cl, m.Result, m.Chunks)
		c.finishLocked(cl, result, err)
	case streamer.TypeResponse:
		if !m.Success {
			c.finishLocked(cl, nil, newError(cl.id, m.Error))
			return nil
		}
		result, err := c.resultLocked(cl, m.Data, m.Chunks)
		c.finishLocked(cl, result, err)
	case streamer.TypeError:
		c.finishLocked(cl, nil, newError(cl.id, m.Error))
	default:
		c.log.Debug().Str("request_id", cl.id).Str("type", m.Type).Msg("ignoring a message of unknown type")
	}
	return nil
}

// resumeLocked returns a resume frame after cl's last seq, having seen
// seq, unless a resume sent earlier on this connection has not caught up.
func (c *Client) resumeLocked(cl *call, seq int64) []byte {
	if cl.resumed && cl.lastSeq < cl.resumeUntil {
		cl.resumeUntil = max(cl.resumeUntil, seq)
		return nil
	}
	cl.resumed, cl.resumeUntil = true, seq
	return resumeFrame(cl.id, cl.lastSeq)
}

// resultLocked returns the result: raw, or the n chunks joined in index
// order.
func (c *Client) resultLocked(cl *call, raw json.RawMessage, n int) (json.RawMessage, error) {
	if n <= 0 {
		if len(raw) == 0 {
			return json.RawMessage("null"), nil
		}
		return raw, nil
	}
	var b strings.Builder
	for i := range n {
		s, ok := cl.chunks[i]
		if !ok {
			return nil, fmt.Errorf("client: request %s: chunk %d of %d missing: %w", cl.id, i, n, ErrInvalidResult)
		}
		b.WriteString(s)
	}
	if len(cl.chunks) != n {
		return nil, fmt.Errorf("client: request %s: %d chunks for a result of %d: %w", cl.id, len(cl.chunks), n, ErrInvalidResult)
	}
	out := json.RawMessage(b.String())
	if !json.Valid(out) {
		return nil, fmt.Errorf("client: request %s: joined chunks are not JSON: %w", cl.id, ErrInvalidResult)
	}
	return out, nil
}

func (c *Client) finishLocked(cl *call, result json.RawMessage, err error) {
	if c.calls[cl.id] == cl {
		delete(c.calls, cl.id)
	}
	cl.chunks = nil
	cl.finish(result, err)
}
