package local

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/transport"
)

// Defaults of [Config], API Gateway's limits.
const (
	DefaultIdleTimeout    = 10 * time.Minute
	DefaultMaxLifetime    = 2 * time.Hour
	DefaultMaxMessageSize = 128 << 10 // 131072 bytes
	DefaultMaxInFlight    = 16
	DefaultWriteTimeout   = 10 * time.Second
	// DefaultMaxOutboundBytes is the default of Config.MaxOutboundBytes:
	// 1 MiB of messages waiting for, or in, a write to one connection.
	DefaultMaxOutboundBytes = 1 << 20
	// DefaultMaxInboundBytes is the default of Config.MaxInboundBytes: 1 MiB
	// of received messages whose Handler.Message call has not returned.
	DefaultMaxInboundBytes = 1 << 20
	// DefaultMaxServerOutboundBytes is the default of
	// Config.MaxServerOutboundBytes: 256 MiB over all connections.
	DefaultMaxServerOutboundBytes = 256 << 20
)

// Close codes of the byte budgets (see [Config.MaxOutboundBytes]).
const (
	// StatusPolicyViolation (1008) closes a connection over its own byte
	// budget: a client that does not read its messages, or sends faster
	// than they are handled.
	StatusPolicyViolation = websocket.StatusPolicyViolation
	// StatusTryAgainLater (1013) closes a connection whose message would
	// take the server over Config.MaxServerOutboundBytes.
	StatusTryAgainLater = websocket.StatusTryAgainLater
)

// ErrTooLarge is wrapped by [Gateway.Send] when a message is larger than
// [Config.MaxMessageSize]. The connection is not gone: the caller should
// send something smaller.
var ErrTooLarge = errors.New("local: message too large")

// Config configures a [Gateway]. Zero values mean the defaults.
type Config struct {
	// Handler is invoked on connect, on every inbound message and on
	// disconnect. Required.
	Handler Handler
	// IdleTimeout closes a connection (status 1001, going away) that has
	// received no data message for this long. Default 10 minutes.
	IdleTimeout time.Duration
	// MaxLifetime closes any connection this old (status 1001). Default 2
	// hours.
	MaxLifetime time.Duration
	// MaxMessageSize is the largest message in bytes, in both directions.
	// A larger inbound message closes the connection with status 1009; a
	// larger outbound one is refused with [ErrTooLarge]. Default 131072.
	MaxMessageSize int64
	// MaxInFlight is the number of concurrent [Handler.Message] calls per
	// connection. Beyond it the gateway stops reading from the connection
	// until a call returns. Default 16.
	MaxInFlight int
	// WriteTimeout bounds the write of one message. A write that times out
	// closes the connection (a partial frame cannot be recovered). Default
	// 10 seconds.
	WriteTimeout time.Duration
	// MaxOutboundBytes is the byte budget of one connection's outbound
	// queue: the messages that Send calls are waiting to write, or writing.
	// A Send that would exceed it is refused (transport.ErrGone) and closes
	// the connection with status 1008 (policy violation) and a reason
	// naming the budget: the client does not read what it is sent. Default
	// 1 MiB ([DefaultMaxOutboundBytes]); negative means no budget.
	MaxOutboundBytes int64
	// MaxInboundBytes is the byte budget of one connection's inbound
	// messages in flight: received and not yet handled (their
	// Handler.Message call has not returned). A message that would exceed
	// it closes the connection with status 1008 and a reason naming the
	// budget. Default 1 MiB ([DefaultMaxInboundBytes]); negative means no
	// budget (MaxInFlight × MaxMessageSize still bounds it).
	MaxInboundBytes int64
	// MaxServerOutboundBytes caps the outbound bytes held in memory by all
	// connections together. A Send that would exceed it is refused
	// (transport.ErrGone) and closes its connection with status 1013 (try
	// again later). Default 256 MiB ([DefaultMaxServerOutboundBytes]);
	// negative means no cap.
	MaxServerOutboundBytes int64
	// PrincipalOf names the principal of a connection whose Connect
	// succeeded (from c.Value, say), for the per-principal limits below.
	// Nil, or an empty name, means no per-principal limits for it.
	PrincipalOf func(c *Conn) string
	// MaxConnectionsPerPrincipal caps a principal's open connections: the
	// connection over it is refused with HTTP 429 after Connect, before
	// the upgrade (Disconnect is still called for it). Default 100
	// ([DefaultMaxConnectionsPerPrincipal]); negative means no cap.
	MaxConnectionsPerPrincipal int
	// NewConnectionsPerPrincipal limits how fast a principal opens
	// connections (429 over it, after Connect). Default 20 a second,
	// bursts of 100.
	NewConnectionsPerPrincipal Rate
	// NewConnectionsPerIP limits how fast one source address (the host of
	// RemoteAddr) opens connections: over it the upgrade request is
	// refused with HTTP 429 before Connect runs. Default 100 a second,
	// bursts of 200.
	NewConnectionsPerIP Rate
	// Logger receives the gateway's logs. The zero value is quiet.
	Logger zerolog.Logger
	// NewID makes connection ids. It must return a non-empty string without
	// "/"; an id already in use is replaced by another call. Default: 12
	// crypto-random bytes, base64 RawURLEncoding (URL safe, like API
	// Gateway's ids).
	NewID func() string
	// OriginPatterns lists the origins allowed to connect, as in
	// websocket.AcceptOptions (path.Match patterns of host, or of
	// scheme://host). Same-origin requests and requests without Origin are
	// always allowed. Default (empty): any origin, as suits a dev server.
	OriginPatterns []string
}

