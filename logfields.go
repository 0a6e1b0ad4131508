package streamer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"sync"

	"github.com/rs/zerolog"
)

// Log fields of a request: every line logged through the logger of a
// request's context (zerolog.Ctx, see [App] and middleware.Logging) has
// them. The principal is never logged as it is: [PrincipalHash] stands
// for it.
const (
	LogRequestID = "request_id"
	LogAction    = "action"
	LogPrincipal = "principal"
	LogStage     = "stage"
	LogAttempt   = "attempt"
)

// PrincipalHash is what logs say instead of a principal's subject and
// tenant: the first 16 hex digits of the SHA-256 of the tenant, a zero
// byte and the subject. It tells one principal's lines from another's
// and finds them all, without writing who it is; it does not hide a
// subject that can be guessed (an email address), whose hash anyone can
// compute, so logs stay as confidential as the rest of the operator's
// data.
func PrincipalHash(p *Principal) string {
	h := sha256.New()
	h.Write([]byte(p.Tenant))
	h.Write([]byte{0})
	h.Write([]byte(p.Subject))
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])[:8])
}

// requestLogContext returns ctx with a logger for req (zerolog.Ctx): the
// logger ctx already carries, or the App's, with the fields request_id,
// action, principal (a hash, see [PrincipalHash]), stage and attempt,
// and ctx itself for the logger's hooks (lambdaapp's adds the Lambda
// request id). Handlers log through it. When both loggers are disabled,
// ctx is returned as it is, at no cost. The logger is made when it is
// first asked for (see logContext): most requests never log, and making
// it was 5 % of the CPU of an echo.
func (a *App) requestLogContext(ctx context.Context, req *Request) context.Context {
	base := zerolog.Ctx(ctx)
	if quiet(base) {
		if a.logQuiet {
			return ctx
		}
		// In ctx, for logContext.Value to find (WithContext stores a
		// copy: base is that copy).
		ctx = a.log.WithContext(ctx)
		base = zerolog.Ctx(ctx)
	}
	return &logContext{
		Context: ctx, base: base,
		id: req.ID, action: req.Action, principal: Principal{Tenant: req.Principal.Tenant, Subject: req.Principal.Subject},
		stage: req.Stage, attempt: req.Attempt,
	}
}

// logContext is a request's context whose logger, the one zerolog.Ctx
// returns, is made on first use: a lookup that finds the base logger
// (below it in the chain of contexts) gets the request's logger instead.
// Every other lookup, Done, Err and Deadline are its parent's, so the
// contexts made from it (a timeout, a cancel) attach to the parent's
// cancellation as usual.
type logContext struct {
	context.Context
	base *zerolog.Logger

	id, action string
	principal  Principal
	stage      Stage
	attempt    int

	once sync.Once
	l    zerolog.Logger
}

// Value returns the request's logger in place of the base logger.
func (c *logContext) Value(key any) any {
	v := c.Context.Value(key)
	if l, ok := v.(*zerolog.Logger); ok && l == c.base {
		c.once.Do(func() {
			c.l = requestFields(c.base.With().Ctx(c.Context), c.id, c.action, &c.principal, c.stage, c.attempt).Logger()
		})
		return &c.l
	}
	return v
}

// quiet reports whether l logs nothing: disabled, or the zero Logger.
func quiet(l *zerolog.Logger) bool {
	return l.GetLevel() == zerolog.Disabled || reflect.ValueOf(*l).IsZero()
}

// rlog is the App's logger with the fields of the request st runs (the
// stage is process; the principal, from the request's key, is hashed),
// for the processor's own lines about it. They are rare (failures), so it
// is built for each.
func (st *runState) rlog() *zerolog.Logger {
	base := st.app.log
	if st.opsCtx != nil {
		base = base.With().Ctx(st.opsCtx).Logger()
	}
	l := requestFields(base.With(), st.key.ID, st.req.Action, &Principal{Tenant: st.key.Tenant, Subject: st.key.Subject},
		StageProcess, attemptNumber(st.req)).Logger()
	return &l
}

// reqLog is the App's logger with the fields of req, for the router's own
// lines about it (rare: failures).
func (a *App) reqLog(ctx context.Context, req *Request) *zerolog.Logger {
	l := requestFields(a.log.With().Ctx(ctx), req.ID, req.Action, &req.Principal, req.Stage, req.Attempt).Logger()
	return &l
}

// requestFields adds the fields of a request's log lines to c: the
// request id, action, principal (hashed), stage and attempt.
func requestFields(c zerolog.Context, id, action string, p *Principal, stage Stage, attempt int) zerolog.Context {
	return c.Str(LogRequestID, id).
		Str(LogAction, action).
		Str(LogPrincipal, PrincipalHash(p)).
		Stringer(LogStage, stage).
		Int(LogAttempt, attempt)
}
