package streamer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/streamer-go/streamer/metrics"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/transport"
)

// Conn identifies the connection a message came from.
type Conn struct {
	// ID is the connection id given by the gateway.
	ID string
	// Endpoint is where to post replies, when the transport needs it.
	Endpoint string
	// Principal is the connection's verified identity. When nil, the router
	// reads it from the stored connection (the AWS runtime, where each
	// message is a separate invocation).
	Principal *Principal
}

// HandleConnect authenticates a new connection's token and stores the
// connection. An error wrapping [ErrUnauthorized] means the handshake must be
// refused with HTTP 401.
func (a *App) HandleConnect(ctx context.Context, connID, endpoint, token string) (Principal, error) {
	ctx, sp := a.startSpan(ctx, SpanConnect)
	p, err := a.handleConnect(ctx, connID, endpoint, token)
	spanConn(sp, connID)
	endSpan(sp, err)
	return p, err
}

func (a *App) handleConnect(ctx context.Context, connID, endpoint, token string) (Principal, error) {
	if a.cfg.Authenticator == nil {
		return Principal{}, errors.New("streamer: Config.Authenticator is required to accept connections")
	}
	if token == "" {
		return Principal{}, fmt.Errorf("%w: no token", ErrUnauthorized)
	}
	p, err := a.cfg.Authenticator.Authenticate(ctx, token)
	if err != nil {
		if !errors.Is(err, ErrUnauthorized) {
			err = fmt.Errorf("%w: %w", ErrUnauthorized, err)
		}
		return Principal{}, err
	}
	if p.Subject == "" {
		return Principal{}, fmt.Errorf("%w: token has no subject", ErrUnauthorized)
	}
	enc, err := json.Marshal(p)
	if err != nil {
		return Principal{}, fmt.Errorf("streamer: encode principal: %w", err)
	}
	now := a.now()
	c := storage.Connection{
		ID: connID, Tenant: p.Tenant, Subject: p.Subject, Principal: enc,
		Endpoint: endpoint, ConnectedAt: now, ExpiresAt: now.Add(a.cfg.ConnectionTTL),
	}
	if err := a.cfg.Store.PutConnection(ctx, c); err != nil {
		return Principal{}, fmt.Errorf("streamer: store connection %s: %w", connID, err)
	}
	return p, nil
}

// HandleDisconnect forgets a connection and its subscriptions. Requests it
// sent keep running; their events stay stored for a later resume.
func (a *App) HandleDisconnect(ctx context.Context, connID string) error {
	if err := a.cfg.Store.DeleteConnection(ctx, connID); err != nil {
		return fmt.Errorf("streamer: delete connection %s: %w", connID, err)
	}
	return nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// reply encodes m and sends it to conn. Errors are logged: a reply that
// cannot be delivered has nowhere else to go.
func (a *App) reply(ctx context.Context, conn Conn, m *Message) {
	bp := bufPool.Get().(*[]byte)
	*bp = m.AppendJSON((*bp)[:0])
	a.send(ctx, conn, m.Type, *bp)
	putBuf(bp)
}

func (a *App) send(ctx context.Context, conn Conn, typ string, b []byte) {
	if err := a.sendReply(ctx, conn, b); err != nil {
		a.log.Debug().Err(err).Str("connection_id", conn.ID).Str("type", typ).Msg("reply not delivered")
	}
}

// sendReply sends b to the connection that sent a frame, and counts it
// (metrics.Replies).
func (a *App) sendReply(ctx context.Context, conn Conn, b []byte) error {
	err := a.cfg.Sender.Send(ctx, conn.Endpoint, conn.ID, b)
	outcome := outcomeOK
	switch {
	case errors.Is(err, transport.ErrGone):
		outcome = outcomeGone
	case err != nil:
		outcome = outcomeError
	}
	a.metrics.Add(metrics.Replies, metrics.Dims{Outcome: outcome}, 1)
	return err
}

func putBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		bufPool.Put(bp)
	}
}

// replyError answers a frame refused before any handler or middleware
// ran (a bad frame, an unknown action, a failed check), and logs the
// refusal at debug level with its code.
func (a *App) replyError(ctx context.Context, conn Conn, requestID string, e *Error) {
	a.log.Debug().Str("connection_id", conn.ID).Str("request_id", requestID).Str("code", e.Code).
		Str("error", e.Message).Msg("frame refused")
	a.reply(ctx, conn, &Message{Type: TypeError, RequestID: requestID, Error: Body(e, CodeInternal), Timestamp: a.now().UnixMilli()})
}

