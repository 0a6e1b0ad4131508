package local

import (
	"net/http"
	"time"
)

// Timeouts of the HTTP servers of the embedded runtime ([NewHTTPServer]).
const (
	// DefaultHTTPIdleTimeout closes a keep-alive connection that carries
	// no request for this long (one that never upgrades, say): 2 minutes.
	// An upgraded WebSocket is no longer the HTTP server's, and has
	// Config.IdleTimeout instead.
	DefaultHTTPIdleTimeout = 2 * time.Minute
	// DefaultReadHeaderTimeout bounds the reading of a request's headers:
	// 10 seconds.
	DefaultReadHeaderTimeout = 10 * time.Second
)

// NewHTTPServer returns an http.Server for h with a ReadHeaderTimeout of
// [DefaultReadHeaderTimeout] and an IdleTimeout of idle, or of
// [DefaultHTTPIdleTimeout] when idle is 0. Every HTTP server of the
// embedded runtime (devserver, awslocal, its Lambda service, the local blob
// servers) is made with it, so that no connection is held forever by a
// client that sends nothing.
func NewHTTPServer(h http.Handler, idle time.Duration) *http.Server {
	if idle <= 0 {
		idle = DefaultHTTPIdleTimeout
	}
	return &http.Server{Handler: h, ReadHeaderTimeout: DefaultReadHeaderTimeout, IdleTimeout: idle}
}
