package middleware

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamer-go/streamer"
)

// DefaultLeeway is the clock skew [JWT] and [Auth] tolerate when
// [JWTConfig.Leeway] or [AuthOptions.Leeway] is zero.
const DefaultLeeway = 30 * time.Second

// MinSecretLen is the shortest HS256 secret, in bytes, that [NewJWT] and
// [SignHS256] accept (RFC 7518 section 3.2: at least the hash size).
const MinSecretLen = 32

// maxTokenLen bounds the token Authenticate parses; longer input is refused
// as malformed before any decoding.
const maxTokenLen = 16 << 10

// Reasons a token is refused. Each wraps [streamer.ErrUnauthorized], so a
// caller may branch on the reason or on ErrUnauthorized alone with
// errors.Is.
var (
	// ErrTokenMissing: no token was presented.
	ErrTokenMissing = unauthorized("no token")
	// ErrTokenMalformed: the token is not a well-formed JWT.
	ErrTokenMalformed = unauthorized("malformed token")
	// ErrAlgorithmNotAllowed: the token's alg is missing, unknown, "none", or
	// outside [JWTConfig.Algorithms].
	ErrAlgorithmNotAllowed = unauthorized("token algorithm not allowed")
	// ErrUnknownKey: the token's kid names no key of [JWTConfig.Keys] nor
	// of the key set at [JWTConfig.JWKSURL] (or the set could not be
	// fetched), it has no kid while several keys are configured, or the key
	// does not fit the token's alg.
	ErrUnknownKey = unauthorized("no key for token")
	// ErrSignatureInvalid: the signature does not verify.
	ErrSignatureInvalid = unauthorized("bad token signature")
	// ErrTokenExpired: exp is in the past (beyond the leeway).
	ErrTokenExpired = unauthorized("token expired")
	// ErrTokenNotYetValid: nbf is in the future (beyond the leeway).
	ErrTokenNotYetValid = unauthorized("token not yet valid")
	// ErrNoExpiry: the token has no exp claim; exp is required.
	ErrNoExpiry = unauthorized("token has no exp claim")
	// ErrNoSubject: the token has no sub claim, or an empty one.
	ErrNoSubject = unauthorized("token has no sub claim")
	// ErrWrongIssuer: iss differs from [JWTConfig.Issuer].
	ErrWrongIssuer = unauthorized("wrong token issuer")
	// ErrWrongAudience: aud does not contain [JWTConfig.Audience].
	ErrWrongAudience = unauthorized("wrong token audience")
	// ErrInvalidClaim: a claim has the wrong JSON type (such as a string
	// exp, or a tenant_id that is not a string).
	ErrInvalidClaim = unauthorized("invalid token claim")
)

func unauthorized(reason string) error {
	return fmt.Errorf("%w: %s", streamer.ErrUnauthorized, reason)
}

// JWTConfig configures [NewJWT]. At least one of Secret, Keys and JWKSURL
// is required.
type JWTConfig struct {
	// Secret is the HS256 key, for development and single-service setups.
	// It must be at least [MinSecretLen] bytes.
	Secret []byte
	// Keys are static public keys by kid, for RS256, PS256, ES256 and EdDSA
	// tokens: *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey. A token
	// with a kid uses that key. A token without kid uses the only key when
	// exactly one is configured, and is refused otherwise.
	Keys map[string]crypto.PublicKey
	// JWKSURL, when set, is where more public keys are fetched from: a JSON
	// Web Key Set (RFC 7517) of RSA, EC (P-256/384/521) and Ed25519 keys,
	// as identity providers publish at .well-known/jwks.json. It must be
	// https (http only on a loopback host). The set is fetched at the first
	// token, kept for JWKSTTL, and fetched again, at most once per
	// JWKSMinRefetch, when a token names a kid it lacks: so keys rotate
	// without a restart. A kid of Keys wins over the set's. A fetch that
	// fails keeps the keys held; the token is refused only when its key is
	// not among them.
	JWKSURL string
	// JWKSTTL is how long a fetched key set is used before it is fetched
	// again. Zero means [DefaultJWKSTTL].
	JWKSTTL time.Duration
	// JWKSMinRefetch is the least time between two fetches of the key set.
	// Zero means [DefaultJWKSMinRefetch].
	JWKSMinRefetch time.Duration
	// HTTPClient fetches the key set; nil means a client with a 10 second
	// timeout.
	HTTPClient *http.Client
	// Algorithms is the allow-list of alg values (HS256/384/512,
	// RS256/384/512, PS256/384/512, ES256/384/512, EdDSA). Empty means HS256
	// when Secret is set, plus RS256 and ES256 when Keys or JWKSURL is set
	// (EdDSA only when listed). "none" is never allowed: listing it is a
	// configuration error.
	Algorithms []string
	// Issuer, when set, must equal the token's iss.
	Issuer string
	// Audience, when set, must be one of the token's aud.
	Audience string
	// Leeway is the clock skew tolerated on exp and nbf. Zero means
	// [DefaultLeeway]; a negative value means none.
	Leeway time.Duration
	// Now returns the current time; nil means time.Now. For tests.
	Now func() time.Time
}

