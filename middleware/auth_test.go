package middleware_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
)

var (
	testSecret  = []byte("0123456789abcdef0123456789abcdef")
	otherSecret = []byte("ffffffffffffffffffffffffffffffff")
	testNow     = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
)

func fixedNow() time.Time { return testNow }

// sign mints a token with arbitrary claims and headers.
func sign(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func baseClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "alice",
		"iat": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
}

func with(c jwt.MapClaims, kv ...any) jwt.MapClaims {
	out := jwt.MapClaims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func newJWT(t testing.TB, cfg middleware.JWTConfig) *middleware.JWT {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = fixedNow
	}
	j, err := middleware.NewJWT(cfg)
	require.NoError(t, err)
	return j
}

type keyBundle struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

func genKeys(t testing.TB) keyBundle {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return keyBundle{rsa: rk, ec: ek}
}

func TestJWTValidHS256(t *testing.T) {
	t.Parallel()
	tok, err := middleware.SignHS256(testSecret, middleware.Claims{
		Subject: "alice", Tenant: "acme", Scopes: []string{"reports:read", "reports:write"},
		TTL: 10 * time.Minute, Issuer: "iss-1", Audience: "aud-1",
	})
	require.NoError(t, err)
	j := newJWT(t, middleware.JWTConfig{Secret: testSecret, Issuer: "iss-1", Audience: "aud-1", Now: time.Now})

	p, err := j.Authenticate(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, "alice", p.Subject)
	assert.Equal(t, "acme", p.Tenant)
	assert.Equal(t, []string{"reports:read", "reports:write"}, p.Scopes)
	assert.WithinDuration(t, time.Now().Add(10*time.Minute), p.ExpiresAt, 5*time.Second)
	assert.Equal(t, "acme", p.Claims["tenant_id"])
	assert.Equal(t, "iss-1", p.Claims["iss"])
}

func TestJWTValidRS256AndES256(t *testing.T) {
	t.Parallel()
	k := genKeys(t)
	j := newJWT(t, middleware.JWTConfig{Keys: map[string]crypto.PublicKey{
		"r1": &k.rsa.PublicKey, "e1": &k.ec.PublicKey,
	}})

	p, err := j.Authenticate(context.Background(), sign(t, jwt.SigningMethodRS256, k.rsa, baseClaims(), "r1"))
	require.NoError(t, err)
	assert.Equal(t, "alice", p.Subject)
	assert.Equal(t, testNow.Add(time.Hour).Unix(), p.ExpiresAt.Unix())

	p, err = j.Authenticate(context.Background(), sign(t, jwt.SigningMethodES256, k.ec, with(baseClaims(), "sub", "bob"), "e1"))
	require.NoError(t, err)
	assert.Equal(t, "bob", p.Subject)

	// With two keys a kid is required; unknown kids and mismatched keys fail.
	for name, tok := range map[string]string{
		"no kid":      sign(t, jwt.SigningMethodRS256, k.rsa, baseClaims(), ""),
		"unknown kid": sign(t, jwt.SigningMethodRS256, k.rsa, baseClaims(), "nope"),
		"wrong key":   sign(t, jwt.SigningMethodRS256, k.rsa, baseClaims(), "e1"),
	} {
		_, err := j.Authenticate(context.Background(), tok)
		assert.ErrorIs(t, err, middleware.ErrUnknownKey, name)
		assert.ErrorIs(t, err, streamer.ErrUnauthorized, name)
	}
}

func TestJWTSingleKeyWithoutKid(t *testing.T) {
	t.Parallel()
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	j := newJWT(t, middleware.JWTConfig{Keys: map[string]crypto.PublicKey{"only": &ek.PublicKey}})
	p, err := j.Authenticate(context.Background(), sign(t, jwt.SigningMethodES256, ek, baseClaims(), ""))
	require.NoError(t, err)
	assert.Equal(t, "alice", p.Subject)
}

