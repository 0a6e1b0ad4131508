package middleware

import (
	"context"
	"strconv"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/ratelimit"
)

// RateLimitKey names the bucket a request takes from. An empty key means
// the limit does not apply to the request.
type RateLimitKey func(req *streamer.Request) string

// ByPrincipal keys buckets by the request's principal (tenant and subject):
// each principal has its own bucket, whatever connection it uses.
func ByPrincipal(req *streamer.Request) string {
	t := req.Principal.Tenant
	return "p:" + strconv.Itoa(len(t)) + ":" + t + ":" + req.Principal.Subject
}

// ByTenant keys buckets by the principal's tenant: a tenant's principals
// share one. A principal without a tenant has a bucket of its own
// ([ByPrincipal]).
func ByTenant(req *streamer.Request) string {
	if req.Principal.Tenant == "" {
		return ByPrincipal(req)
	}
	return "t:" + req.Principal.Tenant
}

// ByConnection keys buckets by the connection that sent the request. A
// request submitted by server code ([streamer.App.Submit]) has none and
// takes from its principal's bucket ([ByPrincipal]).
func ByConnection(req *streamer.Request) string {
	if req.ConnectionID == "" {
		return ByPrincipal(req)
	}
	return "c:" + req.ConnectionID
}

// ByAction keys buckets by action: every principal's requests of one
// action share a bucket, a global limit on the action.
func ByAction(req *streamer.Request) string { return "a:" + req.Action }

// RateLimitOptions configure [RateLimit].
type RateLimitOptions struct {
	// Limiter holds the buckets: ratelimit/memory in one process,
	// ratelimit/dynamodb on Lambda. Required.
	Limiter ratelimit.Limiter
	// Rule is the bucket's rate and burst. Required (a positive Rate).
	Rule ratelimit.Rule
	// Key picks the bucket. Nil means [ByPrincipal].
	Key RateLimitKey
	// Name tells limits apart that share a Limiter: buckets of limits
	// with different names are distinct, so a per-action limit keyed
	// ByPrincipal does not take from the global one. Empty means "global".
	Name string
	// Cost is the tokens each request takes. Zero means 1.
	Cost int
	// FailOpen admits requests when the Limiter fails (its storage is
	// down). By default such requests are refused with UNAVAILABLE,
	// retryable.
	FailOpen bool
}

// RateLimit refuses requests over a token bucket with RATE_LIMITED:
// retryable, with details {"retry_after_ms": N} saying when the bucket will
// hold the request's tokens. It acts where a request enters: at
// [streamer.StageSync] and [streamer.StageAdmit], before the request is run
// or stored. At [streamer.StageProcess] it passes the request through: it
// was counted when admitted.
//
// Declare it globally (Config.Middleware) to limit every action, or on
// one action (Action.Middleware) with a Name of its own. The router runs
// the middleware before decoding and validating the payload, so a flood
// of invalid frames is limited as valid ones are. Reserved actions (ping,
// status, resume, cancel, actions, list) do not run the chain and are not
// limited by it: the App's own limit, [streamer.Config.RateLimit], covers
// them too, and is what `streamer dev --rate-limit` and STREAMER_RATE_LIMIT
// set; [streamer.ActionOptions.RateLimit] declares an action's limit
// without middleware. RateLimit remains for limits keyed otherwise (any
// [RateLimitKey]) or costing more than a token.
//
// RateLimit panics if opts has no Limiter or an invalid Rule or Cost: a
// configuration error, found at start.
func RateLimit(opts RateLimitOptions) streamer.Middleware {
	if opts.Limiter == nil {
		panic("middleware: RateLimitOptions.Limiter is required")
	}
	if opts.Key == nil {
		opts.Key = ByPrincipal
	}
	if opts.Name == "" {
		opts.Name = "global"
	}
	if opts.Cost == 0 {
		opts.Cost = 1
	}
	rule, err := opts.Rule.Normalize()
	if err != nil {
		panic("middleware: RateLimitOptions.Rule: " + err.Error())
	}
	if opts.Cost < 1 || opts.Cost > rule.Burst {
		panic("middleware: RateLimitOptions.Cost must be 1 to the rule's burst")
	}
	prefix := strconv.Itoa(len(opts.Name)) + ":" + opts.Name + "|"
	return func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			if req.Stage == streamer.StageProcess {
				return next.Serve(ctx, req, rep)
			}
			key := opts.Key(req)
			if key == "" {
				return next.Serve(ctx, req, rep)
			}
			d, err := opts.Limiter.Take(ctx, prefix+key, rule, opts.Cost)
			switch {
			case err != nil && opts.FailOpen:
				return next.Serve(ctx, req, rep)
			case err != nil:
				return nil, streamer.Unavailable(streamer.UnavailableRetryAfter).WithCause(err)
			case !d.Allowed:
				return nil, streamer.RateLimited(d.RetryAfter)
			}
			return next.Serve(ctx, req, rep)
		})
	}
}