// JWT verifies JSON Web Tokens. It implements [streamer.Authenticator] and
// is safe for concurrent use.
type JWT struct {
	secret  []byte
	keys    map[string]crypto.PublicKey
	jwks    *jwks // nil without JWKSURL
	allowed map[string]bool
	parser  *jwt.Parser
}

var _ streamer.Authenticator = (*JWT)(nil)

// algFamily says which key an alg verifies with.
type algFamily int

const (
	familyHMAC algFamily = iota + 1
	familyRSA
	familyECDSA
	familyEdDSA
)

var knownAlgs = map[string]algFamily{
	"HS256": familyHMAC, "HS384": familyHMAC, "HS512": familyHMAC,
	"RS256": familyRSA, "RS384": familyRSA, "RS512": familyRSA,
	"PS256": familyRSA, "PS384": familyRSA, "PS512": familyRSA,
	"ES256": familyECDSA, "ES384": familyECDSA, "ES512": familyECDSA,
	"EdDSA": familyEdDSA,
}

// NewJWT validates cfg and returns a verifier. It fails when neither Secret
// nor Keys is set, when Secret is shorter than [MinSecretLen] bytes, when a
// key is not a supported public key type, and when Algorithms lists "none",
// an unknown alg, or an alg whose key kind (Secret or Keys) is not
// configured.
func NewJWT(cfg JWTConfig) (*JWT, error) {
	if len(cfg.Secret) == 0 && len(cfg.Keys) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("middleware: new JWT: set JWTConfig.Secret (HS256), JWTConfig.Keys or JWTConfig.JWKSURL (RS256/ES256/EdDSA)")
	}
	if cfg.JWKSURL != "" {
		if err := validJWKSURL(cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("middleware: new JWT: JWTConfig.JWKSURL %q: %w", cfg.JWKSURL, err)
		}
	}
	if cfg.JWKSTTL < 0 || cfg.JWKSMinRefetch < 0 {
		return nil, errors.New("middleware: new JWT: JWTConfig.JWKSTTL and JWKSMinRefetch must not be negative")
	}
	hasKeys := len(cfg.Keys) > 0 || cfg.JWKSURL != ""
	if len(cfg.Secret) > 0 && len(cfg.Secret) < MinSecretLen {
		return nil, fmt.Errorf("middleware: new JWT: JWTConfig.Secret is %d bytes; it must be at least %d", len(cfg.Secret), MinSecretLen)
	}
	for kid, k := range cfg.Keys {
		switch k.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			return nil, fmt.Errorf("middleware: new JWT: key %q is a %T; want *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey", kid, k)
		}
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		if len(cfg.Secret) > 0 {
			algs = append(algs, "HS256")
		}
		if hasKeys {
			algs = append(algs, "RS256", "ES256")
		}
	}
	allowed := make(map[string]bool, len(algs))
	for _, alg := range algs {
		if strings.EqualFold(alg, "none") {
			return nil, fmt.Errorf("middleware: new JWT: algorithm %q is never allowed: unsigned tokens prove nothing", alg)
		}
		fam, ok := knownAlgs[alg]
		switch {
		case !ok:
			return nil, fmt.Errorf("middleware: new JWT: unknown algorithm %q", alg)
		case fam == familyHMAC && len(cfg.Secret) == 0:
			return nil, fmt.Errorf("middleware: new JWT: algorithm %s needs JWTConfig.Secret", alg)
		case fam != familyHMAC && !hasKeys:
			return nil, fmt.Errorf("middleware: new JWT: algorithm %s needs JWTConfig.Keys or JWTConfig.JWKSURL", alg)
		}
		allowed[alg] = true
	}
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	opts := []jwt.ParserOption{jwt.WithExpirationRequired(), jwt.WithLeeway(leeway)}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	j := &JWT{
		secret:  slices.Clone(cfg.Secret),
		keys:    maps.Clone(cfg.Keys),
		allowed: allowed,
		parser:  jwt.NewParser(opts...),
	}
	if cfg.JWKSURL != "" {
		j.jwks = &jwks{
			url: cfg.JWKSURL, client: cfg.HTTPClient, ttl: cfg.JWKSTTL, minRefetch: cfg.JWKSMinRefetch, now: cfg.Now,
		}
		if j.jwks.client == nil {
			j.jwks.client = &http.Client{Timeout: jwksTimeout}
		}
		if j.jwks.ttl == 0 {
			j.jwks.ttl = DefaultJWKSTTL
		}
		if j.jwks.minRefetch == 0 {
			j.jwks.minRefetch = DefaultJWKSMinRefetch
		}
		if j.jwks.now == nil {
			j.jwks.now = time.Now
		}
	}
	return j, nil
}

