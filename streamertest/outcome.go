package streamertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/storage"
)

// Outcome is what the connection received for one request.
type Outcome struct {
	// RequestID is the request's id.
	RequestID string
	// Mode is how the router ran the request: ModeSync (answered with a
	// response) or ModeAsync (acknowledged, run by the processor). It is
	// ModeAuto when the router refused the request before running or
	// storing it: an invalid payload, a missing scope, an unknown action,
	// or admission middleware that returned an error.
	Mode streamer.Mode
	// Progress holds the progress events, in the order received. With the
	// kit's default Config (coalescing off) each Report is one event.
	Progress []streamer.Update
	// Result is the result's JSON on success, reassembled when it came in
	// result chunks; nil on failure.
	Result json.RawMessage
	// Err is the error body the client got, nil on success: code, message,
	// details (VALIDATION_ERROR's field errors, see [Outcome.FieldErrors])
	// and the retryable flag.
	Err *streamer.ErrorBody
	// Seq is the seq of the terminal event of an async request; 0 for
	// sync and refused requests.
	Seq int64
	// Attempts is how many times the processor claimed an async request,
	// retries included; 0 for sync and refused requests.
	Attempts int
	// Lifecycle holds the lifecycle events, in the order received: the
	// started (or continued) event of each run and the retrying event of
	// each retried failure.
	Lifecycle []streamer.Message
	// Messages are all the messages the connection received for the
	// request, in order, as decoded by a client.
	Messages []streamer.Message
}

// Code returns the error code the client got, or "" on success.
func (o *Outcome) Code() string {
	if o.Err == nil {
		return ""
	}
	return o.Err.Code
}

// FieldErrors returns the field errors of a VALIDATION_ERROR, decoded from
// [Outcome].Err's details; nil when there are none.
func (o *Outcome) FieldErrors() []streamer.FieldError {
	if o.Err == nil || len(o.Err.Details) == 0 {
		return nil
	}
	var fe []streamer.FieldError
	if json.Unmarshal(o.Err.Details, &fe) != nil {
		return nil
	}
	return fe
}

// DecodeResult decodes the result of o into T with encoding/json. It
// returns an error when the request failed, naming the code the client got.
func DecodeResult[T any](o *Outcome) (T, error) {
	var v T
	if o.Err != nil {
		return v, fmt.Errorf("streamertest: request %s failed with %s: %s", o.RequestID, o.Err.Code, o.Err.Message)
	}
	if err := json.Unmarshal(o.Result, &v); err != nil {
		return v, fmt.Errorf("streamertest: decode the result of %s: %w", o.RequestID, err)
	}
	return v, nil
}

// outcome reads what the connection received for the request.
func (k *kit) outcome() (*Outcome, error) {
	o := &Outcome{RequestID: k.key.ID}
	var chunks []string
	ended := false
	for _, b := range k.rec.Raw(ConnectionID) {
		var m streamer.Message
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("streamertest: a message is not JSON: %w: %s", err, b)
		}
		if m.RequestID != k.key.ID {
			continue
		}
		o.Messages = append(o.Messages, m)
		switch m.Type {
		case streamer.TypeAcknowledgment:
			o.Mode = streamer.ModeAsync
		case streamer.TypeProgress:
			o.Progress = append(o.Progress, streamer.Update{Percentage: m.Percentage, Message: m.Message, Metadata: m.Metadata})
		case streamer.TypeStarted, streamer.TypeContinued, streamer.TypeRetrying:
			o.Lifecycle = append(o.Lifecycle, m)
		case streamer.TypeResultChunk:
			if m.Total > 0 && chunks == nil {
				chunks = make([]string, m.Total)
			}
			text, err := m.ChunkText()
			if err != nil || m.Index < 0 || m.Index >= len(chunks) {
				return nil, fmt.Errorf("streamertest: result chunk %d of %s is malformed", m.Index, k.key.ID)
			}
			chunks[m.Index] = text
		case streamer.TypeResponse:
			o.Mode, ended = streamer.ModeSync, true
			o.Result, o.Err = m.Data, m.Error
			if m.Chunks > 0 {
				o.Result = json.RawMessage(strings.Join(chunks, ""))
			}
		case streamer.TypeComplete:
			o.Seq, ended = m.Seq, true
			o.Result = m.Result
			if m.Chunks > 0 {
				o.Result = json.RawMessage(strings.Join(chunks, ""))
			}
		case streamer.TypeError:
			if m.Seq > 0 || o.Mode != streamer.ModeAsync {
				o.Seq, o.Err, ended = m.Seq, m.Error, true
			}
		}
	}
	if !ended {
		return nil, fmt.Errorf("streamertest: request %s: %w", k.key.ID, ErrNoReply)
	}
	if o.Err != nil {
		o.Result = nil
	}
	if o.Mode == streamer.ModeAsync {
		r, err := k.store.GetRequest(context.Background(), k.key)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("streamertest: read request %s: %w", k.key.ID, err)
		}
		o.Attempts = r.Attempt
	}
	return o, nil
}