// Handler is what the gateway invokes, like API Gateway's $connect,
// $default and $disconnect routes. Its methods are called concurrently.
type Handler interface {
	// Connect runs before the WebSocket upgrade, with the upgrade request's
	// context. An error wrapping streamer.ErrUnauthorized refuses the
	// connection with HTTP 401, a [*RefusedError] with its status (such as
	// 429); any other error with HTTP 500. Connect may
	// set c.Value (for example to the principal); nothing else may change c.
	// Messages cannot be sent to c until Connect has returned.
	Connect(ctx context.Context, c *Conn) error
	// Message runs once per inbound data message, concurrently with other
	// calls for the same connection (at most Config.MaxInFlight at a time),
	// like a Lambda invocation: so messages of one connection may be
	// handled out of order. Its context ends only when the gateway is
	// forced to stop (see Gateway.Close), not when the connection closes.
	Message(ctx context.Context, c *Conn, m Inbound)
	// Disconnect runs exactly once per connection whose Connect succeeded,
	// after it closed for any reason (client close, idle timeout, maximum
	// lifetime, Gateway.Disconnect, Gateway.Close, a failed upgrade). Like
	// API Gateway's $disconnect, it may run while Message calls of that
	// connection are still in flight.
	Disconnect(ctx context.Context, c *Conn)
}

// Inbound is one message received from a client.
type Inbound struct {
	// Data is the message's payload.
	Data []byte
	// Binary is true for a binary frame. Only text frames are protocol
	// messages; a handler answers binary ones with INVALID_MESSAGE.
	Binary bool
}

// Conn describes one client connection. The gateway never changes it after
// Connect returns, so it is safe to read from any goroutine.
type Conn struct {
	// ID identifies the connection to Send, Disconnect and the Management
	// API.
	ID string
	// Request is the upgrade request, for its headers and query. Its
	// context and body must not be used after Connect returns.
	Request *http.Request
	// RemoteAddr is the client's network address (host:port).
	RemoteAddr string
	// ConnectedAt is when the upgrade request arrived.
	ConnectedAt time.Time
	// Value is free for the Handler, which may set it in Connect (for
	// example to the principal) and read it later.
	Value any
	// ExpiresAt, when Connect sets it, is when the connection's credentials
	// run out (its token's expiry plus leeway): the gateway then closes it
	// with status 1008 (policy violation) and reason "token expired", so
	// that nothing more is sent to it. Zero means never.
	ExpiresAt time.Time
}

// ReasonTokenExpired is the close reason of a connection closed at its
// [Conn.ExpiresAt], with status 1008.
const ReasonTokenExpired = "token expired"

