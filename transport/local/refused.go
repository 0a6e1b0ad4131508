package local

import (
	"math"
	"net/http"
	"strconv"
	"time"
)

// RefusedError is an error [Handler.Connect] may return to refuse the
// connection with an HTTP status of its choice, before the upgrade, as a
// $connect integration's response does on API Gateway: the local AWS
// runtime (lambdas/awslocal) returns one for the connect handler's 429.
type RefusedError struct {
	// Status is the HTTP status of the refusal, a 4xx (any other is
	// answered 500).
	Status int
	// Message is the response's plain-text body.
	Message string
	// RetryAfter, when positive, is sent as the Retry-After header, in
	// whole seconds rounded up.
	RetryAfter time.Duration
}

// Error describes the refusal.
func (e *RefusedError) Error() string {
	return "local: connect refused with HTTP " + strconv.Itoa(e.Status) + ": " + e.Message
}

// write answers the upgrade request with the refusal.
func (e *RefusedError) write(w http.ResponseWriter) {
	if e.Status < 400 || e.Status > 499 {
		writeText(w, http.StatusInternalServerError, "internal error")
		return
	}
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(math.Ceil(e.RetryAfter.Seconds())), 10))
	}
	writeText(w, e.Status, e.Message)
}
