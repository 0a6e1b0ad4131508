package streamer

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/streamer-go/streamer/ratelimit"
)

// RateKey says whose bucket a rate-limited request takes a token from.
type RateKey int

// Rate keys. The zero value is RateKeyPrincipal.
const (
	// RateKeyPrincipal gives each principal (tenant and subject) a bucket
	// of its own, whatever connection it uses.
	RateKeyPrincipal RateKey = iota
	// RateKeyTenant gives each tenant one bucket that its principals
	// share. A principal without a tenant has a bucket of its own.
	RateKeyTenant
	// RateKeyConnection gives each connection a bucket of its own. A
	// request submitted by server code ([App.Submit]) has no connection
	// and takes from its principal's bucket.
	RateKeyConnection
	// RateKeyGlobal is one bucket that everyone shares: on an action
	// ([ActionOptions.RateLimit]), a limit on the action whoever calls
	// it; on the App ([Config.RateLimit]), on the whole App.
	RateKeyGlobal
)

// String returns "principal", "tenant", "connection" or "global".
func (k RateKey) String() string {
	switch k {
	case RateKeyPrincipal:
		return "principal"
	case RateKeyTenant:
		return "tenant"
	case RateKeyConnection:
		return "connection"
	case RateKeyGlobal:
		return "global"
	default:
		return "RateKey(" + strconv.Itoa(int(k)) + ")"
	}
}

// RateLimit declares a token-bucket rate limit, enforced by the App with
// [Config.Limiter]: each request takes one token from the bucket its Key
// names, and a request that finds none is refused with RATE_LIMITED
// (retryable, details {"retry_after_ms": N}, see [RateLimited]) before
// anything reads its payload or the store. The zero value is no limit.
type RateLimit struct {
	// Rule is the bucket's rate and burst (see [ratelimit.Rule]; Per zero
	// means a second, Burst zero the rate rounded up). A zero Rate means
	// no limit; a negative one is refused by [New].
	Rule ratelimit.Rule
	// Key picks the bucket. Default [RateKeyPrincipal].
	Key RateKey
	// FailOpen admits requests when the Limiter fails (its storage is
	// down). By default they are refused with UNAVAILABLE, retryable.
	FailOpen bool
}

// enabled reports whether l limits anything.
func (l RateLimit) enabled() bool { return l.Rule.Rate != 0 }

// limit is a [RateLimit] ready to take from: its rule normalized, its
// buckets named apart from every other limit's.
type limit struct {
	prefix   string // "len:name|", so no two limits share a bucket
	rule     ratelimit.Rule
	key      RateKey
	failOpen bool
}

// Bucket names of the App's own limits; an action's is "action:NAME".
const (
	appLimitName      = "app"
	reservedLimitName = "reserved"
)

// compileLimit checks l and returns it ready, or nil when l limits nothing.
func compileLimit(name string, l RateLimit) (*limit, error) {
	if !l.enabled() {
		return nil, nil
	}
	if l.Key < RateKeyPrincipal || l.Key > RateKeyGlobal {
		return nil, fmt.Errorf("unknown RateKey %d", int(l.Key))
	}
	r, err := l.Rule.Normalize()
	if err != nil {
		return nil, err
	}
	return &limit{prefix: strconv.Itoa(len(name)) + ":" + name + "|", rule: r, key: l.Key, failOpen: l.FailOpen}, nil
}

// bucket names the bucket a request of principal p on connection connID
// takes from.
func (l *limit) bucket(p *Principal, connID string) string {
	principal := func() string {
		return "p:" + strconv.Itoa(len(p.Tenant)) + ":" + p.Tenant + ":" + p.Subject
	}
	switch l.key {
	case RateKeyTenant:
		if p.Tenant != "" {
			return l.prefix + "t:" + p.Tenant
		}
	case RateKeyConnection:
		if connID != "" {
			return l.prefix + "c:" + connID
		}
	case RateKeyGlobal:
		return l.prefix + "g"
	}
	return l.prefix + principal()
}

// take takes a token of l for a request of p on connID. It returns nil
// when the request may go on, RATE_LIMITED when the bucket is empty, and
// UNAVAILABLE (wrapping the failure, a store error) when the Limiter
// failed and l does not fail open. A nil l admits everything.
func (a *App) take(ctx context.Context, l *limit, p *Principal, connID string) *Error {
	if l == nil {
		return nil
	}
	d, err := a.limiter.Take(ctx, l.bucket(p, connID), l.rule, 1)
	switch {
	case err != nil && l.failOpen:
		a.log.Warn().Err(err).Msg("rate limiter failed; admitting (fail open)")
		return nil
	case err != nil:
		return unavailable().WithCause(&storeError{fmt.Errorf("streamer: rate limiter: %w", err)})
	case !d.Allowed:
		return RateLimited(d.RetryAfter)
	}
	return nil
}

// limitFrame is the App's own admission step (Config.RateLimit and
// Config.ReservedRateLimit): it takes a token for frame f of conn, right
// after the frame was decoded and its principal's token checked, before
// anything reads the store. A refused frame is answered here, and
// limitFrame returns false; the error is a failure of the Limiter's
// storage (also answered, UNAVAILABLE).
func (a *App) limitFrame(ctx context.Context, conn Conn, f *Frame) (bool, error) {
	l := a.appLimit
	if Reserved(f.Action) {
		l = a.reservedLimit
	}
	e := a.take(ctx, l, conn.Principal, conn.ID)
	if e == nil {
		return true, nil
	}
	a.mRefusedFrame(f.Action, e.Code)
	a.replyError(ctx, conn, refusalID(f), e)
	if isStoreError(e) {
		return false, e
	}
	return false, nil
}

// refusalID is the request_id of a refusal of f before it is handled: the
// frame's id, but for status, resume and cancel, whose every answer
// carries the request_id of their payload (clients match answers to those
// calls by it), that request_id when it is valid.
func refusalID(f *Frame) string {
	switch f.Action {
	case ActionStatus, ActionResume, ActionCancel:
		var ref struct {
			RequestID string `json:"request_id"`
		}
		if len(f.Payload) > 0 && f.Payload[0] == '{' && json.Unmarshal(f.Payload, &ref) == nil && ValidName(ref.RequestID) {
			return ref.RequestID
		}
	}
	return f.ID
}