// Gateway is an embedded WebSocket gateway. Create it with [New], serve
// WebSockets with [Gateway.ServeHTTP] and stop it with [Gateway.Close]. All
// methods are safe for concurrent use.
type Gateway struct {
	cfg     Config
	handler Handler
	log     zerolog.Logger

	baseCtx    context.Context
	cancelBase context.CancelFunc

	mu      sync.Mutex
	conns   map[string]*liveConn
	pending map[string]struct{} // ids reserved by handshakes in progress
	closed  bool
	wg      sync.WaitGroup // ServeHTTP calls (with their connections) and Message calls

	outBytes atomic.Int64 // outbound bytes held by all connections (see Config.MaxServerOutboundBytes)

	open          map[string]int // open connections by principal, under mu
	ipRate        *buckets
	principalRate *buckets
}

var (
	_ http.Handler           = (*Gateway)(nil)
	_ transport.Sender       = (*Gateway)(nil)
	_ transport.Disconnecter = (*Gateway)(nil)
)

// New validates cfg, fills in its defaults and returns a gateway. The error
// names the first invalid field.
func New(cfg Config) (*Gateway, error) {
	if cfg.Handler == nil {
		return nil, errors.New("local: Config.Handler is required")
	}
	if cfg.IdleTimeout < 0 {
		return nil, fmt.Errorf("local: Config.IdleTimeout is negative (%s)", cfg.IdleTimeout)
	}
	if cfg.MaxLifetime < 0 {
		return nil, fmt.Errorf("local: Config.MaxLifetime is negative (%s)", cfg.MaxLifetime)
	}
	if cfg.MaxMessageSize < 0 {
		return nil, fmt.Errorf("local: Config.MaxMessageSize is negative (%d)", cfg.MaxMessageSize)
	}
	if cfg.MaxInFlight < 0 {
		return nil, fmt.Errorf("local: Config.MaxInFlight is negative (%d)", cfg.MaxInFlight)
	}
	if cfg.WriteTimeout < 0 {
		return nil, fmt.Errorf("local: Config.WriteTimeout is negative (%s)", cfg.WriteTimeout)
	}
	for _, p := range cfg.OriginPatterns {
		if _, err := path.Match(p, ""); err != nil {
			return nil, fmt.Errorf("local: Config.OriginPatterns: pattern %q: %w", p, err)
		}
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.NewID == nil {
		cfg.NewID = newID
	}
	if cfg.MaxConnectionsPerPrincipal == 0 {
		cfg.MaxConnectionsPerPrincipal = DefaultMaxConnectionsPerPrincipal
	}
	cfg.NewConnectionsPerIP = cfg.NewConnectionsPerIP.orDefault(DefaultNewConnectionsPerIPRate, DefaultNewConnectionsPerIPBurst)
	cfg.NewConnectionsPerPrincipal = cfg.NewConnectionsPerPrincipal.orDefault(DefaultNewConnectionsPerPrincipalRate, DefaultNewConnectionsPerPrincipalBurst)
	if cfg.MaxOutboundBytes == 0 {
		cfg.MaxOutboundBytes = DefaultMaxOutboundBytes
	}
	if cfg.MaxInboundBytes == 0 {
		cfg.MaxInboundBytes = DefaultMaxInboundBytes
	}
	if cfg.MaxServerOutboundBytes == 0 {
		cfg.MaxServerOutboundBytes = DefaultMaxServerOutboundBytes
	}
	cfg.OriginPatterns = append([]string(nil), cfg.OriginPatterns...)
	ctx, cancel := context.WithCancel(context.Background())
	return &Gateway{
		cfg:        cfg,
		handler:    cfg.Handler,
		log:        cfg.Logger,
		baseCtx:    ctx,
		cancelBase: cancel,
		conns:      make(map[string]*liveConn),
		pending:    make(map[string]struct{}),
		open:       make(map[string]int),

		ipRate:        newBuckets(cfg.NewConnectionsPerIP),
		principalRate: newBuckets(cfg.NewConnectionsPerPrincipal),
	}, nil
}

func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (it crashes the program instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ServeHTTP is the WebSocket endpoint. It calls [Handler.Connect] before
// upgrading, then serves the connection until it closes and calls
// [Handler.Disconnect]; so it blocks for the connection's lifetime.
// Requests that are not WebSocket upgrades get 426, a refused origin 403,
// and a gateway that is closing 503; Connect is not called for them.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !isUpgrade(r) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "expected a WebSocket upgrade", http.StatusUpgradeRequired)
		return
	}
	if !g.originAllowed(r) {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	if !g.ipRate.take(sourceIP(r.RemoteAddr), time.Now()) {
		g.log.Debug().Str("remote_addr", r.RemoteAddr).Msg("local: too many new connections from this address")
		w.Header().Set("Retry-After", "1")
		writeText(w, http.StatusTooManyRequests, "too many new connections from this address: try again later")
		return
	}
	id, ok, err := g.reserve()
	if !ok {
		http.Error(w, "server is shutting down", http.StatusServiceUnavailable)
		return
	}
	defer g.wg.Done()
	if err != nil {
		g.log.Error().Err(err).Msg("local: new connection id")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}

	c := &Conn{ID: id, Request: r, RemoteAddr: r.RemoteAddr, ConnectedAt: time.Now()}
	if err := g.connectApart(r.Context(), c); err != nil {
		g.release(id)
		if errors.Is(err, streamer.ErrUnauthorized) {
			g.log.Debug().Err(err).Str("connection_id", id).Str("remote_addr", r.RemoteAddr).Msg("local: connect refused")
			writeText(w, http.StatusUnauthorized, "unauthorized")
			return
		}
		if refused := (*RefusedError)(nil); errors.As(err, &refused) {
			g.log.Debug().Err(err).Str("connection_id", id).Str("remote_addr", r.RemoteAddr).Msg("local: connect refused")
			refused.write(w)
			return
		}
		g.log.Error().Err(err).Str("connection_id", id).Msg("local: connect failed")
		writeText(w, http.StatusInternalServerError, "internal error")
		return
	}

	var leave func() // gives the principal's connection back, when counted
	if g.cfg.PrincipalOf != nil {
		if principal := g.cfg.PrincipalOf(c); principal != "" {
			ok, reason := g.admitPrincipal(principal, time.Now())
			if !ok {
				g.release(id)
				g.log.Debug().Str("connection_id", id).Str("principal", principal).Msg("local: connect refused: " + reason)
				w.Header().Set("Retry-After", "1")
				writeText(w, http.StatusTooManyRequests, reason)
				g.disconnect(c) // Connect succeeded: the handler is owed its Disconnect
				return
			}
			leave = func() { g.leavePrincipal(principal) }
		}
	}

	opts := &websocket.AcceptOptions{
		OriginPatterns:     g.cfg.OriginPatterns,
		InsecureSkipVerify: len(g.cfg.OriginPatterns) == 0,
		CompressionMode:    websocket.CompressionDisabled,
	}
	ws, err := websocket.Accept(w, r, opts)
	if err != nil {
		// Accept has answered the request. Connect succeeded, so the
		// handler is owed its Disconnect.
		g.release(id)
		g.log.Debug().Err(err).Str("connection_id", id).Msg("local: upgrade failed")
		g.disconnect(c)
		if leave != nil {
			leave()
		}
		return
	}
	ws.SetReadLimit(g.cfg.MaxMessageSize)

	lc := newLiveConn(c, ws, g.log)
	g.mu.Lock()
	delete(g.pending, id)
	closing := g.closed
	if !closing {
		g.conns[id] = lc
	}
	g.mu.Unlock()
	if closing {
		lc.requestClose(websocket.StatusGoingAway, "server shutting down")
	}
	g.log.Debug().Str("connection_id", id).Str("remote_addr", r.RemoteAddr).Msg("local: connected")

	lc.onEnd = func() {
		g.log.Debug().Str("connection_id", id).Msg("local: disconnected")
		g.disconnect(c)
		if leave != nil {
			leave()
		}
	}
	g.serve(lc)
}

// reserve registers a ServeHTTP call with the wait group and reserves a
// fresh connection id. ok is false when the gateway is closed (then nothing
// was registered); otherwise the caller must call g.wg.Done.
func (g *Gateway) reserve() (id string, ok bool, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return "", false, nil
	}
	g.wg.Add(1)
	const attempts = 8
	for range attempts {
		id = g.cfg.NewID()
		if id == "" || strings.Contains(id, "/") {
			return "", true, fmt.Errorf("local: Config.NewID returned an invalid id %q", id)
		}
		_, live := g.conns[id]
		_, pending := g.pending[id]
		if !live && !pending {
			g.pending[id] = struct{}{}
			return id, true, nil
		}
	}
	return "", true, fmt.Errorf("local: Config.NewID returned ids in use %d times", attempts)
}

