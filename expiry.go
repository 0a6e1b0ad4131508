package streamer

import (
	"context"
	"time"

	"github.com/streamer-go/streamer/transport"
)

// DefaultTokenLeeway is the clock skew tolerated on a connection's token
// expiry when [Config.TokenLeeway] is zero. It equals the leeway of the
// middleware package's JWT verifier.
const DefaultTokenLeeway = 30 * time.Second

// TokenDeadline is when the router starts refusing p's frames: its token's
// expiry plus [Config.TokenLeeway]. The zero time means never (a principal
// without ExpiresAt). A gateway that can close connections on its own (the
// local gateway) closes the connection then, so that nothing, progress
// included, reaches it afterwards.
func (a *App) TokenDeadline(p *Principal) time.Time {
	if p == nil || p.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return p.ExpiresAt.Add(a.tokenLeeway())
}

func (a *App) tokenLeeway() time.Duration {
	switch l := a.cfg.TokenLeeway; {
	case l == 0:
		return DefaultTokenLeeway
	case l < 0:
		return 0
	default:
		return l
	}
}

// tokenExpired reports whether p's token expired, beyond the leeway.
func (a *App) tokenExpired(p *Principal) bool {
	d := a.TokenDeadline(p)
	return !d.IsZero() && a.now().After(d)
}

// refuseExpired answers a frame of a connection whose token expired with
// UNAUTHORIZED, then closes the connection when the Sender can (API
// Gateway's DeleteConnection, the local gateway's Disconnect): a client
// must reconnect with a new token, and a closed connection gets no more
// progress.
func (a *App) refuseExpired(ctx context.Context, conn Conn, requestID string) {
	a.replyError(ctx, conn, requestID, NewError(CodeUnauthorized, "the token has expired; reconnect with a new token"))
	d, ok := a.cfg.Sender.(transport.Disconnecter)
	if !ok {
		return
	}
	if err := d.Disconnect(ctx, conn.Endpoint, conn.ID); err != nil {
		a.log.Debug().Err(err).Str("connection_id", conn.ID).Msg("expired connection not closed")
	}
}

// subscriptionExpiry is when a subscription made by a connection of
// principal p ends: with the connection (Config.ConnectionTTL), or with its
// token (TokenDeadline) when that is sooner, so a processor stops sending
// to a connection whose token expired without a read of its own: the
// store leaves the expired subscription out.
func (a *App) subscriptionExpiry(p *Principal) time.Time {
	until := a.now().Add(a.cfg.ConnectionTTL)
	if d := a.TokenDeadline(p); !d.IsZero() && d.Before(until) {
		return d
	}
	return until
}