// Authenticate verifies token and returns its principal: sub becomes
// Subject (required), tenant_id Tenant, the union of scope (space
// separated) and permissions (array of strings) Scopes, exp ExpiresAt (exp
// is required), and every claim Claims. Every failure wraps
// [streamer.ErrUnauthorized] and one of the Err reasons of this package,
// and its text says why, for the logs. It does no I/O, except to fetch the
// key set of [JWTConfig.JWKSURL] (bounded by ctx).
func (j *JWT) Authenticate(ctx context.Context, token string) (streamer.Principal, error) {
	token = strings.TrimSpace(token)
	if token == "" {
		return streamer.Principal{}, ErrTokenMissing
	}
	if len(token) > maxTokenLen {
		return streamer.Principal{}, fmt.Errorf("%w: %d bytes, more than %d", ErrTokenMalformed, len(token), maxTokenLen)
	}
	claims := jwt.MapClaims{}
	keyFor := func(t *jwt.Token) (any, error) { return j.keyFor(ctx, t) }
	if _, err := j.parser.ParseWithClaims(token, claims, keyFor); err != nil {
		return streamer.Principal{}, classify(err, claims)
	}
	return principalOf(claims)
}

var (
	errAlgNotAllowed = errors.New("alg not allowed")
	errNoKey         = errors.New("no key")
)

// keyFor is the jwt.Keyfunc: it enforces the allow-list, then picks the key
// by the alg's family, so a token can never make a public key serve as an
// HMAC secret.
func (j *JWT) keyFor(ctx context.Context, t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	if !j.allowed[alg] {
		return nil, fmt.Errorf("%w: %q", errAlgNotAllowed, alg)
	}
	fam := knownAlgs[alg]
	if fam == familyHMAC {
		return j.secret, nil
	}
	var (
		key crypto.PublicKey
		kid string
	)
	switch v := t.Header["kid"].(type) {
	case string:
		kid = v
		k, ok := j.keys[kid]
		switch {
		case ok:
			key = k
		case j.jwks != nil:
			jk, err := j.jwks.key(ctx, kid)
			if err != nil {
				return nil, err
			}
			if jk.alg != "" && jk.alg != alg {
				return nil, fmt.Errorf("%w: key %q is for %s, not %s", errNoKey, kid, jk.alg, alg)
			}
			key = jk.key
		default:
			return nil, fmt.Errorf("%w: unknown kid %q", errNoKey, kid)
		}
	case nil:
		switch {
		case len(j.keys) == 1 && j.jwks == nil:
			for k, v := range j.keys {
				kid, key = k, v
			}
		case len(j.keys) == 0 && j.jwks != nil:
			// the set's only key, as with Keys
			jk, err := j.jwks.key(ctx, "")
			if err != nil {
				return nil, fmt.Errorf("%w: the token has no kid: %w", errNoKey, err)
			}
			if jk.alg != "" && jk.alg != alg {
				return nil, fmt.Errorf("%w: the key is for %s, not %s", errNoKey, jk.alg, alg)
			}
			key = jk.key
		default:
			return nil, fmt.Errorf("%w: the token has no kid and %d keys are configured", errNoKey, len(j.keys))
		}
	default:
		return nil, fmt.Errorf("%w: kid is not a string", errNoKey)
	}
	var fits bool
	switch key.(type) {
	case *rsa.PublicKey:
		fits = fam == familyRSA
	case *ecdsa.PublicKey:
		fits = fam == familyECDSA
	case ed25519.PublicKey:
		fits = fam == familyEdDSA
	}
	if !fits {
		return nil, fmt.Errorf("%w: key %q does not fit alg %s", errNoKey, kid, alg)
	}
	return key, nil
}