func (g *Gateway) release(id string) {
	g.mu.Lock()
	delete(g.pending, id)
	g.mu.Unlock()
}

// connectApart runs Connect on a goroutine of its own and waits for it.
// Connect goes deep (a token's signature, the store), and a goroutine's
// stack keeps the size its deepest call grew it to: run on the
// connection's goroutine, it would leave every idle connection holding
// twice the stack its reads need (streamer load idle).
func (g *Gateway) connectApart(ctx context.Context, c *Conn) error {
	errc := make(chan error, 1)
	go func() { errc <- g.connect(ctx, c) }()
	return <-errc
}

func (g *Gateway) connect(ctx context.Context, c *Conn) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("local: Connect panicked: %v", p)
		}
	}()
	return g.handler.Connect(ctx, c)
}

func (g *Gateway) disconnect(c *Conn) {
	defer g.recoverHandler(c, "Disconnect")
	g.handler.Disconnect(g.baseCtx, c)
}

func (g *Gateway) message(lc *liveConn, m Inbound) {
	defer g.recoverHandler(lc.c, "Message")
	g.handler.Message(g.baseCtx, lc.c, m)
}

func (g *Gateway) recoverHandler(c *Conn, method string) {
	if p := recover(); p != nil {
		g.log.Error().Str("connection_id", c.ID).Str("method", method).Interface("panic", p).Msg("local: handler panicked")
	}
}

