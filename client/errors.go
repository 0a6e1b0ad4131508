package client

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/streamer-go/streamer"
)

// Sentinel errors. Branch on them with errors.Is.
var (
	// ErrUnauthorized is wrapped by the error of a connection attempt that
	// the server refused with HTTP 401 (a missing, expired or bad token).
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrClosed is returned by calls made on, or pending at, a closed
	// client.
	ErrClosed = errors.New("client: closed")
	// ErrDisconnected is wrapped by the error of calls pending when the
	// client gave up reconnecting (see [Options.MaxReconnects]), and of
	// every call made after.
	ErrDisconnected = errors.New("client: disconnected")
	// ErrInvalidArgument is wrapped when an argument breaks the protocol's
	// rules (an action or id outside 1-128 characters of [A-Za-z0-9_.:-],
	// a reserved action given to Request, a negative seq); nothing is sent.
	ErrInvalidArgument = errors.New("client: invalid argument")
	// ErrTooLarge is wrapped when a frame would exceed the protocol's
	// 128 KiB message limit; nothing is sent.
	ErrTooLarge = errors.New("client: message too large")
	// ErrInFlight is wrapped when a request id is already used by a
	// Request or Resume pending on the same client.
	ErrInFlight = errors.New("client: request id already in flight")
	// ErrInvalidResult is wrapped when a result sent in chunks cannot be
	// reassembled: a chunk is missing or malformed, or the joined text is
	// not JSON.
	ErrInvalidResult = errors.New("client: invalid result")
)

// Error is a failure reported by the server: an error message, a failed
// synchronous response (success false) or a terminal error event of an
// asynchronous request. Code is the protocol code, such as NOT_FOUND or
// CANCELED, or a handler's own upper snake case code.
type Error struct {
	// RequestID is the request the error is about, when the server said.
	RequestID string
	// Code is the protocol error code.
	Code string
	// Message is the server's explanation, safe to show.
	Message string
	// Details is optional structured data, such as the field list of a
	// VALIDATION_ERROR or retry_after_ms of RATE_LIMITED and UNAVAILABLE
	// (see [Error.RetryAfter]).
	Details json.RawMessage
	// Retryable reports that the server marked the failure worth retrying.
	Retryable bool
}

// RetryAfter returns how long the server asked to wait before retrying:
// details.retry_after_ms of a RATE_LIMITED or UNAVAILABLE error (or of any
// error that carries it). ok is false when the error carries none.
//
// UNAVAILABLE means the server could not serve the call for now (its
// storage failed or was throttled); it is Retryable. The client does not
// retry it by itself: the caller may send the call again after RetryAfter,
// a request with the same id (see [WithID]) so that one stored after all is
// attached to rather than run twice, and should give up after a few tries.
func (e *Error) RetryAfter() (d time.Duration, ok bool) {
	if len(e.Details) == 0 {
		return 0, false
	}
	var v struct {
		RetryAfterMS *float64 `json:"retry_after_ms"`
	}
	if json.Unmarshal(e.Details, &v) != nil || v.RetryAfterMS == nil || *v.RetryAfterMS < 0 {
		return 0, false
	}
	return time.Duration(*v.RetryAfterMS * float64(time.Millisecond)), true
}

// IsUnavailable reports whether err's chain holds an [*Error] with code
// UNAVAILABLE: the server could not serve the call for now, and a retry
// after [Error.RetryAfter] may succeed.
func IsUnavailable(err error) bool {
	return CodeOf(err) == streamer.CodeUnavailable
}

// Error returns "client: CODE: message".
func (e *Error) Error() string {
	return "client: " + e.Code + ": " + e.Message
}

// CodeOf returns the code of the first [*Error] in err's chain, or "" when
// there is none.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// newError converts a wire error body. A missing body becomes
// INTERNAL_ERROR, so callers always get a code.
func newError(requestID string, b *streamer.ErrorBody) *Error {
	if b == nil {
		return &Error{
			RequestID: requestID,
			Code:      streamer.CodeInternal,
			Message:   "the server reported a failure without an error body",
		}
	}
	return &Error{
		RequestID: requestID,
		Code:      b.Code,
		Message:   b.Message,
		Details:   b.Details,
		Retryable: b.Retryable,
	}
}

// IsRateLimited reports whether err's chain holds an [*Error] with code
// RATE_LIMITED: the server refused the call because its sender is over a
// rate limit, and nothing was stored or run. It is Retryable, and
// [Error.RetryAfter] says when the bucket will admit the call. The client
// does not retry it by itself: the caller decides whether to wait and send
// it again (with the same id, see [WithID]) or to give up.
func IsRateLimited(err error) bool {
	return CodeOf(err) == streamer.CodeRateLimited
}