// classify maps a jwt parse error to this package's reasons. Claim errors
// come joined; the first reason in this order wins. claims tell which
// required claim is missing, since the jwt library uses one error for all.
func classify(err error, claims jwt.MapClaims) error {
	var reason error
	switch {
	case errors.Is(err, errAlgNotAllowed):
		reason = ErrAlgorithmNotAllowed
	case errors.Is(err, errNoKey):
		reason = ErrUnknownKey
	case errors.Is(err, jwt.ErrTokenMalformed):
		reason = ErrTokenMalformed
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		// alg missing or not implemented by the jwt library
		reason = ErrAlgorithmNotAllowed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		reason = ErrSignatureInvalid
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		reason = missingClaim(claims)
	case errors.Is(err, jwt.ErrInvalidType):
		reason = ErrInvalidClaim
	case errors.Is(err, jwt.ErrTokenExpired):
		reason = ErrTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		reason = ErrTokenNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		reason = ErrWrongIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		reason = ErrWrongAudience
	default:
		reason = ErrTokenMalformed
	}
	return fmt.Errorf("%w: %w", reason, err)
}

// missingClaim names the reason a required claim is missing: exp first,
// then iss, then aud (those the parser requires).
func missingClaim(claims jwt.MapClaims) error {
	switch {
	case claims["exp"] == nil:
		return ErrNoExpiry
	case claims["iss"] == nil:
		return ErrWrongIssuer
	default:
		return ErrWrongAudience
	}
}

func principalOf(claims jwt.MapClaims) (streamer.Principal, error) {
	sub, ok := claims["sub"].(string)
	if !ok || sub == "" {
		return streamer.Principal{}, ErrNoSubject
	}
	p := streamer.Principal{Subject: sub, Claims: map[string]any(claims)}
	switch t := claims["tenant_id"].(type) {
	case nil:
	case string:
		p.Tenant = t
	default:
		return streamer.Principal{}, fmt.Errorf("%w: tenant_id must be a string", ErrInvalidClaim)
	}
	var scopes []string
	switch s := claims["scope"].(type) {
	case nil:
	case string:
		scopes = strings.Fields(s)
	default:
		return streamer.Principal{}, fmt.Errorf("%w: scope must be a space separated string", ErrInvalidClaim)
	}
	switch ps := claims["permissions"].(type) {
	case nil:
	case []any:
		for _, v := range ps {
			s, ok := v.(string)
			if !ok {
				return streamer.Principal{}, fmt.Errorf("%w: permissions must be an array of strings", ErrInvalidClaim)
			}
			scopes = append(scopes, s)
		}
	default:
		return streamer.Principal{}, fmt.Errorf("%w: permissions must be an array of strings", ErrInvalidClaim)
	}
	p.Scopes = dedupe(scopes)
	exp, err := claims.GetExpirationTime()
	if err != nil || exp == nil {
		// unreachable after the parser's checks; kept so a change there
		// cannot admit a token without expiry
		return streamer.Principal{}, ErrNoExpiry
	}
	p.ExpiresAt = exp.Time
	return p, nil
}

// dedupe drops empty and repeated scopes, keeping first-seen order.
func dedupe(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if s == "" || seen[s] {
			continue
		}
		seen[s] = true
		out = append(out, s)
	}
	return out
}

// TokenFromRequest returns the token of a WebSocket handshake, following
// the protocol's precedence: an "Authorization: Bearer <jwt>" header, then
// the query parameter Authorization (a "Bearer " prefix is stripped), then
// the query parameter token. Empty values and non-Bearer Authorization
// headers are skipped. It returns "" when there is no token.
func TokenFromRequest(h http.Header, query url.Values) string {
	if t := bearer(h.Get("Authorization"), true); t != "" {
		return t
	}
	if t := bearer(query.Get("Authorization"), false); t != "" {
		return t
	}
	return strings.TrimSpace(query.Get("token"))
}

