package streamer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/streamer-go/streamer/storage"
)

// SubmitOptions are the options of [App.Submit].
type SubmitOptions struct {
	// NotBefore delays the request: no processor claims it before then. The
	// zero time, or a time already past, means at once. It may be at most
	// Config.Retention, less the action's async timeout and Config.Lease,
	// from now, so that the run still fits in the request's retention;
	// later is refused with VALIDATION_ERROR.
	NotBefore time.Time
	// IdempotencyKey, when set, is the request's id, and follows the rules
	// of a frame's id (1-128 characters of [A-Za-z0-9_.:-]). Submitting
	// again with the same key, action and payload for the same principal
	// stores nothing new and returns the existing request (Existing set),
	// even once it has finished (retention permitting); the same key with
	// a different action or payload is refused with CONFLICT. Ids are
	// shared with the WebSocket protocol's: a frame from a client of the
	// principal carrying this id attaches to the request, as protocol
	// section 2 says. Empty: the App makes an id as the router does
	// (Config.NewID, ULIDs by default), and every call stores a new request.
	IdempotencyKey string
	// Metadata is stored with the request and given to its handler, as a
	// frame's metadata is. It is not part of the idempotency check.
	Metadata map[string]string
}

// SubmitResult describes the request [App.Submit] stored or found.
type SubmitResult struct {
	// ID is the request's id: what a client of the principal sends in
	// resume, status and cancel.
	ID string
	// Status is the request's status: queued for a new request, the current
	// one for an existing request.
	Status storage.Status
	// Seq is the request's last stored seq: 0 for a new request.
	Seq int64
	// Existing is set when the idempotency key named a request stored
	// before, with the same action and payload: nothing new was stored.
	Existing bool
}

// Submit stores an asynchronous request on behalf of principal p, from
// backend code (an HTTP handler, a cron job, another Lambda) rather than a
// WebSocket frame, and returns its id. It runs the admission a frame of an
// async request gets: the action is looked up, the payload's size is
// checked (the action's MaxPayload, and 128 KiB, a frame's limit), the
// principal's scopes, the handler's Validator, then the whole middleware
// chain at [StageAdmit], whose end stores the request queued. The
// processor then runs it: the embedded worker of [App.Run] in this
// process, or on AWS the table's stream, whichever process called Submit.
//
// The request has no connection (Request.ConnectionID is empty): its events
// are stored, and sent to the connections that subscribe to it. A client
// authenticated as the same principal (the same tenant and subject) follows
// it with resume, or reads it with status, by the returned id.
//
// payload is marshaled with encoding/json; a json.RawMessage is taken as
// is, and nil (or JSON null) means no payload. Actions declared
// [ModeSync] answer a connection at once and cannot be submitted; [ModeAuto]
// actions are submitted as async ones, whatever their estimate.
//
// Every refusal is an [*Error] with a protocol code: INVALID_ACTION (an
// unknown, reserved or sync action), RATE_LIMITED (Config.RateLimit, or
// the action's ActionOptions.RateLimit, taken right after the action is
// looked up), PAYLOAD_TOO_LARGE, FORBIDDEN,
// VALIDATION_ERROR, UNAUTHORIZED (a principal without a subject), CONFLICT
// (an idempotency key reused with another action or payload), UNAVAILABLE
// (the store failed: retryable, and with an idempotency key safe to call
// again), or the code a middleware chose; another middleware error becomes
// INTERNAL_ERROR, wrapping it.
func (a *App) Submit(ctx context.Context, p Principal, action string, payload any, opts SubmitOptions) (SubmitResult, error) {
	res, err := a.submit(ctx, p, action, payload, opts)
	if err != nil {
		code := CodeInternal
		var se *Error
		if errors.As(err, &se) {
			code = se.Code
		}
		a.mRequest(action, outcomeRefused, code)
	} else {
		a.mRequest(action, outcomeAccepted, "")
	}
	return res, err
}