// logRefused logs, at debug level, a request refused by a middleware or a
// check of the chain, as replyError logs the router's own refusals.
func (a *App) logRefused(conn Conn, requestID string, b *ErrorBody) {
	a.log.Debug().Str("connection_id", conn.ID).Str("request_id", requestID).Str("code", b.Code).
		Str("error", b.Message).Msg("frame refused")
}

// HandleMessage is the router: it decodes one client frame and answers it
// on conn, through the Sender. Malformed frames, unknown actions, failed
// checks and handler errors are all answered with protocol errors; the
// returned error reports only failures to reach storage, which were also
// answered with UNAVAILABLE (retryable, see [Unavailable]). binary marks a
// binary WebSocket frame, which the protocol refuses.
//
// Sync requests run under their timeout before HandleMessage returns. Async
// requests are stored, acknowledged and handed to the worker (see
// [App.Run]), or left for an external processor.
func (a *App) HandleMessage(ctx context.Context, conn Conn, data []byte, binary bool) error {
	defer a.recoverMessage(ctx, conn, data)
	if binary {
		a.replyError(ctx, conn, "", invalid("binary frames are not supported; send JSON text frames"))
		return nil
	}
	if len(data) > MaxMessageSize {
		a.replyError(ctx, conn, "", invalid("the frame exceeds 131072 bytes"))
		return nil
	}
	f, ferr := DecodeFrame(data)
	if ferr != nil {
		a.replyError(ctx, conn, f.ID, ferr)
		return nil
	}
	if conn.Principal == nil {
		p, err := a.lookupPrincipal(ctx, conn.ID)
		if err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				a.replyError(ctx, conn, f.ID, NewError(CodeUnauthorized, "the connection is not authenticated"))
				return nil
			}
			a.replyError(ctx, conn, f.ID, failure(err))
			return err
		}
		conn.Principal = &p
	}
	if a.tokenExpired(conn.Principal) {
		// Every frame, reserved actions included (docs/protocol.md).
		a.refuseExpired(ctx, conn, f.ID)
		return nil
	}
	// The App's own rate limit, reserved actions included, before any
	// read of the store (docs/protocol.md, admission order).
	if ok, err := a.limitFrame(ctx, conn, &f); !ok {
		if err != nil {
			a.log.Error().Err(err).Str("connection_id", conn.ID).Str("action", f.Action).Str("request_id", f.ID).Msg("message failed")
		}
		return err
	}
	var err error
	switch f.Action {
	case ActionPing:
		a.reply(ctx, conn, &Message{Type: TypePong, RequestID: f.ID, Timestamp: a.now().UnixMilli()})
	case ActionStatus:
		err = a.handleStatus(ctx, conn, &f)
	case ActionResume:
		err = a.handleResume(ctx, conn, &f)
	case ActionCancel:
		err = a.handleCancel(ctx, conn, &f)
	case ActionActions:
		a.reply(ctx, conn, &Message{Type: TypeActions, RequestID: f.ID, Actions: a.available(conn.Principal), Timestamp: a.now().UnixMilli()})
	case ActionList:
		err = a.handleList(ctx, conn, &f)
	default:
		err = a.dispatch(ctx, conn, &f)
	}
	if err != nil {
		a.log.Error().Err(err).Str("connection_id", conn.ID).Str("action", f.Action).Str("request_id", f.ID).Msg("message failed")
	}
	return err
}

func (a *App) lookupPrincipal(ctx context.Context, connID string) (Principal, error) {
	c, err := a.cfg.Store.GetConnection(ctx, connID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return Principal{}, err
		}
		return Principal{}, storeFailed(fmt.Errorf("streamer: read connection %s: %w", connID, err))
	}
	var p Principal
	if err := json.Unmarshal(c.Principal, &p); err != nil {
		return Principal{}, fmt.Errorf("streamer: decode principal of %s: %w", connID, err)
	}
	return p, nil
}

