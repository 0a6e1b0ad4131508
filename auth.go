package streamer

import (
	"context"
	"errors"
)

// ErrUnauthorized is wrapped by [Authenticator] errors: the connection is
// refused at the handshake with HTTP 401.
var ErrUnauthorized = errors.New("streamer: unauthorized")

// Authenticator verifies the token a client presents when it connects and
// returns its principal. Failures wrap [ErrUnauthorized] and say why, for
// the logs; the client only sees 401. The JWT implementation is in the
// middleware package.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (Principal, error)
}

// AuthenticatorFunc adapts a function to [Authenticator].
type AuthenticatorFunc func(ctx context.Context, token string) (Principal, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, token string) (Principal, error) {
	return f(ctx, token)
}
