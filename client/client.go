package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
)

const (
	defaultMinBackoff = 200 * time.Millisecond
	defaultMaxBackoff = 10 * time.Second
	// dialTimeout bounds each reconnect handshake.
	dialTimeout = 30 * time.Second
	// writeTimeout bounds each frame write; a write that takes longer
	// closes the connection, which then reconnects.
	writeTimeout = 10 * time.Second
	// readLimit is the largest server message accepted. The protocol caps
	// them at 128 KiB; the client is lenient.
	readLimit = 4 * streamer.MaxMessageSize
)

// Options configures a [Client]. The zero value connects without a token,
// with the default backoff and no logging.
type Options struct {
	// Token is the JWT sent as the "Authorization: Bearer" header.
	Token string
	// TokenFunc, when set, is called before every connection attempt (the
	// first and each reconnect) and its token is used instead of Token. An
	// error fails the attempt.
	TokenFunc func(ctx context.Context) (string, error)
	// HTTPHeader holds extra handshake headers. The Authorization header is
	// set from the token when there is one.
	HTTPHeader http.Header
	// HTTPClient performs the handshake; nil means http.DefaultClient.
	HTTPClient *http.Client
	// MinBackoff and MaxBackoff bound the delay before a reconnect attempt:
	// attempt n waits a random duration in [0, min(MaxBackoff,
	// MinBackoff*2^n)] (full jitter). Defaults: 200ms and 10s.
	MinBackoff, MaxBackoff time.Duration
	// MaxReconnects is how many reconnect attempts in a row may fail before
	// the client gives up: pending calls and all later ones then fail with
	// an error wrapping [ErrDisconnected]. 0 means no limit: the client
	// retries until Close (pending calls still end with their ctx). A
	// reconnect refused with 401 gives up at once unless TokenFunc is set,
	// since the same token would be refused again.
	MaxReconnects int
	// Logger receives connection events; the zero value logs nothing.
	Logger zerolog.Logger
	// OnConnect, when set, is called after each connection is established,
	// the first included, and after re-sends of a reconnect were written.
	// It runs on the client's connection goroutine: it must not block, nor
	// wait for a call on the same client.
	OnConnect func()
	// OnDisconnect, when set, is called with the reason each time an
	// established connection ends; the reason wraps [ErrClosed] when Close
	// ended it. It runs like OnConnect.
	OnDisconnect func(error)
}

// Client is a connection to a Streamer server that reconnects by itself.
// It is safe for concurrent use. Create it with [Dial]; Close it when done.
type Client struct {
	url  string
	opts Options
	log  zerolog.Logger

	// ctx lives until Close; it bounds reads, writes, dials and backoff.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// sendMu serializes a call's registration and first write with the
	// re-sends after a reconnect, so replies keep their FIFO order.
	sendMu sync.Mutex

	mu      sync.Mutex
	conn    *websocket.Conn // nil while disconnected
	closed  bool
	failErr error // set when the client gave up reconnecting
	calls   map[string]*call
	statusQ map[string][]*waiter // status, cancel and actions waiters by request id
	pingQ   []*waiter
}

// Dial connects to the Streamer server at url (ws:// or wss://) and returns
// a Client. ctx bounds this first connection only, which must succeed: a
// refusal with HTTP 401 returns an error wrapping [ErrUnauthorized]. Later
// drops are repaired by reconnecting (see [Options]).
func Dial(ctx context.Context, url string, opts Options) (*Client, error) {
	if url == "" {
		return nil, fmt.Errorf("client: dial: empty url: %w", ErrInvalidArgument)
	}
	if opts.MinBackoff < 0 || opts.MaxBackoff < 0 || opts.MaxReconnects < 0 {
		return nil, fmt.Errorf("client: dial: negative backoff or MaxReconnects: %w", ErrInvalidArgument)
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = defaultMinBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = defaultMaxBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = opts.MinBackoff
	}
	c := &Client{
		url:     url,
		opts:    opts,
		log:     opts.Logger.With().Str("component", "streamer-client").Logger(),
		calls:   make(map[string]*call),
		statusQ: make(map[string][]*waiter),
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.conn = conn
	c.wg.Add(1)
	go c.run(conn)
	return c, nil
}

// Close closes the connection and stops reconnecting. Pending calls fail
// with [ErrClosed], as do calls made after. Close returns once every
// goroutine the client started has ended, after at most a few seconds of
// closing handshake. It is safe to call more than once; it returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	conn := c.conn
	calls, waiters := c.takePendingLocked()
	c.mu.Unlock()

	failAll(calls, waiters, ErrClosed)
	if conn != nil {
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}
	c.cancel()
	c.wg.Wait()
	return nil
}