// dispatch looks the action up, then runs the request (sync) or admits it
// (async). The chain's middleware runs first, then the checks every request
// passes (see [App.check]), then the handler or the store: cheap refusals
// such as rate limits come before the payload is decoded.
func (a *App) dispatch(ctx context.Context, conn Conn, f *Frame) error {
	rt, ok := a.routes[f.Action]
	if !ok {
		a.mRequest(f.Action, outcomeRefused, CodeInvalidAction)
		a.replyError(ctx, conn, f.ID, unknownAction(f.Action, a.available(conn.Principal)))
		return nil
	}
	id := f.ID
	if id == "" {
		id = a.cfg.NewID()
	}
	// The action's own rate limit: before the middleware, the estimate and
	// anything that reads the payload.
	if e := a.take(ctx, rt.limit, conn.Principal, conn.ID); e != nil {
		a.mRefusedFrame(f.Action, e.Code)
		a.replyError(ctx, conn, id, e)
		if isStoreError(e) {
			return e
		}
		return nil
	}
	// The checks that read the payload run at the end of the chain, after
	// the middleware (rate limits, auth): see [App.check] and
	// docs/protocol.md (admission order).
	req := &Request{
		ID: id, Action: f.Action, Payload: f.Payload, Metadata: f.Metadata,
		Principal: *conn.Principal, ConnectionID: conn.ID,
	}
	if a.mode(rt, req) == ModeSync {
		sctx, sp := a.startClientSpan(ctx, SpanSync, f.Metadata)
		spanAttrs(sp, id, f.Action)
		a.runSync(sctx, conn, rt, req)
		endSpan(sp, nil)
		return nil
	}
	actx, sp := a.startClientSpan(ctx, SpanAdmit, f.Metadata)
	spanAttrs(sp, id, f.Action)
	err := a.admit(actx, conn, rt, req)
	endSpan(sp, err)
	return err
}

// available lists the actions p may call (it holds every scope they
// require), sorted by name. Reserved actions are not listed.
func (a *App) available(p *Principal) []ActionInfo {
	out := make([]ActionInfo, 0, len(a.routes))
	for name, rt := range a.routes {
		opts := &rt.action.Options
		if !slices.ContainsFunc(opts.Scopes, func(s string) bool { return !p.HasScope(s) }) {
			out = append(out, ActionInfo{Name: name, Mode: a.declaredMode(rt).String(), Scopes: slices.Clone(opts.Scopes)})
		}
	}
	slices.SortFunc(out, func(x, y ActionInfo) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// declaredMode is the mode an action runs in whatever its payload:
// ModeAuto only when its handler estimates each request.
func (a *App) declaredMode(rt *route) Mode {
	if m := rt.action.Options.Mode; m == ModeSync || m == ModeAsync {
		return m
	}
	if _, ok := rt.action.Handler.(Estimator); ok {
		return ModeAuto
	}
	if rt.action.Options.Estimate <= a.cfg.SyncThreshold {
		return ModeSync
	}
	return ModeAsync
}

// maxNamed is how many available actions an INVALID_ACTION message names;
// its details list them all.
const maxNamed = 20

// unknownAction is the INVALID_ACTION answer to action: its message names
// the available actions and details.available lists them.
func unknownAction(action string, avail []ActionInfo) *Error {
	names := make([]string, len(avail))
	for i, ai := range avail {
		names[i] = ai.Name
	}
	var msg string
	switch {
	case len(names) == 0:
		msg = fmt.Sprintf("no handler is registered for action %q; no actions are available", action)
	case len(names) > maxNamed:
		msg = fmt.Sprintf("no handler is registered for action %q; available: %s and %d more", action, strings.Join(names[:maxNamed], ", "), len(names)-maxNamed)
	default:
		msg = fmt.Sprintf("no handler is registered for action %q; available: %s", action, strings.Join(names, ", "))
	}
	return NewError(CodeInvalidAction, msg).WithDetails(map[string][]string{"available": names})
}

// check runs the checks of a request that read it: its scopes, its
// payload's size, and its handler's [Validator], in that order. They run at
// the end of the sync and admission chains, after every middleware, so that
// a rate limit refuses a flood of invalid frames as it refuses valid ones.
func (a *App) check(ctx context.Context, rt *route, req *Request) error {
	opts := &rt.action.Options
	for _, s := range opts.Scopes {
		if !req.Principal.HasScope(s) {
			return Errorf(CodeForbidden, "action %s requires scope %q", req.Action, s)
		}
	}
	if opts.MaxPayload > 0 && len(req.Payload) > opts.MaxPayload {
		return Errorf(CodePayloadTooLarge, "the payload is %d bytes; %s accepts at most %d", len(req.Payload), req.Action, opts.MaxPayload)
	}
	if v, ok := rt.action.Handler.(Validator); ok {
		if err := v.Validate(ctx, req); err != nil {
			return asValidation(err)
		}
	}
	return nil
}

// syncRun is in the context of a sync chain: started tells a refusal by a
// middleware or a check (answered with an error message) from a failure
// of the handler (a response).
type syncRun struct{ started bool }

type syncKey struct{}

// gate ends rt's chain: at StageSync it runs the checks, then the handler;
// at StageProcess (a request admitted already) only the handler.
func (a *App) gate(rt *route) Handler {
	return HandlerFunc(func(ctx context.Context, req *Request, rep Reporter) (any, error) {
		if req.Stage == StageSync {
			if err := a.check(ctx, rt, req); err != nil {
				return nil, err
			}
			if sr, ok := ctx.Value(syncKey{}).(*syncRun); ok {
				sr.started = true
			}
		}
		return rt.action.Handler.Serve(ctx, req, rep)
	})
}

func asValidation(err error) *Error {
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	return &Error{Code: CodeValidation, Message: err.Error()}
}

func (a *App) mode(rt *route, req *Request) Mode {
	switch rt.action.Options.Mode {
	case ModeSync, ModeAsync:
		return rt.action.Options.Mode
	}
	est := rt.action.Options.Estimate
	if e, ok := rt.action.Handler.(Estimator); ok {
		est = e.Estimate(req)
	}
	if est <= a.cfg.SyncThreshold {
		return ModeSync
	}
	return ModeAsync
}

// timeout is how long one run of rt may take in mode (ModeSync or
// ModeAsync): the action's Timeout, or the App's default for the mode.
func (a *App) timeout(rt *route, mode Mode) time.Duration {
	if t := rt.action.Options.Timeout; t > 0 {
		return t
	}
	if mode == ModeSync {
		return a.cfg.SyncTimeout
	}
	return a.cfg.AsyncTimeout
}

// serve runs h, turning a panic into INTERNAL_ERROR with the stack logged
// and not sent.
func (a *App) serve(ctx context.Context, h Handler, req *Request, rep Reporter) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			a.reqLog(ctx, req).Error().
				Str("panic", fmt.Sprint(p)).Bytes("stack", debug.Stack()).Msg("handler panicked")
			res, err = nil, NewError(CodeInternal, "internal error")
		}
	}()
	ctx = a.requestLogContext(ctx, req)
	return h.Serve(WithRequest(ctx, req), req, rep)
}

