// Package transport defines how Streamer sends messages to connected clients.
//
// A [Sender] posts one message to one connection. Implementations:
// transport/local (the embedded WebSocket gateway) and transport/apigateway
// (API Gateway's Management API).
package transport

import (
	"context"
	"errors"
)

// ErrGone is returned by a [Sender] when the connection no longer exists.
// Callers drop the connection and its subscriptions; they never drop the
// events they were sending (events are stored first).
var ErrGone = errors.New("transport: connection gone")

// Sender posts messages to connections.
type Sender interface {
	// Send posts data, one complete protocol message, to a connection. It
	// returns an error wrapping ErrGone when the connection is gone.
	// endpoint is the connection's stored endpoint, which a transport may
	// use to find where to post ("" when unknown). Send is safe for
	// concurrent use and honours ctx.
	Send(ctx context.Context, endpoint, connID string, data []byte) error
}

// Disconnecter is implemented by senders that can close a connection.
type Disconnecter interface {
	// Disconnect closes a connection. A gone connection wraps ErrGone.
	Disconnect(ctx context.Context, endpoint, connID string) error
}

// SenderFunc adapts a function to [Sender].
type SenderFunc func(ctx context.Context, endpoint, connID string, data []byte) error

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, endpoint, connID string, data []byte) error {
	return f(ctx, endpoint, connID, data)
}
