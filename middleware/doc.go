// Package middleware holds Streamer's standard middleware and its JWT
// authenticator.
//
// # Authentication
//
// [JWT] implements [streamer.Authenticator]: it verifies the token a client
// presents when it connects (HS256 with a shared secret, RS256/ES256 with
// static public keys), against an algorithm allow-list that never admits
// "none". [TokenFromRequest] and [TokenFromMaps] find the token in a
// handshake. [SignHS256] mints development tokens. [Auth] then re-checks,
// for every message, that the connection's token has not expired since.
//
// # Middleware
//
// Each middleware is a [streamer.Middleware], func(Handler) Handler, in a
// file of its own:
//
//   - [Recover] turns panics into INTERNAL_ERROR and logs the stack.
//   - [Logging] writes one line of attributes per request.
//   - [Timeout] bounds the rest of the chain and reports TIMEOUT.
//   - [Auth] refuses messages whose token expired after connecting.
//   - [RateLimit] refuses requests over a token bucket with RATE_LIMITED.
//   - [Validate] checks the payload of plain handlers against a struct.
//
// Tracing and metrics are drop-ins of the same shape: a function of their
// config returning a [streamer.Middleware].
//
// # Ordering
//
// Middleware declared first is outermost: it runs first and sees the
// result last. [streamer.Chain](h, a, b, c) serves a request as
// a(b(c(h))). App middleware wraps plugin middleware, which wraps action
// middleware. A useful order is
//
//	[]streamer.Middleware{
//		middleware.Logging(log),                  // sees every outcome, timing included
//		middleware.Recover(log),                  // so Logging sees INTERNAL_ERROR, not a panic
//		middleware.Auth(middleware.AuthOptions{}), // refuse before doing work
//		middleware.RateLimit(middleware.RateLimitOptions{Limiter: limiter, Rule: rule}),
//		middleware.Timeout(10 * time.Second),
//		middleware.Validate[ReportRequest](),
//	}
//
// # Stages
//
// The router and the processor run the same chain at three stages
// ([streamer.Request.Stage]): [streamer.StageSync] runs the handler at
// once; [streamer.StageAdmit] admits an async request, the chain ending in
// storing it, so a refusal there means nothing is stored;
// [streamer.StageProcess] runs a stored request. Every middleware here works
// at each stage; [Auth], [RateLimit] and [Validate] document what they skip
// at StageProcess, where the request was already admitted.
//
// The router runs the whole chain before its own checks that read the
// payload (scopes, payload size, the handler's validator), so middleware
// such as [RateLimit] refuses a flood of invalid frames as it refuses
// valid ones (docs/protocol.md, admission order).
package middleware