// handlerError maps a handler's error to its wire body: deadline and cancel
// become TIMEOUT and CANCELED, an [*Error] keeps its code, anything else
// becomes fallback.
func (a *App) handlerError(ctx context.Context, req *Request, err error, fallback string) *ErrorBody {
	var se *Error
	switch {
	case errors.As(err, &se):
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		return Body(NewError(CodeTimeout, "the handler ran past its deadline"), CodeTimeout)
	case errors.Is(context.Cause(ctx), ErrCanceled):
		return Body(NewError(CodeCanceled, "the request was canceled"), CodeCanceled)
	}
	b := Body(err, fallback)
	if se == nil || b.Code == CodeInternal || b.Code == CodeProcessingFailed {
		a.reqLog(ctx, req).Warn().Err(err).Str("code", b.Code).Msg("handler failed")
	}
	return b
}

// runSync runs a sync request and answers with one response.
func (a *App) runSync(ctx context.Context, conn Conn, rt *route, req *Request) {
	req.Stage = StageSync
	// The handler runs under its timeout; replies go out under ctx, so
	// the TIMEOUT reply itself is not cut off by the expired deadline.
	hctx, cancel := context.WithTimeout(ctx, a.timeout(rt, ModeSync))
	defer cancel()
	rep := a.newLiveReporter(ctx, conn, req.ID)
	sr := &syncRun{}
	start := time.Now()
	outcome, code := outcomeOK, ""
	defer func() { a.mSync(req.Action, outcome, code, start) }()
	res, err := a.serve(context.WithValue(hctx, syncKey{}, sr), rt.chain, req, rep)
	rep.close()
	if err != nil && !sr.started {
		// Refused before the handler ran: an error message, as every
		// refusal before a handler (protocol section 4).
		body := a.handlerError(hctx, req, err, CodeInternal)
		outcome, code = outcomeRefused, body.Code
		a.logRefused(conn, req.ID, body)
		a.reply(ctx, conn, &Message{Type: TypeError, RequestID: req.ID, Error: body, Timestamp: a.now().UnixMilli()})
		return
	}
	if err != nil {
		body := a.handlerError(hctx, req, err, CodeInternal)
		outcome, code = outcomeError, body.Code
		a.reply(ctx, conn, &Message{Type: TypeResponse, RequestID: req.ID, Error: body})
		return
	}
	data, err := marshalResult(res)
	if err != nil {
		outcome, code = outcomeError, CodeInternal
		a.reqLog(ctx, req).Error().Err(err).Msg("result is not JSON")
		a.reply(ctx, conn, &Message{Type: TypeResponse, RequestID: req.ID, Error: Body(NewError(CodeInternal, "internal error"), CodeInternal)})
		return
	}
	if qerr := a.checkResultSize(data); qerr != nil {
		outcome, code = outcomeError, CodeQuotaExceeded
		a.reply(ctx, conn, &Message{Type: TypeResponse, RequestID: req.ID, Error: Body(qerr, CodeQuotaExceeded)})
		return
	}
	m := &Message{Type: TypeResponse, RequestID: req.ID, Success: true, Data: data}
	bp := bufPool.Get().(*[]byte)
	*bp = m.AppendJSON((*bp)[:0])
	if len(*bp) <= MaxMessageSize {
		a.send(ctx, conn, m.Type, *bp)
		putBuf(bp)
		return
	}
	putBuf(bp)
	chunks := splitResult(string(data), chunkBudget(req.ID))
	for i, c := range chunks {
		a.reply(ctx, conn, chunkMessage(req.ID, 0, i, len(chunks), c))
	}
	a.reply(ctx, conn, &Message{Type: TypeResponse, RequestID: req.ID, Success: true, Chunks: len(chunks)})
}

