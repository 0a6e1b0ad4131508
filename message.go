package streamer

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxMessageSize is the largest message, in bytes, either side may send on
// the wire (API Gateway's WebSocket frame limit).
const MaxMessageSize = 131072

// Message types sent by the server.
const (
	TypeResponse       = "response"
	TypeAcknowledgment = "acknowledgment"
	TypeProgress       = "progress"
	TypeResultChunk    = "result_chunk"
	TypeComplete       = "complete"
	TypeError          = "error"
	TypeStatus         = "status"
	TypePong           = "pong"
	// TypeActions is the reply to the reserved action "actions" (a
	// protocol extension, docs/protocol.md section 5).
	TypeActions = "actions"
	// TypeStarted, TypeContinued and TypeRetrying are the lifecycle events
	// of an async request (a protocol extension, docs/protocol.md section
	// 5): stored, seq-numbered events like progress. A run that claims
	// the request sends started, or continued when it resumes from a
	// checkpoint; a failed attempt that is retried sends retrying.
	TypeStarted   = "started"
	TypeContinued = "continued"
	TypeRetrying  = "retrying"
)

// Reserved actions, served by the framework itself.
const (
	ActionPing   = "ping"
	ActionStatus = "status"
	ActionResume = "resume"
	ActionCancel = "cancel"
	// ActionActions lists the actions the principal may call (a protocol
	// extension, docs/protocol.md section 5).
	ActionActions = "actions"
)

// Reserved reports whether action is served by the framework and may not be
// registered by a plugin.
func Reserved(action string) bool {
	switch action {
	case ActionPing, ActionStatus, ActionResume, ActionCancel, ActionActions, ActionList:
		return true
	}
	return false
}