// serve runs the connection until it is closed and unregistered, and
// Disconnect has run (on the goroutine that read last: see reading). Its
// idle timeout, maximum lifetime and token expiry are timers, and a
// requested close runs its handshake on a goroutine of its own for the
// few moments it takes: an idle connection holds no goroutine but this
// one, its reader.
func (g *Gateway) serve(lc *liveConn) {
	lc.stopWatch = g.watch(lc)
	g.readLoop(lc)
}

// end ends lc once its reading has ended: it disarms its timer,
// unregisters it, waits for a requested close's handshake (or drops the
// connection) and runs lc.onEnd (Disconnect). Only the goroutine that read
// last calls it, once.
func (g *Gateway) end(lc *liveConn) {
	lc.stopWatch()
	g.unregister(lc)
	select {
	case <-lc.closing: // a requested close (or the reader stopped for one, a byte budget): wait for its handshake
		<-lc.closed
	default:
		_ = lc.ws.CloseNow()
	}
	if lc.onEnd != nil {
		lc.onEnd()
	}
}

// watch arms the one timer that closes lc: at its idle timeout, its
// maximum lifetime or its token's expiry, whichever comes first (an idle
// timeout that passed while messages came in re-arms it). The returned
// func disarms it.
func (g *Gateway) watch(lc *liveConn) (stop func()) {
	life := lc.c.ConnectedAt.Add(g.cfg.MaxLifetime)
	next := func() time.Duration {
		d := min(time.Until(life), g.cfg.IdleTimeout-lc.sinceActive())
		if !lc.c.ExpiresAt.IsZero() {
			d = min(d, time.Until(lc.c.ExpiresAt))
		}
		return d
	}
	// Armed far off first and then reset, so that t is set before the
	// callback can run and read it.
	var t *time.Timer
	t = time.AfterFunc(time.Duration(math.MaxInt64), func() {
		now := time.Now()
		switch {
		case !lc.c.ExpiresAt.IsZero() && !now.Before(lc.c.ExpiresAt):
			g.requestClose(lc, websocket.StatusPolicyViolation, ReasonTokenExpired)
		case !now.Before(life):
			g.requestClose(lc, websocket.StatusGoingAway, "maximum connection lifetime reached")
		case lc.sinceActive() >= g.cfg.IdleTimeout:
			g.requestClose(lc, websocket.StatusGoingAway, "idle timeout")
		default:
			t.Reset(next())
		}
	})
	t.Reset(next())
	return func() { t.Stop() }
}