func marshalResult(v any) (json.RawMessage, error) {
	if raw, ok := v.(json.RawMessage); ok && len(raw) > 0 && json.Valid(raw) {
		return raw, nil
	}
	return json.Marshal(v)
}

// fingerprint identifies an action and payload for idempotent re-sends.
func fingerprint(action string, payload json.RawMessage) string {
	h := sha256.New()
	h.Write([]byte(action))
	h.Write([]byte{0})
	if len(payload) > 0 {
		var buf bytes.Buffer
		if json.Compact(&buf, payload) == nil {
			payload = buf.Bytes()
		}
		h.Write(payload)
	}
	return hex.EncodeToString(h.Sum(nil))
}

type admitKey struct{}

// admission is what the admission chain's terminal does: store the request.
type admission struct {
	app    *App
	conn   Conn
	ack    *Message
	queued bool
	// notBefore delays a new request ([App.Submit]); zero: at once.
	notBefore time.Time
	// route is the action admitted.
	route *route
	// checked: the request passed [App.check] already ([App.Submit]).
	checked bool
}

// admitTerminal ends the admission chain: the request passed every
// middleware; it is checked ([App.check]) and stored now.
var admitTerminal Handler = HandlerFunc(func(ctx context.Context, req *Request, _ Reporter) (any, error) {
	ad, ok := ctx.Value(admitKey{}).(*admission)
	if !ok {
		return nil, errors.New("streamer: admission chain run outside the router")
	}
	if !ad.checked && ad.route != nil {
		if err := ad.app.check(ctx, ad.route, req); err != nil {
			return nil, err
		}
	}
	return nil, ad.app.store(ctx, ad, req)
})

// admit runs the middleware at StageAdmit, then stores and acknowledges the
// request.
func (a *App) admit(ctx context.Context, conn Conn, rt *route, req *Request) error {
	req.Stage = StageAdmit
	ad := &admission{app: a, conn: conn, route: rt}
	_, err := a.serve(context.WithValue(ctx, admitKey{}, ad), Chain(admitTerminal, rt.mw...), req, Discard)
	if err != nil {
		body := a.handlerError(ctx, req, err, CodeInternal)
		a.mRequest(req.Action, outcomeRefused, body.Code)
		a.logRefused(conn, req.ID, body)
		a.reply(ctx, conn, &Message{Type: TypeError, RequestID: req.ID, Error: body, Timestamp: a.now().UnixMilli()})
		var se *Error
		if !errors.As(err, &se) || isStoreError(err) {
			return err
		}
		return nil
	}
	a.mRequest(req.Action, outcomeAccepted, "")
	if ad.ack != nil {
		a.reply(ctx, conn, ad.ack)
	}
	if ad.queued {
		a.notifyAction(storage.Key{Tenant: req.Principal.Tenant, Subject: req.Principal.Subject, ID: req.ID}, req.Action, time.Time{})
	}
	return nil
}

