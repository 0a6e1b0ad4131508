package bolt

import (
	"maps"
	"time"

	"github.com/streamer-go/streamer/storage"
)

// The records below are the on-disk JSON encoding, decoupled from the
// storage types so that those may change without breaking stored files.
// Raw JSON fields are kept as []byte (base64 in the file) so that they
// round-trip byte for byte: encoding/json would compact a json.RawMessage.

type errorRecord struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Details   []byte `json:"details,omitempty"`
	Retryable bool   `json:"retryable,omitempty"`
}

type requestRecord struct {
	Action       string            `json:"action,omitempty"`
	Payload      []byte            `json:"payload,omitempty"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Fingerprint  string            `json:"fingerprint,omitempty"`
	Principal    []byte            `json:"principal,omitempty"`
	ConnectionID string            `json:"connection_id,omitempty"`
	Endpoint     string            `json:"endpoint,omitempty"`
	TraceParent  string            `json:"trace_parent,omitempty"`
	Status       storage.Status    `json:"status"`
	Attempt      int               `json:"attempt,omitempty"`
	Stalls       int               `json:"stalls,omitempty"` // absent in files written before stalls were counted
	Continued    int               `json:"continuations,omitempty"`
	Checkpoint   []byte            `json:"checkpoint,omitempty"`
	StartedAt    time.Time         `json:"started_at,omitzero"`
	SubsVersion  int64             `json:"subs_version,omitempty"`
	NotBefore    time.Time         `json:"not_before"`
	LeaseUntil   time.Time         `json:"lease_until"`
	Result       []byte            `json:"result,omitempty"`
	ResultChunks int               `json:"result_chunks,omitempty"`
	Error        *errorRecord      `json:"error,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	ExpiresAt    time.Time         `json:"expires_at"`
}

func fromRequest(r storage.Request) requestRecord {
	rec := requestRecord{
		Action:       r.Action,
		Payload:      r.Payload,
		Metadata:     r.Metadata,
		Fingerprint:  r.Fingerprint,
		Principal:    r.Principal,
		ConnectionID: r.ConnectionID,
		Endpoint:     r.Endpoint,
		TraceParent:  r.TraceParent,
		Status:       r.Status,
		Attempt:      r.Attempt,
		Stalls:       r.Stalls,
		Continued:    r.Continuations,
		Checkpoint:   r.Checkpoint,
		StartedAt:    r.StartedAt,
		SubsVersion:  r.SubsVersion,
		NotBefore:    r.NotBefore,
		LeaseUntil:   r.LeaseUntil,
		Result:       r.Result,
		ResultChunks: r.ResultChunks,
		CreatedAt:    r.CreatedAt,
		UpdatedAt:    r.UpdatedAt,
		ExpiresAt:    r.ExpiresAt,
	}
	if r.Error != nil {
		rec.Error = &errorRecord{
			Code:      r.Error.Code,
			Message:   r.Error.Message,
			Details:   r.Error.Details,
			Retryable: r.Error.Retryable,
		}
	}
	return rec
}

func (rec requestRecord) request(k storage.Key) storage.Request {
	r := storage.Request{
		Key:           k,
		Action:        rec.Action,
		Payload:       rec.Payload,
		Metadata:      maps.Clone(rec.Metadata),
		Fingerprint:   rec.Fingerprint,
		Principal:     rec.Principal,
		ConnectionID:  rec.ConnectionID,
		Endpoint:      rec.Endpoint,
		TraceParent:   rec.TraceParent,
		Status:        rec.Status,
		Attempt:       rec.Attempt,
		Stalls:        rec.Stalls,
		Continuations: rec.Continued,
		Checkpoint:    rec.Checkpoint,
		StartedAt:     rec.StartedAt,
		SubsVersion:   rec.SubsVersion,
		NotBefore:     rec.NotBefore,
		LeaseUntil:    rec.LeaseUntil,
		Result:        rec.Result,
		ResultChunks:  rec.ResultChunks,
		CreatedAt:     rec.CreatedAt,
		UpdatedAt:     rec.UpdatedAt,
		ExpiresAt:     rec.ExpiresAt,
	}
	if rec.Error != nil {
		r.Error = &storage.ErrorInfo{
			Code:      rec.Error.Code,
			Message:   rec.Error.Message,
			Details:   rec.Error.Details,
			Retryable: rec.Error.Retryable,
		}
	}
	return r
}

type eventRecord struct {
	Seq        int64     `json:"seq"`
	Type       string    `json:"type"`
	Percentage float64   `json:"percentage,omitempty"`
	Message    string    `json:"message,omitempty"`
	Data       []byte    `json:"data,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// fromEvent encodes an event as stored: without a checkpoint, which
// belongs to the request.
func fromEvent(e storage.Event) eventRecord {
	return eventRecord{Seq: e.Seq, Type: e.Type, Percentage: e.Percentage, Message: e.Message, Data: e.Data, CreatedAt: e.CreatedAt, ExpiresAt: e.ExpiresAt}
}

func (rec eventRecord) event() storage.Event {
	return storage.Event{Seq: rec.Seq, Type: rec.Type, Percentage: rec.Percentage, Message: rec.Message, Data: rec.Data, CreatedAt: rec.CreatedAt, ExpiresAt: rec.ExpiresAt}
}