// requestClose starts closing lc with code (the first request wins) and
// unregisters it, so that it is gone for Send at once.
func (g *Gateway) requestClose(lc *liveConn, code websocket.StatusCode, reason string) {
	lc.requestClose(code, reason)
	g.unregister(lc)
}

func (g *Gateway) unregister(lc *liveConn) {
	g.mu.Lock()
	if g.conns[lc.c.ID] == lc {
		delete(g.conns, lc.c.ID)
	}
	g.mu.Unlock()
}

func (g *Gateway) lookup(id string) *liveConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.conns[id]
}

// Send writes data as one text message to connection connID, implementing
// [transport.Sender]; endpoint is ignored. It returns an error wrapping
// [transport.ErrGone] when the connection is unknown, closing or closed (a
// failed write closes the connection, so it is gone too), and one wrapping
// [ErrTooLarge] when data is larger than Config.MaxMessageSize.
//
// Send is safe for concurrent use. Messages are written one at a time, and
// those sent by one goroutine arrive in the order it sent them. ctx bounds
// the wait for the connection's writer; once writing has started, the
// write ends within Config.WriteTimeout whatever ctx does, because a
// half-written frame would break the connection.
func (g *Gateway) Send(ctx context.Context, endpoint, connID string, data []byte) error {
	if int64(len(data)) > g.cfg.MaxMessageSize {
		return fmt.Errorf("local: send to %s: %d bytes, limit %d: %w", connID, len(data), g.cfg.MaxMessageSize, ErrTooLarge)
	}
	lc := g.lookup(connID)
	if lc == nil {
		return fmt.Errorf("local: send to %s: %w", connID, transport.ErrGone)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: send to %s: %w", connID, err)
	}
	n := int64(len(data))
	if err := g.reserveOut(lc, n); err != nil {
		return fmt.Errorf("local: send to %s: %w", connID, err)
	}
	defer g.releaseOut(lc, n)
	select {
	case lc.writeMu <- struct{}{}:
	case <-lc.closing:
		return fmt.Errorf("local: send to %s: %w", connID, transport.ErrGone)
	case <-ctx.Done():
		return fmt.Errorf("local: send to %s: %w", connID, ctx.Err())
	}
	defer func() { <-lc.writeMu }()
	select {
	case <-lc.closing:
		return fmt.Errorf("local: send to %s: %w", connID, transport.ErrGone)
	default:
	}
	// The write timeout is a timer of the connection's own, re-armed per
	// write, not a context: coder/websocket arms a context watcher for
	// every write whose context can be canceled, and this is the hot path.
	lc.writing.Store(true)
	if lc.writeTimer == nil { // the first write: an idle connection holds no timer
		lc.writeTimer = time.AfterFunc(g.cfg.WriteTimeout, func() {
			if lc.writing.Load() {
				_ = lc.ws.CloseNow() // the write in progress fails; Send reports the connection gone
			}
		})
	} else {
		lc.writeTimer.Reset(g.cfg.WriteTimeout)
	}
	err := lc.ws.Write(context.Background(), websocket.MessageText, data)
	lc.writing.Store(false)
	lc.writeTimer.Stop()
	if err != nil {
		// coder/websocket closes the connection on any write error.
		g.requestClose(lc, websocket.StatusInternalError, "write failed")
		return fmt.Errorf("local: send to %s: %w: %w", connID, transport.ErrGone, err)
	}
	return nil
}

// Disconnect closes connection connID with status 1000 (normal closure),
// implementing [transport.Disconnecter]; endpoint is ignored. It returns an
// error wrapping [transport.ErrGone] when the connection is unknown or
// already closing. It does not wait for the close handshake: the
// connection is gone for Send as soon as Disconnect returns, and
// [Handler.Disconnect] follows once it has closed.
func (g *Gateway) Disconnect(ctx context.Context, endpoint, connID string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: disconnect %s: %w", connID, err)
	}
	lc := g.lookup(connID)
	if lc == nil {
		return fmt.Errorf("local: disconnect %s: %w", connID, transport.ErrGone)
	}
	g.requestClose(lc, websocket.StatusNormalClosure, "")
	return nil
}

