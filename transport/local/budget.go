package local

import (
	"fmt"

	"github.com/streamer-go/streamer/transport"
)

// reserveOut counts n outbound bytes against lc's budget and the server's
// cap. Over either, it counts nothing, closes lc (1008 for its own budget,
// 1013 for the server's cap) and returns an error wrapping
// transport.ErrGone. Otherwise the caller must call releaseOut(lc, n).
func (g *Gateway) reserveOut(lc *liveConn, n int64) error {
	if held := lc.outBytes.Add(n); g.cfg.MaxOutboundBytes > 0 && held > g.cfg.MaxOutboundBytes {
		lc.outBytes.Add(-n)
		reason := fmt.Sprintf("outbound queue over its budget of %d bytes: the client reads too slowly", g.cfg.MaxOutboundBytes)
		g.log.Warn().Str("connection_id", lc.c.ID).Int64("bytes", held).Msg("local: " + reason)
		g.requestClose(lc, StatusPolicyViolation, reason)
		return fmt.Errorf("%s: %w", reason, transport.ErrGone)
	}
	if held := g.outBytes.Add(n); g.cfg.MaxServerOutboundBytes > 0 && held > g.cfg.MaxServerOutboundBytes {
		g.outBytes.Add(-n)
		lc.outBytes.Add(-n)
		reason := fmt.Sprintf("server outbound memory over its cap of %d bytes: try again later", g.cfg.MaxServerOutboundBytes)
		g.log.Warn().Str("connection_id", lc.c.ID).Int64("bytes", held).Msg("local: " + reason)
		g.requestClose(lc, StatusTryAgainLater, reason)
		return fmt.Errorf("%s: %w", reason, transport.ErrGone)
	}
	return nil
}

func (g *Gateway) releaseOut(lc *liveConn, n int64) {
	lc.outBytes.Add(-n)
	g.outBytes.Add(-n)
}

// reserveIn counts an inbound message of n bytes against lc's budget.
// Over it, it counts nothing, closes lc with 1008 and returns false.
// Otherwise handle releases the bytes once the message is handled.
func (g *Gateway) reserveIn(lc *liveConn, n int64) bool {
	if held := lc.inBytes.Add(n); g.cfg.MaxInboundBytes > 0 && held > g.cfg.MaxInboundBytes {
		lc.inBytes.Add(-n)
		reason := fmt.Sprintf("inbound messages in flight over their budget of %d bytes", g.cfg.MaxInboundBytes)
		g.log.Warn().Str("connection_id", lc.c.ID).Int64("bytes", held).Msg("local: " + reason)
		g.requestClose(lc, StatusPolicyViolation, reason)
		return false
	}
	return true
}

// handle runs Message for m and releases its inbound bytes.
func (g *Gateway) handle(lc *liveConn, m Inbound) {
	defer lc.inBytes.Add(-int64(len(m.Data)))
	g.message(lc, m)
}

// OutboundBytes returns the outbound bytes the gateway holds in memory
// now, over all connections: the messages of Send calls waiting for, or
// in, a write (see Config.MaxServerOutboundBytes).
func (g *Gateway) OutboundBytes() int64 { return g.outBytes.Load() }