// store creates the request, or attaches the sender to the existing one
// with the same id (idempotent re-send).
func (a *App) store(ctx context.Context, ad *admission, req *Request) error {
	key := storage.Key{Tenant: req.Principal.Tenant, Subject: req.Principal.Subject, ID: req.ID}
	fp := fingerprint(req.Action, req.Payload)
	principal, err := json.Marshal(req.Principal)
	if err != nil {
		return fmt.Errorf("streamer: encode principal: %w", err)
	}
	now := a.now()
	endpoint := ad.conn.Endpoint
	if endpoint == "" {
		endpoint = a.cfg.Endpoint
	}
	sr := storage.Request{
		Key: key, Action: req.Action, Payload: req.Payload, Metadata: req.Metadata,
		Fingerprint: fp, Principal: principal, ConnectionID: ad.conn.ID, Endpoint: endpoint,
		Status: storage.StatusQueued, NotBefore: ad.notBefore,
		CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(a.cfg.Retention),
	}
	sr.TraceParent = a.traceParent(ctx) // continued by the processor
	undo, qerr := a.admitPending(key)
	if qerr != nil {
		// Over the quota, unless this is a re-send of a stored request.
		if _, gerr := a.cfg.Store.GetRequest(ctx, key); gerr == nil {
			return a.attach(ctx, ad, key, fp)
		}
		return qerr
	}
	err = a.cfg.Store.CreateRequest(ctx, sr)
	if err != nil {
		undo()
	}
	switch {
	case err == nil:
		ad.ack = &Message{Type: TypeAcknowledgment, RequestID: req.ID, Status: string(storage.StatusQueued)}
		ad.queued = true
		return nil
	case errors.Is(err, storage.ErrExists):
		return a.attach(ctx, ad, key, fp)
	case errors.Is(err, storage.ErrQuota):
		// Counted by the store (DynamoDB): the same answer as the
		// embedded runtime's count.
		return quotaError("pending_requests", int64(a.cfg.MaxPending),
			"as many requests of yours are queued or running as allowed (%d); wait for one to end (or cancel one)", a.cfg.MaxPending)
	default:
		return storeFailed(fmt.Errorf("streamer: store request %s: %w", req.ID, err))
	}
}

// attach subscribes the sender to an existing request with the same id,
// action and payload, and acknowledges with its current state.
func (a *App) attach(ctx context.Context, ad *admission, key storage.Key, fp string) error {
	existing, err := a.cfg.Store.GetRequest(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return Errorf(CodeConflict, "request %s is being replaced; send it again", key.ID)
		}
		return storeFailed(fmt.Errorf("streamer: read request %s: %w", key.ID, err))
	}
	if existing.Fingerprint != fp {
		return Errorf(CodeConflict, "request id %s is already used with a different action or payload", key.ID)
	}
	// Subscribe before reading the last seq: every event stored after the
	// read is then sent live, so none is lost between the two. A request
	// submitted from a backend ([App.Submit]) has no connection to attach.
	if ad.conn.ID != "" && existing.ConnectionID != ad.conn.ID {
		if err := a.cfg.Store.Subscribe(ctx, key, ad.conn.ID, a.subscriptionExpiry(ad.conn.Principal)); err != nil {
			return storeFailed(fmt.Errorf("streamer: subscribe %s: %w", key.ID, err))
		}
	}
	last, err := a.lastEvent(ctx, key)
	if err != nil {
		return err
	}
	if last.Terminal() && !existing.Status.Final() {
		// It finished between the two reads: its terminal event went to
		// the subscribers of then, so the acknowledgment must say it is
		// over, or the sender would wait for events that never come.
		if existing, err = a.cfg.Store.GetRequest(ctx, key); err != nil {
			return storeFailed(fmt.Errorf("streamer: read request %s: %w", key.ID, err))
		}
	}
	ad.ack = &Message{
		Type: TypeAcknowledgment, RequestID: key.ID, Status: string(existing.Status),
		Seq: last.Seq, Percentage: last.Percentage, Message: last.Message,
	}
	return nil
}