// TokenFromMaps is [TokenFromRequest] for single-value maps such as an API
// Gateway event's headers and queryStringParameters. Header names match
// case-insensitively; query names are exact.
func TokenFromMaps(headers map[string]string, query map[string]string) string {
	if t := bearer(headerValue(headers, "Authorization"), true); t != "" {
		return t
	}
	if t := bearer(query["Authorization"], false); t != "" {
		return t
	}
	return strings.TrimSpace(query["token"])
}

// headerValue finds name case-insensitively. An exact match wins; among
// other matches the first non-empty by sorted key, so the result does not
// depend on map order.
func headerValue(headers map[string]string, name string) string {
	if v, ok := headers[name]; ok && v != "" {
		return v
	}
	var keys []string
	for k := range headers {
		if strings.EqualFold(k, name) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v := headers[k]; v != "" {
			return v
		}
	}
	return ""
}

// bearer strips a case-insensitive "Bearer " prefix. When required, a value
// without it is not a bearer token and gives "".
func bearer(v string, required bool) string {
	v = strings.TrimSpace(v)
	const prefix = "bearer "
	if len(v) >= len(prefix) && strings.EqualFold(v[:len(prefix)], prefix) {
		return strings.TrimSpace(v[len(prefix):])
	}
	if required {
		return ""
	}
	return v
}

// Claims are the claims [SignHS256] puts in a token.
type Claims struct {
	// Subject is the sub claim; required.
	Subject string
	// Tenant is the tenant_id claim, omitted when empty.
	Tenant string
	// Scopes become the space separated scope claim, omitted when empty.
	Scopes []string
	// TTL sets exp to now+TTL. Zero means one hour.
	TTL time.Duration
	// Issuer is the iss claim, omitted when empty.
	Issuer string
	// Audience is the aud claim, omitted when empty.
	Audience string
}

// SignHS256 mints an HS256 token with c's claims, iat set to now and exp to
// now+TTL. It is meant for development, tests and the `streamer token`
// command. It fails when secret is shorter than [MinSecretLen] bytes, when
// Subject is empty, or when TTL is negative.
func SignHS256(secret []byte, c Claims) (string, error) {
	if len(secret) < MinSecretLen {
		return "", fmt.Errorf("middleware: sign token: the secret is %d bytes; it must be at least %d", len(secret), MinSecretLen)
	}
	if c.Subject == "" {
		return "", errors.New("middleware: sign token: Claims.Subject is required")
	}
	if c.TTL < 0 {
		return "", fmt.Errorf("middleware: sign token: Claims.TTL is negative (%s)", c.TTL)
	}
	ttl := c.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	now := time.Now()
	mc := jwt.MapClaims{
		"sub": c.Subject,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	if c.Tenant != "" {
		mc["tenant_id"] = c.Tenant
	}
	if len(c.Scopes) > 0 {
		mc["scope"] = strings.Join(c.Scopes, " ")
	}
	if c.Issuer != "" {
		mc["iss"] = c.Issuer
	}
	if c.Audience != "" {
		mc["aud"] = c.Audience
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, mc).SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("middleware: sign token: %w", err)
	}
	return s, nil
}

// AuthOptions configure [Auth].
type AuthOptions struct {
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Leeway is the clock skew tolerated on the principal's expiry, as in
	// [JWTConfig.Leeway]: zero means [DefaultLeeway], negative none.
	Leeway time.Duration
}

// Auth checks, for every client message, that the request's principal has
// a subject and that its token has not expired since the connection was
// made (ExpiresAt before now, beyond the leeway). Failures return
// UNAUTHORIZED, before anything is stored or run.
//
// It checks at [streamer.StageSync] and [streamer.StageAdmit]. At
// [streamer.StageProcess] it checks only the subject: the request was
// admitted while the token was valid, and an async run (or its retries) may
// outlast the token without the client doing anything wrong.
func Auth(opts AuthOptions) streamer.Middleware {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	leeway := opts.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	return func(next streamer.Handler) streamer.Handler {
		return streamer.HandlerFunc(func(ctx context.Context, req *streamer.Request, rep streamer.Reporter) (any, error) {
			p := &req.Principal
			if p.Subject == "" {
				return nil, streamer.NewError(streamer.CodeUnauthorized, "the connection is not authenticated")
			}
			if req.Stage != streamer.StageProcess && !p.ExpiresAt.IsZero() && p.ExpiresAt.Add(leeway).Before(now()) {
				return nil, streamer.NewError(streamer.CodeUnauthorized, "the token has expired; reconnect with a new token")
			}
			return next.Serve(ctx, req, rep)
		})
	}
}