// Connections returns the number of live connections: those upgraded and
// not yet closing.
func (g *Gateway) Connections() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.conns)
}

// Close stops accepting connections (new ones get 503), closes every
// connection with status 1001 (going away) and waits until every
// connection has closed and every handler call (Message and Disconnect)
// has returned. If ctx ends first, Close cancels the context given to
// handler calls, which also drops the remaining connections at once, and
// returns an error wrapping ctx's error; the calls still running end on
// their own. Close may be called more than once, but not from a Handler
// method, which it would wait for.
func (g *Gateway) Close(ctx context.Context) error {
	g.mu.Lock()
	g.closed = true
	live := make([]*liveConn, 0, len(g.conns))
	for _, lc := range g.conns {
		live = append(live, lc)
	}
	g.mu.Unlock()
	for _, lc := range live {
		g.requestClose(lc, websocket.StatusGoingAway, "server shutting down")
	}

	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		g.cancelBase()
		return nil
	case <-ctx.Done():
		g.cancelBase()
		return fmt.Errorf("local: close: %w", ctx.Err())
	}
}

// liveConn is the gateway's state for one upgraded connection.
type liveConn struct {
	c       *Conn
	ws      *websocket.Conn
	writeMu chan struct{} // a lock whose wait honours ctx

	// writeTimer closes the connection when a write takes longer than
	// WriteTimeout; writing tells it a write is in progress. Made by the
	// first write; guarded by writeMu.
	writeTimer *time.Timer
	writing    atomic.Bool

	lastActive atomic.Int64 // nanoseconds after c.ConnectedAt of the last inbound message

	outBytes atomic.Int64 // bytes of Send calls waiting for, or in, a write
	inBytes  atomic.Int64 // bytes of inbound messages not yet handled

	log zerolog.Logger

	closeOnce sync.Once
	closing   chan struct{} // closed when a close is requested
	closed    chan struct{} // closed when a requested close's handshake ended

	rd *reading // made with the first message: an idle connection holds none

	stopWatch func() // disarms the timer of watch
	onEnd     func() // the end of ServeHTTP's work: Disconnect
}

func newLiveConn(c *Conn, ws *websocket.Conn, log zerolog.Logger) *liveConn {
	lc := &liveConn{
		c:       c,
		ws:      ws,
		log:     log,
		writeMu: make(chan struct{}, 1),
		closing: make(chan struct{}),
		closed:  make(chan struct{}),
	}
	lc.touch()
	return lc
}

func (lc *liveConn) touch() { lc.lastActive.Store(int64(time.Since(lc.c.ConnectedAt))) }

func (lc *liveConn) sinceActive() time.Duration {
	return time.Since(lc.c.ConnectedAt) - time.Duration(lc.lastActive.Load())
}

func (lc *liveConn) lastActiveAt() time.Time {
	return lc.c.ConnectedAt.Add(time.Duration(lc.lastActive.Load()))
}

// requestClose starts closing lc with code (the first request wins): the
// close handshake runs on a goroutine that ends with it (coder/websocket
// bounds it to a few seconds), and lc.closed is closed then.
func (lc *liveConn) requestClose(code websocket.StatusCode, reason string) {
	lc.closeOnce.Do(func() {
		close(lc.closing)
		go func() {
			defer close(lc.closed)
			if err := lc.ws.Close(code, reason); err != nil {
				lc.log.Debug().Err(err).Str("connection_id", lc.c.ID).Msg("local: close")
			}
		}()
	})
}

func isUpgrade(r *http.Request) bool {
	return r.Method == http.MethodGet && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// originAllowed applies the same rule as websocket.Accept, so that Connect
// is not called for a request Accept would refuse.
func (g *Gateway) originAllowed(r *http.Request) bool {
	if len(g.cfg.OriginPatterns) == 0 {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	if strings.EqualFold(r.Host, u.Host) {
		return true
	}
	for _, p := range g.cfg.OriginPatterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

func writeText(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