// takePendingLocked empties the pending tables and returns their entries.
func (c *Client) takePendingLocked() ([]*call, []*waiter) {
	calls := make([]*call, 0, len(c.calls))
	for _, cl := range c.calls {
		calls = append(calls, cl)
	}
	clear(c.calls)
	var waiters []*waiter
	for _, q := range c.statusQ {
		waiters = append(waiters, q...)
	}
	clear(c.statusQ)
	waiters = append(waiters, c.pingQ...)
	c.pingQ = nil
	return calls, waiters
}

func failAll(calls []*call, waiters []*waiter, err error) {
	for _, cl := range calls {
		cl.finish(nil, err)
	}
	for _, w := range waiters {
		w.done <- reply{err: err}
	}
}

// usableLocked returns why no call can be made now, or nil.
func (c *Client) usableLocked() error {
	if c.closed {
		return ErrClosed
	}
	return c.failErr
}

// connect performs one handshake.
func (c *Client) connect(ctx context.Context) (*websocket.Conn, error) {
	token := c.opts.Token
	if c.opts.TokenFunc != nil {
		t, err := c.opts.TokenFunc(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: getting token: %w", err)
		}
		token = t
	}
	h := c.opts.HTTPHeader.Clone()
	if h == nil {
		h = http.Header{}
	}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	conn, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{
		HTTPHeader: h,
		HTTPClient: c.opts.HTTPClient,
	})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close() // coder/websocket keeps the upgraded connection, not the body
	}
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusUnauthorized {
			return nil, fmt.Errorf("client: dial: %w", ErrUnauthorized)
		}
		return nil, fmt.Errorf("client: dial: %w", err)
	}
	conn.SetReadLimit(readLimit)
	return conn, nil
}

// run owns the connection: it reads until the connection ends, then
// reconnects, until Close or until it gives up.
func (c *Client) run(conn *websocket.Conn) {
	defer c.wg.Done()
	c.callback(c.opts.OnConnect)
	for {
		err := c.readLoop(conn)
		c.mu.Lock()
		closed := c.closed
		if c.conn == conn {
			c.conn = nil
		}
		c.mu.Unlock()
		if closed {
			c.disconnected(fmt.Errorf("client: connection ended: %w", ErrClosed))
			return
		}
		_ = conn.CloseNow()
		c.log.Warn().Err(err).Msg("connection lost")
		c.disconnected(err)
		conn = c.reconnect(err)
		if conn == nil {
			return
		}
		c.log.Info().Msg("reconnected")
		c.callback(c.opts.OnConnect)
	}
}

func (c *Client) callback(fn func()) {
	if fn != nil {
		fn()
	}
}

func (c *Client) disconnected(err error) {
	if c.opts.OnDisconnect != nil {
		c.opts.OnDisconnect(err)
	}
}

func (c *Client) readLoop(conn *websocket.Conn) error {
	for {
		typ, data, err := conn.Read(c.ctx)
		if err != nil {
			return fmt.Errorf("client: reading: %w", err)
		}
		if typ != websocket.MessageText {
			c.log.Warn().Msg("ignoring a binary message")
			continue
		}
		c.handle(conn, data)
	}
}

// reconnect dials until it succeeds, the client is closed, or it gives up.
// It returns the new connection with every pending call re-sent, or nil.
func (c *Client) reconnect(cause error) *websocket.Conn {
	for attempt := 0; ; attempt++ {
		if c.opts.MaxReconnects > 0 && attempt >= c.opts.MaxReconnects {
			c.giveUp(fmt.Errorf("client: gave up after %d reconnect attempts: %w: %w", attempt, ErrDisconnected, cause))
			return nil
		}
		if !c.sleep(c.backoff(attempt)) {
			return nil
		}
		ctx, cancel := context.WithTimeout(c.ctx, dialTimeout)
		conn, err := c.connect(ctx)
		cancel()
		if err != nil {
			if c.ctx.Err() != nil {
				return nil
			}
			cause = err
			c.log.Warn().Err(err).Int("attempt", attempt+1).Msg("reconnect failed")
			if errors.Is(err, ErrUnauthorized) && c.opts.TokenFunc == nil {
				c.giveUp(fmt.Errorf("client: reconnect refused: %w: %w", ErrDisconnected, err))
				return nil
			}
			continue
		}
		if !c.attach(conn) {
			_ = conn.CloseNow()
			return nil
		}
		return conn
	}
}

