package streamer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/streamer-go/streamer/storage"
)

// The reserved action "list" (a protocol extension, docs/protocol.md
// section 5) and its reply.
const (
	// ActionList lists the principal's own requests, newest first, a page
	// at a time.
	ActionList = "list"
	// TypeList is the reply to the reserved action "list".
	TypeList = "list"
)

// MaxListMessage is the most bytes of a request's latest progress message
// that a list message carries; a longer one is cut (at a character
// boundary), so that a page fits in one message.
const MaxListMessage = 512

// RequestSummary is one request of a list message.
type RequestSummary struct {
	RequestID string `json:"request_id"`
	Action    string `json:"action"`
	// Status is queued, running, canceling, succeeded, failed or canceled.
	Status string `json:"status"`
	// Seq is the request's last stored seq (0 when it has no event yet);
	// Percentage and Message are its latest progress, Message cut to
	// MaxListMessage bytes.
	Seq        int64   `json:"seq"`
	Percentage float64 `json:"percentage"`
	Message    string  `json:"message"`
	// CreatedAt and UpdatedAt are Unix milliseconds.
	CreatedAt int64 `json:"created_at"`
	UpdatedAt int64 `json:"updated_at"`
}

// listPayload is the payload of list.
type listPayload struct {
	Status []string `json:"status"`
	Limit  *int     `json:"limit"`
	Cursor string   `json:"cursor"`
}

// listStatuses are the statuses a list may be filtered by.
var listStatuses = []storage.Status{
	storage.StatusQueued, storage.StatusRunning, storage.StatusCanceling,
	storage.StatusSucceeded, storage.StatusFailed, storage.StatusCanceled,
}

// listInvalid is the VALIDATION_ERROR of a bad list payload.
func listInvalid(field, rule, msg string) *Error {
	return (&Error{Code: CodeValidation, Message: msg}).WithDetails([]FieldError{{Field: field, Rule: rule, Message: msg}})
}

// decodeList checks the payload of list and returns the query it asks for.
func decodeList(payload json.RawMessage) (storage.ListQuery, *Error) {
	var q storage.ListQuery
	if len(payload) == 0 {
		return q, nil
	}
	var p listPayload
	err := json.Unmarshal(payload, &p)
	var te *json.UnmarshalTypeError
	switch {
	case payload[0] != '{' || (err != nil && !errors.As(err, &te)):
		return q, &Error{Code: CodeValidation, Message: `list takes no payload or an object {"status": [...], "limit": N, "cursor": "..."}`}
	case err != nil:
		switch field, _, _ := strings.Cut(te.Field, "."); field {
		case "status":
			return q, listInvalid("status", "array", "status must be an array of statuses")
		case "limit":
			return q, listInvalid("limit", "int", fmt.Sprintf("limit must be an integer from 1 to %d", storage.MaxListLimit))
		case "cursor":
			return q, listInvalid("cursor", "string", "cursor must be a string")
		default:
			return q, &Error{Code: CodeValidation, Message: `list takes no payload or an object {"status": [...], "limit": N, "cursor": "..."}`}
		}
	}
	for _, s := range p.Status {
		st := storage.Status(s)
		if !slices.Contains(listStatuses, st) {
			return q, listInvalid("status", "oneof", fmt.Sprintf("status %q is not one of queued, running, canceling, succeeded, failed, canceled", s))
		}
		if !slices.Contains(q.Statuses, st) {
			q.Statuses = append(q.Statuses, st)
		}
	}
	if p.Limit != nil {
		if *p.Limit < 1 || *p.Limit > storage.MaxListLimit {
			return q, listInvalid("limit", "range", fmt.Sprintf("limit must be an integer from 1 to %d", storage.MaxListLimit))
		}
		q.Limit = *p.Limit
	}
	q.Cursor = p.Cursor
	return q, nil
}

// handleList answers the reserved action list with one page of the
// principal's requests, newest first.
func (a *App) handleList(ctx context.Context, conn Conn, f *Frame) error {
	q, verr := decodeList(f.Payload)
	if verr != nil {
		a.replyError(ctx, conn, f.ID, verr)
		return nil
	}
	l, ok := a.cfg.Store.(storage.PrincipalLister)
	if !ok {
		a.replyError(ctx, conn, f.ID, NewError(CodeInvalidAction, "list is not available: this server's store cannot list requests"))
		return nil
	}
	p := conn.Principal
	for {
		page, err := l.ListRequests(ctx, p.Tenant, p.Subject, q)
		if err != nil {
			if errors.Is(err, storage.ErrBadCursor) {
				a.replyError(ctx, conn, f.ID, listInvalid("cursor", "cursor",
					"cursor is not one this server gave: pass the cursor of a list reply, or none to start from the newest request"))
				return nil
			}
			a.replyError(ctx, conn, f.ID, unavailable())
			return fmt.Errorf("streamer: list requests: %w", err)
		}
		m := listMessage(f.ID, page, a.now())
		bp := bufPool.Get().(*[]byte)
		*bp = m.AppendJSON((*bp)[:0])
		if len(*bp) <= MaxMessageSize || len(page.Requests) <= 1 {
			a.send(ctx, conn, m.Type, *bp)
			putBuf(bp)
			return nil
		}
		putBuf(bp)
		// Too large for one message: ask for a smaller page, whose
		// cursor continues after its last request.
		q.Limit = len(page.Requests) / 2
	}
}

// listMessage is the list message of page, replying to the frame id.
func listMessage(id string, page storage.ListPage, now time.Time) *Message {
	m := &Message{Type: TypeList, RequestID: id, Requests: make([]RequestSummary, len(page.Requests)), Cursor: page.Cursor, Timestamp: now.UnixMilli()}
	for i, r := range page.Requests {
		m.Requests[i] = RequestSummary{
			RequestID: r.Key.ID, Action: r.Action, Status: string(r.Status),
			Seq: r.Seq, Percentage: r.Percentage, Message: cutText(r.Message, MaxListMessage),
			CreatedAt: unixMilli(r.CreatedAt), UpdatedAt: unixMilli(r.UpdatedAt),
		}
	}
	return m
}

// unixMilli is t in Unix milliseconds, 0 for the zero time.
func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// cutText returns s cut to at most n bytes, at a character boundary.
func cutText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// appendList appends the fields of a list message.
func appendList(b []byte, m *Message) []byte {
	b = append(b, `,"requests":[`...)
	for i := range m.Requests {
		r := &m.Requests[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"request_id":`...)
		b = appendString(b, r.RequestID)
		b = append(b, `,"action":`...)
		b = appendString(b, r.Action)
		b = append(b, `,"status":`...)
		b = appendString(b, r.Status)
		b = appendInt(b, "seq", r.Seq)
		b = appendFloat(b, "percentage", r.Percentage)
		b = append(b, `,"message":`...)
		b = appendString(b, r.Message)
		b = appendInt(b, "created_at", r.CreatedAt)
		b = appendInt(b, "updated_at", r.UpdatedAt)
		b = append(b, '}')
	}
	b = append(b, ']')
	if m.Cursor != "" {
		b = append(b, `,"cursor":`...)
		b = appendString(b, m.Cursor)
	}
	return b
}