// lastEvent returns the request's latest event, or a zero event when the
// log is empty.
func (a *App) lastEvent(ctx context.Context, key storage.Key) (storage.Event, error) {
	ev, err := a.cfg.Store.LastEvent(ctx, key)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return ev, storeFailed(fmt.Errorf("streamer: read last event of %s: %w", key.ID, err))
	}
	return ev, nil
}

// refPayload is the payload of status, resume and cancel.
type refPayload struct {
	RequestID string `json:"request_id"`
	AfterSeq  int64  `json:"after_seq"`
}

func (a *App) decodeRef(ctx context.Context, conn Conn, f *Frame) (storage.Key, int64, bool) {
	var ref refPayload
	var err error
	if len(f.Payload) > 0 && f.Payload[0] == '{' {
		err = json.Unmarshal(f.Payload, &ref)
	}
	if badAfterSeq(err) && ValidName(ref.RequestID) {
		a.replyError(ctx, conn, ref.RequestID, (&Error{Code: CodeValidation, Message: "after_seq must be a whole number from 0 to 9223372036854775807"}).
			WithDetails([]FieldError{{Field: "after_seq", Rule: "integer", Message: "after_seq must be a whole number from 0 to 9223372036854775807"}}))
		return storage.Key{}, 0, false
	}
	if len(f.Payload) == 0 || f.Payload[0] != '{' || err != nil {
		a.replyError(ctx, conn, f.ID, (&Error{Code: CodeValidation, Message: f.Action + " needs a payload {\"request_id\": \"...\"}"}).
			WithDetails([]FieldError{{Field: "request_id", Rule: "required", Message: "request_id is required"}}))
		return storage.Key{}, 0, false
	}
	if !ValidName(ref.RequestID) {
		a.replyError(ctx, conn, f.ID, (&Error{Code: CodeValidation, Message: "request_id is not a valid request id"}).
			WithDetails([]FieldError{{Field: "request_id", Rule: "required", Message: "request_id must be 1-128 characters of [A-Za-z0-9_.:-]"}}))
		return storage.Key{}, 0, false
	}
	if ref.AfterSeq < 0 {
		a.replyError(ctx, conn, ref.RequestID, (&Error{Code: CodeValidation, Message: "after_seq must not be negative"}).
			WithDetails([]FieldError{{Field: "after_seq", Rule: "gte", Message: "after_seq must be at least 0"}}))
		return storage.Key{}, 0, false
	}
	p := conn.Principal
	return storage.Key{Tenant: p.Tenant, Subject: p.Subject, ID: ref.RequestID}, ref.AfterSeq, true
}

func (a *App) notFound(ctx context.Context, conn Conn, id string) {
	a.replyError(ctx, conn, id, Errorf(CodeNotFound, "no request %s", id))
}

func (a *App) handleStatus(ctx context.Context, conn Conn, f *Frame) error {
	key, _, ok := a.decodeRef(ctx, conn, f)
	if !ok {
		return nil
	}
	r, err := a.cfg.Store.GetRequest(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			a.notFound(ctx, conn, key.ID)
			return nil
		}
		a.replyError(ctx, conn, key.ID, unavailable())
		return fmt.Errorf("streamer: read request %s: %w", key.ID, err)
	}
	return a.replyStatus(ctx, conn, r)
}

// replyStatus answers with the status message of r.
func (a *App) replyStatus(ctx context.Context, conn Conn, r storage.Request) error {
	m, err := a.statusMessage(ctx, r)
	if err != nil {
		a.replyError(ctx, conn, r.Key.ID, failure(err))
		return err
	}
	a.reply(ctx, conn, m)
	return nil
}

// statusMessage describes a stored request.
func (a *App) statusMessage(ctx context.Context, r storage.Request) (*Message, error) {
	last, err := a.lastEvent(ctx, r.Key)
	if err != nil {
		return nil, err
	}
	m := &Message{
		Type: TypeStatus, RequestID: r.Key.ID, Action: r.Action, Status: string(r.Status),
		Seq: last.Seq, Percentage: last.Percentage, Message: last.Message, Error: r.Error,
		CreatedAt: r.CreatedAt.UnixMilli(), UpdatedAt: r.UpdatedAt.UnixMilli(),
	}
	if r.Status == storage.StatusSucceeded {
		m.Result = r.Result
		if len(m.Result) == 0 || len(m.Result) > MaxMessageSize-1024 {
			// Too large to repeat here: the client resumes to get the chunks.
			m.Result = nil
			m.Chunks = r.ResultChunks
		}
	}
	return m, nil
}