func TestJWTRefusals(t *testing.T) {
	t.Parallel()
	k := genKeys(t)
	hs := newJWT(t, middleware.JWTConfig{Secret: testSecret, Issuer: "iss-1", Audience: "aud-1"})
	rsOnly := newJWT(t, middleware.JWTConfig{
		Keys:       map[string]crypto.PublicKey{"r1": &k.rsa.PublicKey},
		Algorithms: []string{"RS256"},
	})
	good := with(baseClaims(), "iss", "iss-1", "aud", "aud-1")
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))})

	valid := sign(t, jwt.SigningMethodHS256, testSecret, good, "")
	parts := strings.Split(valid, ".")
	tampered := parts[0] + "." + b64(`{"sub":"mallory","exp":9999999999,"iss":"iss-1","aud":"aud-1"}`) + "." + parts[2]
	algNone := b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(`{"sub":"mallory","exp":9999999999,"iss":"iss-1","aud":"aud-1"}`) + "."

	tests := []struct {
		name string
		j    *middleware.JWT
		tok  string
		want error
	}{
		{"missing", hs, "", middleware.ErrTokenMissing},
		{"blank", hs, "   ", middleware.ErrTokenMissing},
		{"malformed", hs, "not-a-jwt", middleware.ErrTokenMalformed},
		{"bad base64", hs, "@@@.@@@.@@@", middleware.ErrTokenMalformed},
		{"oversized", hs, strings.Repeat("a", 20<<10), middleware.ErrTokenMalformed},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", testNow.Add(-time.Hour).Unix()), ""), middleware.ErrTokenExpired},
		{"nbf in future", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "nbf", testNow.Add(time.Hour).Unix()), ""), middleware.ErrTokenNotYetValid},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", nil), ""), middleware.ErrNoExpiry},
		{"exp not a number", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", "tomorrow"), ""), middleware.ErrInvalidClaim},
		{"no sub", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "sub", nil), ""), middleware.ErrNoSubject},
		{"empty sub", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "sub", ""), ""), middleware.ErrNoSubject},
		{"tenant not a string", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "tenant_id", 7), ""), middleware.ErrInvalidClaim},
		{"permissions not strings", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "permissions", []any{1}), ""), middleware.ErrInvalidClaim},
		{"bad signature", hs, sign(t, jwt.SigningMethodHS256, otherSecret, good, ""), middleware.ErrSignatureInvalid},
		{"tampered payload", hs, tampered, middleware.ErrSignatureInvalid},
		{"alg none", hs, algNone, middleware.ErrAlgorithmNotAllowed},
		{"alg unknown", hs, b64(`{"alg":"XX999"}`) + "." + parts[1] + ".", middleware.ErrAlgorithmNotAllowed},
		{"HS384 not allowed", hs, sign(t, jwt.SigningMethodHS384, testSecret, good, ""), middleware.ErrAlgorithmNotAllowed},
		// key confusion: an HMAC token keyed with the RSA public key
		{"HS256 when only RS256", rsOnly, sign(t, jwt.SigningMethodHS256, pubPEM, baseClaims(), "r1"), middleware.ErrAlgorithmNotAllowed},
		{"alg none to RS verifier", rsOnly, algNone, middleware.ErrAlgorithmNotAllowed},
		{"wrong issuer", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iss", "evil"), ""), middleware.ErrWrongIssuer},
		{"no issuer", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "iss", nil), ""), middleware.ErrWrongIssuer},
		{"no audience", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", nil), ""), middleware.ErrWrongAudience},
		{"no exp and no iss", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "exp", nil, "iss", nil), ""), middleware.ErrNoExpiry},
		{"wrong audience", hs, sign(t, jwt.SigningMethodHS256, testSecret, with(good, "aud", []string{"other"}), ""), middleware.ErrWrongAudience},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := tt.j.Authenticate(context.Background(), tt.tok)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.want)
			assert.ErrorIs(t, err, streamer.ErrUnauthorized)
			assert.Empty(t, p.Subject)
		})
	}

	// The same verifier accepts the good token, so the refusals above are
	// about what each case changed.
	_, err := hs.Authenticate(context.Background(), valid)
	require.NoError(t, err)
}