// backoff returns the delay before reconnect attempt n (from 0):
// exponential with full jitter.
func (c *Client) backoff(n int) time.Duration {
	ceiling := c.opts.MaxBackoff
	if n < 32 {
		if d := c.opts.MinBackoff << n; d > 0 && d < ceiling {
			ceiling = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceiling) + 1))
}

// sleep waits for d, or returns false when the client is closed first.
func (c *Client) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-c.ctx.Done():
		return false
	}
}

// giveUp fails every pending call and every later one with err.
func (c *Client) giveUp(err error) {
	c.log.Error().Err(err).Msg("giving up reconnecting")
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.failErr = err
	calls, waiters := c.takePendingLocked()
	c.mu.Unlock()
	failAll(calls, waiters, err)
}

// attach makes conn the live connection and re-sends what is pending:
// resume for acknowledged requests, the original frame for the others, and
// status, cancel and ping calls. It returns false when the client was
// closed meanwhile.
func (c *Client) attach(conn *websocket.Conn) bool {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.conn = conn
	var frames [][]byte
	for _, cl := range c.calls {
		cl.confirmed = false
		if cl.acked {
			cl.resumed, cl.resumeUntil = true, cl.lastSeq
			frames = append(frames, resumeFrame(cl.id, cl.lastSeq))
			continue
		}
		// A synchronous reply starts over on the new connection.
		cl.resumed, cl.resumeUntil = false, 0
		cl.chunks = nil
		frames = append(frames, cl.frame)
	}
	for id, q := range c.statusQ {
		// Abandoned waiters only kept their place for a reply of the old
		// connection, which will not come now.
		q = keepLive(q)
		if len(q) == 0 {
			delete(c.statusQ, id)
			continue
		}
		c.statusQ[id] = q
		for _, w := range q {
			frames = append(frames, w.frame)
		}
	}
	c.pingQ = keepLive(c.pingQ)
	for _, w := range c.pingQ {
		frames = append(frames, w.frame)
	}
	c.mu.Unlock()
	for _, f := range frames {
		if err := c.write(conn, f); err != nil {
			// The read loop sees the broken connection and reconnects.
			c.log.Warn().Err(err).Msg("re-sending after reconnect")
			break
		}
	}
	return true
}

func keepLive(q []*waiter) []*waiter {
	out := q[:0]
	for _, w := range q {
		if !w.abandoned {
			out = append(out, w)
		}
	}
	clear(q[len(out):])
	return out
}

// write sends one text frame. A failure closes the connection; the read
// loop then reconnects and re-sends what is pending.
func (c *Client) write(conn *websocket.Conn, frame []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, frame); err != nil {
		return fmt.Errorf("client: writing: %w", err)
	}
	return nil
}

// send writes frame on conn, logging a failure (the read loop repairs it).
func (c *Client) send(conn *websocket.Conn, frame []byte) {
	if err := c.write(conn, frame); err != nil {
		c.log.Debug().Err(err).Msg("send failed; it is retried after reconnecting")
	}
}

// register adds a pending call or waiter with add (under mu) and writes
// frame on the live connection, if any; otherwise the frame is sent after
// reconnecting.
func (c *Client) register(frame []byte, add func() error) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	c.mu.Lock()
	if err := c.usableLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	if err := add(); err != nil {
		c.mu.Unlock()
		return err
	}
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		c.send(conn, frame)
	}
	return nil
}

type refPayload struct {
	RequestID string `json:"request_id"`
	AfterSeq  *int64 `json:"after_seq,omitempty"`
}

// refFrame encodes a reserved action about a request.
func refFrame(action, requestID string, afterSeq *int64) []byte {
	p, _ := json.Marshal(refPayload{RequestID: requestID, AfterSeq: afterSeq})
	b, _ := json.Marshal(streamer.Frame{Action: action, Payload: p})
	return b
}

func resumeFrame(requestID string, afterSeq int64) []byte {
	return refFrame(streamer.ActionResume, requestID, &afterSeq)
}