// Frame is a client-to-server message.
type Frame struct {
	Action   string            `json:"action"`
	ID       string            `json:"id,omitempty"`
	Payload  json.RawMessage   `json:"payload,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// ValidName reports whether s is a valid action or request id: 1-128
// characters of [A-Za-z0-9_.:-].
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

type rawFrame struct {
	Action   *string           `json:"action"`
	ID       *string           `json:"id"`
	Payload  json.RawMessage   `json:"payload"`
	Metadata map[string]string `json:"metadata"`
}

// DecodeFrame parses a client frame. On failure it returns an INVALID_MESSAGE
// error and, when a valid id could be read, the frame with ID set so the
// reply can carry request_id. It never panics, whatever data holds.
func DecodeFrame(data []byte) (Frame, *Error) {
	var f Frame
	if !utf8.Valid(data) {
		return f, invalid("the frame is not valid UTF-8")
	}
	var raw rawFrame
	// A field of the wrong type stops neither the decoding of the others
	// nor the report of which field it was.
	err := json.Unmarshal(data, &raw)
	badField := ""
	if err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Field == "" {
			return f, invalid("the frame is not a JSON object")
		}
		badField, _, _ = strings.Cut(te.Field, ".")
	}
	// encoding/json accepted the text: its keys must be unique and exact.
	if msg, idClean := checkFrameKeys(data); msg != "" {
		if idClean && badField != "id" && raw.ID != nil && ValidName(*raw.ID) {
			f.ID = *raw.ID
		}
		return f, invalid(msg)
	}
	if badField == "id" || (raw.ID != nil && !ValidName(*raw.ID)) {
		return f, invalid("id must be 1-128 characters of [A-Za-z0-9_.:-]")
	}
	if raw.ID != nil {
		f.ID = *raw.ID
	}
	switch {
	case badField == "action":
		return f, invalid("action must be 1-128 characters of [A-Za-z0-9_.:-]")
	case raw.Action == nil:
		return f, invalid("action is required")
	case !ValidName(*raw.Action):
		return f, invalid("action must be 1-128 characters of [A-Za-z0-9_.:-]")
	case badField == "metadata":
		return f, invalid("metadata must be an object of string values")
	case badField != "":
		return f, invalid("the frame is not a JSON object of the protocol's shape")
	}
	f.Action = *raw.Action
	f.Metadata = raw.Metadata
	if len(raw.Payload) > 0 && !isNull(raw.Payload) {
		f.Payload = raw.Payload
	}
	return f, nil
}

func invalid(msg string) *Error { return &Error{Code: CodeInvalidMessage, Message: msg} }

func isNull(b json.RawMessage) bool { return string(b) == "null" }

// Message is a server-to-client message. One struct serves every type; which
// fields are sent depends on Type, as docs/protocol.md lists. Clients decode
// messages into it with encoding/json.
type Message struct {
	Type      string `json:"type"`
	RequestID string `json:"request_id,omitempty"`
	// Seq is the event's sequence number; 0 means none (sync progress and
	// chunks, new acknowledgments).
	Seq        int64             `json:"seq,omitempty"`
	Action     string            `json:"action,omitempty"`
	Status     string            `json:"status,omitempty"`
	Success    bool              `json:"success,omitempty"`
	Percentage float64           `json:"percentage,omitempty"`
	Message    string            `json:"message,omitempty"`
	Metadata   map[string]string `json:"metadata,omitempty"`
	// Data is a response's data, or a result_chunk's slice of the result
	// text (a JSON string; see ChunkText).
	Data json.RawMessage `json:"data,omitempty"`
	// Result is a complete or status message's result.
	Result json.RawMessage `json:"result,omitempty"`
	// Index and Total place a result_chunk.
	Index int `json:"index,omitempty"`
	Total int `json:"total,omitempty"`
	// Chunks is the number of result_chunk messages that carried the
	// result, when it was too large for this message.
	Chunks    int        `json:"chunks,omitempty"`
	Error     *ErrorBody `json:"error,omitempty"`
	Timestamp int64      `json:"timestamp,omitempty"`
	CreatedAt int64      `json:"created_at,omitempty"`
	UpdatedAt int64      `json:"updated_at,omitempty"`
	// Actions is an actions message's list, sorted by name.
	Actions []ActionInfo `json:"actions,omitempty"`
	// Attempt is the attempt a lifecycle event is about: 1 for the first,
	// one more for each retry after a failure. Continuations of an attempt
	// keep its number.
	Attempt int `json:"attempt,omitempty"`
	// Continuations is how many times a continued request was continued.
	Continuations int `json:"continuations,omitempty"`
	// NextAt is when a retrying request runs again (Unix ms).
	NextAt int64 `json:"next_at,omitempty"`
	// Requests is a list message's page of requests, newest first.
	Requests []RequestSummary `json:"requests,omitempty"`
	// Cursor continues a list message's listing; empty on the last page.
	Cursor string `json:"cursor,omitempty"`
}

// Lifecycle reports whether m is a lifecycle event: started, continued or
// retrying.
func (m *Message) Lifecycle() bool {
	return m.Type == TypeStarted || m.Type == TypeContinued || m.Type == TypeRetrying
}

// ActionInfo describes one action in an actions message.
type ActionInfo struct {
	// Name is the action's name.
	Name string `json:"name"`
	// Mode is "sync", "async" or "auto" (decided per request by the
	// handler's estimate).
	Mode string `json:"mode"`
	// Scopes are the scopes the action requires, all of which the
	// principal holds; absent when it requires none.
	Scopes []string `json:"scopes,omitempty"`
}

// ChunkText returns the slice of result text a result_chunk carries.
func (m *Message) ChunkText() (string, error) {
	var s string
	err := json.Unmarshal(m.Data, &s)
	return s, err
}

// Terminal reports whether m ends an async request's stream: a complete, or
// an error carrying a seq.
func (m *Message) Terminal() bool {
	return m.Type == TypeComplete || (m.Type == TypeError && m.Seq > 0)
}

// MarshalJSON encodes m with the fields its type carries.
func (m *Message) MarshalJSON() ([]byte, error) {
	return m.AppendJSON(make([]byte, 0, 128+len(m.Data)+len(m.Result))), nil
}

// AppendJSON appends the JSON encoding of m to b and returns the result.
// Raw fields (Data, Result, Error.Details) must hold valid JSON.
func (m *Message) AppendJSON(b []byte) []byte {
	b = append(b, `{"type":`...)
	b = appendString(b, m.Type)
	if m.RequestID != "" {
		b = append(b, `,"request_id":`...)
		b = appendString(b, m.RequestID)
	}
	switch m.Type {
	case TypeResponse:
		b = append(b, `,"success":`...)
		b = strconv.AppendBool(b, m.Success)
		if m.Chunks > 0 {
			b = appendInt(b, "chunks", int64(m.Chunks))
		} else if m.Success {
			b = appendRaw(b, "data", m.Data)
		}
		b = appendError(b, m.Error)
	case TypeAcknowledgment:
		b = append(b, `,"status":`...)
		b = appendString(b, m.Status)
		b = appendInt(b, "seq", m.Seq)
		if m.Seq > 0 || m.Percentage > 0 || m.Message != "" {
			b = appendFloat(b, "percentage", m.Percentage)
			b = append(b, `,"message":`...)
			b = appendString(b, m.Message)
		}
	case TypeProgress:
		if m.Seq > 0 {
			b = appendInt(b, "seq", m.Seq)
		}
		b = appendFloat(b, "percentage", m.Percentage)
		b = append(b, `,"message":`...)
		b = appendString(b, m.Message)
		if len(m.Metadata) > 0 {
			md, _ := json.Marshal(m.Metadata)
			b = appendRaw(b, "metadata", md)
		}
	case TypeResultChunk:
		if m.Seq > 0 {
			b = appendInt(b, "seq", m.Seq)
		}
		b = appendInt(b, "index", int64(m.Index))
		b = appendInt(b, "total", int64(m.Total))
		b = appendRaw(b, "data", m.Data)
	case TypeComplete:
		b = appendInt(b, "seq", m.Seq)
		if m.Chunks > 0 {
			b = appendInt(b, "chunks", int64(m.Chunks))
		} else {
			b = appendRaw(b, "result", m.Result)
		}
	case TypeError:
		if m.Seq > 0 {
			b = appendInt(b, "seq", m.Seq)
		}
		b = appendError(b, m.Error)
	case TypeStatus:
		b = append(b, `,"action":`...)
		b = appendString(b, m.Action)
		b = append(b, `,"status":`...)
		b = appendString(b, m.Status)
		b = appendInt(b, "seq", m.Seq)
		b = appendFloat(b, "percentage", m.Percentage)
		b = append(b, `,"message":`...)
		b = appendString(b, m.Message)
		if len(m.Result) > 0 {
			b = appendRaw(b, "result", m.Result)
		}
		if m.Chunks > 0 {
			b = appendInt(b, "chunks", int64(m.Chunks))
		}
		b = appendError(b, m.Error)
		b = appendInt(b, "created_at", m.CreatedAt)
		b = appendInt(b, "updated_at", m.UpdatedAt)
	case TypeStarted, TypeContinued, TypeRetrying:
		b = appendInt(b, "seq", m.Seq)
		b = appendInt(b, "attempt", int64(m.Attempt))
		if m.Type == TypeContinued {
			b = appendInt(b, "continuations", int64(m.Continuations))
		}
		if m.Type == TypeRetrying {
			b = appendInt(b, "next_at", m.NextAt)
			b = appendError(b, m.Error)
		}
		b = appendFloat(b, "percentage", m.Percentage)
		b = append(b, `,"message":`...)
		b = appendString(b, m.Message)
	case TypeActions:
		list := m.Actions
		if list == nil {
			list = []ActionInfo{}
		}
		raw, _ := json.Marshal(list)
		b = appendRaw(b, "actions", raw)
	case TypeList:
		b = appendList(b, m)
	}
	if m.Timestamp != 0 {
		b = appendInt(b, "timestamp", m.Timestamp)
	}
	return append(b, '}')
}

func appendInt(b []byte, key string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func appendFloat(b []byte, key string, v float64) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

func appendRaw(b []byte, key string, raw []byte) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	if len(raw) == 0 {
		return append(b, "null"...)
	}
	return append(b, raw...)
}

func appendError(b []byte, e *ErrorBody) []byte {
	if e == nil {
		return b
	}
	b = append(b, `,"error":{"code":`...)
	b = appendString(b, e.Code)
	b = append(b, `,"message":`...)
	b = appendString(b, e.Message)
	if len(e.Details) > 0 {
		b = appendRaw(b, "details", e.Details)
	}
	if e.Retryable {
		b = append(b, `,"retryable":true`...)
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript eval; escape
		// them as encoding/json does.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// quotedLen returns the length of s encoded by appendString.
func quotedLen(s string) int {
	n := 2
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20:
				n += 6
			default:
				n++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1, r == '\u2028', r == '\u2029':
			n += 6
		default:
			n += size
		}
		i += size
	}
	return n
}