func (a *App) handleResume(ctx context.Context, conn Conn, f *Frame) error {
	key, after, ok := a.decodeRef(ctx, conn, f)
	if !ok {
		return nil
	}
	r, err := a.cfg.Store.GetRequest(ctx, key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			a.notFound(ctx, conn, key.ID)
			return nil
		}
		a.replyError(ctx, conn, key.ID, unavailable())
		return fmt.Errorf("streamer: read request %s: %w", key.ID, err)
	}
	// Subscribe first, then replay: an event stored meanwhile is sent live,
	// replayed, or both; never neither. Clients drop duplicate seqs.
	if !r.Status.Final() && r.ConnectionID != conn.ID {
		if err := a.cfg.Store.Subscribe(ctx, key, conn.ID, a.subscriptionExpiry(conn.Principal)); err != nil {
			a.replyError(ctx, conn, key.ID, unavailable())
			return fmt.Errorf("streamer: subscribe %s: %w", key.ID, err)
		}
	}
	const page = 100
	for {
		evs, err := a.cfg.Store.ReadEvents(ctx, key, after, page)
		if err != nil {
			a.replyError(ctx, conn, key.ID, unavailable())
			return fmt.Errorf("streamer: read events of %s: %w", key.ID, err)
		}
		for _, ev := range evs {
			if err := a.sendReply(ctx, conn, ev.Data); err != nil {
				// The connection is gone or failing: the client resumes
				// again when it reconnects, so this is not an error.
				a.log.Debug().Err(err).Str("connection_id", conn.ID).Str("request_id", key.ID).Msg("replay stopped")
				return nil //nolint:nilerr // see above
			}
			after = ev.Seq
		}
		if len(evs) < page {
			return nil
		}
	}
}

func (a *App) handleCancel(ctx context.Context, conn Conn, f *Frame) error {
	key, _, ok := a.decodeRef(ctx, conn, f)
	if !ok {
		return nil
	}
	r, err := a.cfg.Store.CancelRequest(ctx, key, a.now())
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			a.notFound(ctx, conn, key.ID)
			return nil
		}
		a.replyError(ctx, conn, key.ID, unavailable())
		return fmt.Errorf("streamer: cancel %s: %w", key.ID, err)
	}
	if err := a.replyStatus(ctx, conn, r); err != nil {
		return err
	}
	if r.Status.Final() {
		return nil
	}
	_, err = a.settleCancel(ctx, r)
	return err
}

// settleCancel ends what the cancel of r (now canceling) asks for: a run in
// this process stops at once; a request no processor holds is finished
// here (finished is true); one held elsewhere stops when its processor
// notices, which stores the terminal event.
func (a *App) settleCancel(ctx context.Context, r storage.Request) (finished bool, err error) {
	if a.cancelLocal(r.Key) {
		return false, nil
	}
	if r.Attempt == 0 || !r.LeaseUntil.After(a.now()) {
		return true, a.finishCanceled(ctx, r)
	}
	return false, nil
}

// ErrCanceled is the cause of a handler's context when its request was
// canceled by the client.
var ErrCanceled = errors.New("streamer: request canceled")

// storeError marks a failure of the Store in the router, so that it is
// answered UNAVAILABLE rather than INTERNAL_ERROR.
type storeError struct{ err error }

// storeFailed wraps err, a failure of the Store, in the UNAVAILABLE error
// the client gets (the code middleware such as Logging sees too).
func storeFailed(err error) error { return unavailable().WithCause(&storeError{err}) }

func (e *storeError) Error() string { return e.err.Error() }
func (e *storeError) Unwrap() error { return e.err }

// isStoreError reports whether err's chain holds a failure of the Store.
func isStoreError(err error) bool {
	var se *storeError
	return errors.As(err, &se)
}

// unavailable is the answer to a frame the Store failed to serve.
func unavailable() *Error { return Unavailable(UnavailableRetryAfter) }

// failure is the answer to a frame the router failed to serve with err:
// UNAVAILABLE when the Store failed, INTERNAL_ERROR otherwise.
func failure(err error) *Error {
	if isStoreError(err) {
		return unavailable()
	}
	return NewError(CodeInternal, "internal error")
}