func TestJWTKeyConfusionWithBothKinds(t *testing.T) {
	t.Parallel()
	k := genKeys(t)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&k.rsa.PublicKey))})
	// HS256 and RS256 both allowed: an HMAC token is checked with the
	// secret only, never with a public key.
	j := newJWT(t, middleware.JWTConfig{Secret: testSecret, Keys: map[string]crypto.PublicKey{"r1": &k.rsa.PublicKey}})
	_, err := j.Authenticate(context.Background(), sign(t, jwt.SigningMethodHS256, pubPEM, baseClaims(), "r1"))
	assert.ErrorIs(t, err, middleware.ErrSignatureInvalid)
}

func TestJWTLeeway(t *testing.T) {
	t.Parallel()
	tok := sign(t, jwt.SigningMethodHS256, testSecret, with(baseClaims(), "exp", testNow.Add(-10*time.Second).Unix()), "")

	_, err := newJWT(t, middleware.JWTConfig{Secret: testSecret}).Authenticate(context.Background(), tok)
	require.NoError(t, err, "the default leeway tolerates 10s of skew")

	_, err = newJWT(t, middleware.JWTConfig{Secret: testSecret, Leeway: -1}).Authenticate(context.Background(), tok)
	require.ErrorIs(t, err, middleware.ErrTokenExpired)
}

func TestJWTScopesMerge(t *testing.T) {
	t.Parallel()
	j := newJWT(t, middleware.JWTConfig{Secret: testSecret})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, with(baseClaims(),
		"scope", "read  write read",
		"permissions", []string{"write", "admin"},
		"tenant_id", "acme",
	), "")
	p, err := j.Authenticate(context.Background(), tok)
	require.NoError(t, err)
	assert.Equal(t, []string{"read", "write", "admin"}, p.Scopes)
	assert.Equal(t, "acme", p.Tenant)
	assert.True(t, p.HasScope("admin"))
}

