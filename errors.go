package streamer

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/streamer-go/streamer/storage"
)

// Error codes of the wire protocol. A handler may use its own codes (upper
// snake case); they are passed through to the client.
const (
	CodeInvalidMessage   = "INVALID_MESSAGE"
	CodeInvalidAction    = "INVALID_ACTION"
	CodeValidation       = "VALIDATION_ERROR"
	CodeUnauthorized     = "UNAUTHORIZED"
	CodeForbidden        = "FORBIDDEN"
	CodeNotFound         = "NOT_FOUND"
	CodeConflict         = "CONFLICT"
	CodeRateLimited      = "RATE_LIMITED"
	CodePayloadTooLarge  = "PAYLOAD_TOO_LARGE"
	CodeTimeout          = "TIMEOUT"
	CodeCanceled         = "CANCELED"
	CodeProcessingFailed = "PROCESSING_FAILED"
	CodeInternal         = "INTERNAL_ERROR"
	// CodeUnavailable means the server could not serve the frame for now
	// (its storage failed or was throttled); nothing was changed that a
	// retry would repeat. It is retryable, and details.retry_after_ms says
	// when to try again. See [Unavailable].
	CodeUnavailable = "UNAVAILABLE"
)

// UnavailableRetryAfter is the retry_after_ms of the UNAVAILABLE errors the
// router answers when its storage fails.
const UnavailableRetryAfter = time.Second

// RetryAfter is the details of RATE_LIMITED and UNAVAILABLE errors.
type RetryAfter struct {
	// RetryAfterMS is how long to wait before retrying, in milliseconds.
	RetryAfterMS int64 `json:"retry_after_ms"`
}

// Unavailable returns a retryable UNAVAILABLE error whose details say to
// retry after d (rounded up to a millisecond). Handlers may return it when
// a service they depend on is down for now.
func Unavailable(d time.Duration) *Error {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return &Error{
		Code: CodeUnavailable, Message: "the service is unavailable for now; retry later",
		Details: RetryAfter{RetryAfterMS: int64(max(ms, 0))}, Retryable: true,
	}
}

// RateLimited returns a retryable RATE_LIMITED error whose details say to
// retry after d (rounded up to a millisecond), as the rate-limit
// middleware sends it.
func RateLimited(d time.Duration) *Error {
	ms := (d + time.Millisecond - 1) / time.Millisecond
	return &Error{
		Code: CodeRateLimited, Message: "too many requests; retry later",
		Details: RetryAfter{RetryAfterMS: int64(max(ms, 0))}, Retryable: true,
	}
}

// Error is an error with a protocol code, sent to the client as the error
// body {code, message, details, retryable}. Handlers return it to choose the
// code the client sees.
type Error struct {
	// Code is upper snake case, such as VALIDATION_ERROR.
	Code string
	// Message is safe to show to the client.
	Message string
	// Details is optional structured data, marshaled with encoding/json.
	Details any
	// Retryable marks a failure worth retrying. The processor re-queues
	// retryable failures of async requests per the action's RetryPolicy,
	// and the flag is sent to the client.
	Retryable bool

	cause error
}

// NewError returns an error with the given code and message.
func NewError(code, message string) *Error {
	return &Error{Code: code, Message: message}
}

// Errorf returns an error with the given code and a formatted message. The
// message is sent to the client: never format internals into it.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WithDetails returns a copy of e with details set.
func (e *Error) WithDetails(details any) *Error {
	c := *e
	c.Details = details
	return &c
}

// WithCause returns a copy of e that wraps cause. The cause is logged and
// reachable with errors.Is/As, but never sent to the client.
func (e *Error) WithCause(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// Error returns "CODE: message".
func (e *Error) Error() string {
	if e.cause != nil {
		return e.Code + ": " + e.Message + ": " + e.cause.Error()
	}
	return e.Code + ": " + e.Message
}

// Unwrap returns the cause given to WithCause.
func (e *Error) Unwrap() error { return e.cause }

// Retryable marks err as worth retrying: the processor re-queues the request
// with backoff instead of failing it, within the action's RetryPolicy. The
// code is kept if err is an [*Error], and PROCESSING_FAILED otherwise.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	var se *Error
	if errors.As(err, &se) {
		c := *se
		c.Retryable = true
		return &c
	}
	return &Error{Code: CodeProcessingFailed, Message: "handler failed", Retryable: true, cause: err}
}

// CodeOf returns the protocol code of err: the code of the first [*Error] in
// its chain, or INTERNAL_ERROR. It returns "" for nil.
func CodeOf(err error) string {
	if err == nil {
		return ""
	}
	var se *Error
	if errors.As(err, &se) {
		return se.Code
	}
	return CodeInternal
}

// FieldError is one entry of a VALIDATION_ERROR's details.
type FieldError struct {
	// Field is the JSON name of the field, dotted for nested fields.
	Field string `json:"field"`
	// Rule is the validation rule that failed, such as "required".
	Rule string `json:"rule"`
	// Message explains the failure to a person.
	Message string `json:"message"`
}

var codePattern = regexp.MustCompile(`^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$`)

// ValidCode reports whether code is upper snake case, as protocol codes are.
func ValidCode(code string) bool { return len(code) <= 64 && codePattern.MatchString(code) }

// ErrorBody is the error object of the protocol's error and response
// messages: {code, message, details?, retryable?}. It is also how storage
// keeps a failure.
type ErrorBody = storage.ErrorInfo

// Body returns the wire form of err. Errors that are not an [*Error] become
// fallbackCode with a generic message, so no internals leak.
func Body(err error, fallbackCode string) *ErrorBody {
	var se *Error
	if !errors.As(err, &se) {
		return &ErrorBody{Code: fallbackCode, Message: genericMessage(fallbackCode)}
	}
	b := &ErrorBody{Code: se.Code, Message: se.Message, Retryable: se.Retryable}
	if !ValidCode(b.Code) {
		b.Code = fallbackCode
	}
	if se.Details != nil {
		if raw, ok := se.Details.(json.RawMessage); ok {
			b.Details = raw
		} else if d, mErr := json.Marshal(se.Details); mErr == nil {
			b.Details = d
		}
	}
	return b
}

func genericMessage(code string) string {
	switch code {
	case CodeInternal:
		return "internal error"
	case CodeProcessingFailed:
		return "processing failed"
	case CodeTimeout:
		return "the handler ran past its deadline"
	case CodeCanceled:
		return "the request was canceled"
	default:
		return "request failed"
	}
}