// submit is Submit but for its metric.
func (a *App) submit(ctx context.Context, p Principal, action string, payload any, opts SubmitOptions) (SubmitResult, error) {
	if p.Subject == "" {
		return SubmitResult{}, NewError(CodeUnauthorized, "the principal has no subject")
	}
	rt, ok := a.routes[action]
	if !ok {
		return SubmitResult{}, unknownAction(action, a.available(&p))
	}
	if rt.action.Options.Mode == ModeSync {
		return SubmitResult{}, Errorf(CodeInvalidAction, "action %s is synchronous (ModeSync): it answers a connection at once and cannot be submitted", action)
	}
	// The App's limit on actions, then the action's own, as a frame's.
	for _, l := range []*limit{a.appLimit, rt.limit} {
		if e := a.take(ctx, l, &p, ""); e != nil {
			return SubmitResult{}, e
		}
	}
	id := opts.IdempotencyKey
	if id == "" {
		id = a.cfg.NewID()
	} else if !ValidName(id) {
		return SubmitResult{}, (&Error{Code: CodeValidation, Message: "the idempotency key is not a valid request id"}).
			WithDetails([]FieldError{{Field: "idempotency_key", Rule: "request_id", Message: "the idempotency key must be 1-128 characters of [A-Za-z0-9_.:-]"}})
	}
	raw, err := submitPayload(payload)
	if err != nil {
		return SubmitResult{ID: id}, err
	}
	opt := &rt.action.Options
	if len(raw) > MaxMessageSize {
		return SubmitResult{ID: id}, Errorf(CodePayloadTooLarge, "the payload is %d bytes; a request carries at most %d", len(raw), MaxMessageSize)
	}
	if opt.MaxPayload > 0 && len(raw) > opt.MaxPayload {
		return SubmitResult{ID: id}, Errorf(CodePayloadTooLarge, "the payload is %d bytes; %s accepts at most %d", len(raw), action, opt.MaxPayload)
	}
	for _, s := range opt.Scopes {
		if !p.HasScope(s) {
			return SubmitResult{ID: id}, Errorf(CodeForbidden, "action %s requires scope %q", action, s)
		}
	}
	now := a.now()
	notBefore := opts.NotBefore
	if !notBefore.After(now) {
		notBefore = time.Time{}
	}
	if latest := now.Add(a.cfg.Retention - a.timeout(rt, ModeAsync) - a.cfg.Lease); notBefore.After(latest) {
		return SubmitResult{ID: id}, (&Error{Code: CodeValidation, Message: fmt.Sprintf("NotBefore is more than %s away: the run would outlive the request's retention", latest.Sub(now))}).
			WithDetails([]FieldError{{Field: "not_before", Rule: "lte", Message: "NotBefore must leave the run within the retention"}})
	}
	req := &Request{ID: id, Action: action, Payload: raw, Metadata: opts.Metadata, Principal: p}
	if v, ok := rt.action.Handler.(Validator); ok {
		if err := v.Validate(ctx, req); err != nil {
			return SubmitResult{ID: id}, asValidation(err)
		}
	}

	req.Stage = StageAdmit
	ad := &admission{app: a, notBefore: notBefore, route: rt, checked: true}
	actx, sp := a.startSpan(ctx, SpanAdmit) // a child of the caller's span
	spanAttrs(sp, id, action)
	_, err = a.serve(context.WithValue(actx, admitKey{}, ad), Chain(admitTerminal, rt.mw...), req, Discard)
	endSpan(sp, err)
	if err != nil {
		return SubmitResult{ID: id}, a.submitError(ctx, req, err)
	}
	if ad.ack == nil {
		return SubmitResult{ID: id}, NewError(CodeInternal, "a middleware ended the admission without an error, and nothing was stored")
	}
	key := storage.Key{Tenant: p.Tenant, Subject: p.Subject, ID: id}
	if ad.queued {
		a.notifyAction(key, action, notBefore)
	}
	return SubmitResult{ID: id, Status: storage.Status(ad.ack.Status), Seq: ad.ack.Seq, Existing: !ad.queued}, nil
}

// submitPayload encodes a payload given to Submit as a frame would carry
// it: nil for none.
func submitPayload(payload any) (json.RawMessage, error) {
	var raw json.RawMessage
	switch v := payload.(type) {
	case nil:
		return nil, nil
	case json.RawMessage:
		raw = bytes.TrimSpace(v)
		if len(raw) > 0 && !json.Valid(raw) {
			return nil, NewError(CodeValidation, "the payload is not valid JSON")
		}
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, NewError(CodeValidation, "the payload cannot be encoded as JSON").WithCause(err)
		}
		raw = b
	}
	if len(raw) == 0 || isNull(raw) {
		return nil, nil
	}
	return raw, nil
}

// submitError is the error Submit returns for a failed admission chain: an
// [*Error] as it is (a store failure is UNAVAILABLE), a deadline TIMEOUT,
// anything else INTERNAL_ERROR wrapping it.
func (a *App) submitError(ctx context.Context, req *Request, err error) error {
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	b := a.handlerError(ctx, req, err, CodeInternal)
	return NewError(b.Code, b.Message).WithCause(err)
}