func TestNewJWTConfigErrors(t *testing.T) {
	t.Parallel()
	k := genKeys(t)
	tests := []struct {
		name string
		cfg  middleware.JWTConfig
		want string
	}{
		{"no key", middleware.JWTConfig{}, "Secret"},
		{"short secret", middleware.JWTConfig{Secret: []byte("short")}, "at least 32"},
		{"none", middleware.JWTConfig{Secret: testSecret, Algorithms: []string{"HS256", "none"}}, `"none"`},
		{"None", middleware.JWTConfig{Secret: testSecret, Algorithms: []string{"None"}}, `"None"`},
		{"unknown alg", middleware.JWTConfig{Secret: testSecret, Algorithms: []string{"HS1"}}, "HS1"},
		{"RS256 without keys", middleware.JWTConfig{Secret: testSecret, Algorithms: []string{"RS256"}}, "Keys"},
		{"HS256 without secret", middleware.JWTConfig{Keys: map[string]crypto.PublicKey{"r": &k.rsa.PublicKey}, Algorithms: []string{"HS256"}}, "Secret"},
		{"private key", middleware.JWTConfig{Keys: map[string]crypto.PublicKey{"r": k.rsa}}, `"r"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j, err := middleware.NewJWT(tt.cfg)
			require.Error(t, err)
			assert.Nil(t, j)
			assert.ErrorContains(t, err, tt.want)
		})
	}
}

func TestSignHS256Errors(t *testing.T) {
	t.Parallel()
	_, err := middleware.SignHS256([]byte("short"), middleware.Claims{Subject: "a"})
	require.Error(t, err)
	_, err = middleware.SignHS256(testSecret, middleware.Claims{})
	require.Error(t, err)
	_, err = middleware.SignHS256(testSecret, middleware.Claims{Subject: "a", TTL: -time.Second})
	require.Error(t, err)

	tok, err := middleware.SignHS256(testSecret, middleware.Claims{Subject: "a"})
	require.NoError(t, err)
	p, err := newJWT(t, middleware.JWTConfig{Secret: testSecret, Now: time.Now}).Authenticate(context.Background(), tok)
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now().Add(time.Hour), p.ExpiresAt, 5*time.Second, "TTL defaults to one hour")
	assert.Empty(t, p.Scopes)
	assert.Empty(t, p.Tenant)
}

func TestTokenFromRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header string
		query  string
		want   string
	}{
		{"header wins", "Bearer H", "Authorization=Q&token=T", "H"},
		{"lowercase scheme", "bearer H", "", "H"},
		{"query Authorization next", "", "Authorization=Q&token=T", "Q"},
		{"query Authorization with Bearer", "", "Authorization=Bearer+Q&token=T", "Q"},
		{"token last", "", "token=T", "T"},
		{"non-bearer header skipped", "Basic dXNlcg==", "token=T", "T"},
		{"empty Authorization skipped", "", "Authorization=&token=T", "T"},
		{"none", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			if tt.header != "" {
				h.Set("Authorization", tt.header)
			}
			q, err := url.ParseQuery(tt.query)
			require.NoError(t, err)
			assert.Equal(t, tt.want, middleware.TokenFromRequest(h, q))
		})
	}
}

func TestTokenFromMaps(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "H", middleware.TokenFromMaps(map[string]string{"authorization": "Bearer H"}, map[string]string{"token": "T"}))
	assert.Equal(t, "H", middleware.TokenFromMaps(map[string]string{"AUTHORIZATION": "Bearer H"}, nil))
	assert.Equal(t, "Q", middleware.TokenFromMaps(nil, map[string]string{"Authorization": "Bearer Q", "token": "T"}))
	assert.Equal(t, "T", middleware.TokenFromMaps(map[string]string{"Authorization": "Basic x"}, map[string]string{"token": " T "}))
	assert.Empty(t, middleware.TokenFromMaps(nil, nil))
}

func TestAuthMiddleware(t *testing.T) {
	t.Parallel()
	now := testNow
	mw := middleware.Auth(middleware.AuthOptions{Now: func() time.Time { return now }, Leeway: -1})
	calls := 0
	h := mw(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) {
		calls++
		return "ok", nil
	}))
	serve := func(p streamer.Principal, stage streamer.Stage) (any, error) {
		return h.Serve(context.Background(), &streamer.Request{ID: "r", Action: "a", Principal: p, Stage: stage}, streamer.Discard)
	}

	res, err := serve(streamer.Principal{Subject: "alice", ExpiresAt: now.Add(time.Minute)}, streamer.StageSync)
	require.NoError(t, err)
	assert.Equal(t, "ok", res)

	res, err = serve(streamer.Principal{Subject: "alice"}, streamer.StageSync)
	require.NoError(t, err, "a zero ExpiresAt never expires")
	assert.Equal(t, "ok", res)

	expired := streamer.Principal{Subject: "alice", ExpiresAt: now.Add(-time.Second)}
	for _, stage := range []streamer.Stage{streamer.StageSync, streamer.StageAdmit} {
		_, err = serve(expired, stage)
		assert.Equal(t, streamer.CodeUnauthorized, streamer.CodeOf(err), stage.String())
	}
	_, err = serve(streamer.Principal{}, streamer.StageAdmit)
	assert.Equal(t, streamer.CodeUnauthorized, streamer.CodeOf(err))
	assert.Equal(t, 2, calls, "refused requests never reach the handler")

	// An admitted request runs even when the token expired meanwhile.
	_, err = serve(expired, streamer.StageProcess)
	require.NoError(t, err)
	assert.Equal(t, 3, calls)

	// Default leeway tolerates a second of skew.
	lenient := middleware.Auth(middleware.AuthOptions{Now: func() time.Time { return now }})
	_, err = lenient(streamer.HandlerFunc(func(context.Context, *streamer.Request, streamer.Reporter) (any, error) { return nil, nil })).
		Serve(context.Background(), &streamer.Request{Principal: expired, Stage: streamer.StageSync}, streamer.Discard)
	require.NoError(t, err)
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(errors.Join(errors.New("test setup"), err))
	}
	return v
}
