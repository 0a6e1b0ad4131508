package middleware_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
)

// jwkOf is the public JWK of a private key, with kid and alg.
func jwkOf(t testing.TB, kid, alg string, priv crypto.Signer) map[string]string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	m := map[string]string{"kid": kid, "use": "sig"}
	if alg != "" {
		m["alg"] = alg
	}
	switch k := priv.Public().(type) {
	case *rsa.PublicKey:
		m["kty"], m["n"], m["e"] = "RSA", enc(k.N.Bytes()), enc(big.NewInt(int64(k.E)).Bytes())
	case *ecdsa.PublicKey:
		b, err := k.Bytes()
		require.NoError(t, err)
		size := (len(b) - 1) / 2
		m["kty"], m["crv"], m["x"], m["y"] = "EC", k.Curve.Params().Name, enc(b[1:1+size]), enc(b[1+size:])
	case ed25519.PublicKey:
		m["kty"], m["crv"], m["x"] = "OKP", "Ed25519", enc(k)
	default:
		t.Fatalf("unexpected key %T", k)
	}
	return m
}

// jwksServer is a JWKS endpoint on 127.0.0.1 whose keys the test rotates.
type jwksServer struct {
	URL     string
	fetches atomic.Int64
	mu      sync.Mutex
	body    []byte
	status  int
}

func newJWKSServer(t *testing.T, keys ...map[string]string) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK}
	s.set(t, keys...)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	s.URL = srv.URL + "/.well-known/jwks.json"
	return s
}

// set rotates the served keys.
func (s *jwksServer) set(t testing.TB, keys ...map[string]string) {
	b, err := json.Marshal(map[string]any{"keys": keys})
	require.NoError(t, err)
	s.mu.Lock()
	s.body = b
	s.mu.Unlock()
}

func (s *jwksServer) fail(status int) {
	s.mu.Lock()
	s.status = status
	s.mu.Unlock()
}

// manualClock is a settable clock for JWTConfig.Now.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

type jwksKeys struct {
	rsa1, rsa2 *rsa.PrivateKey
	ec         *ecdsa.PrivateKey
	ed         ed25519.PrivateKey
}

func genJWKSKeys(t testing.TB) jwksKeys {
	t.Helper()
	r1, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	r2, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return jwksKeys{rsa1: r1, rsa2: r2, ec: ec, ed: ed}
}

// Keys come from a JWKS URL: cached, rotated without a restart (a new kid
// triggers one fetch), and a flood of unknown kids costs at most one fetch
// per JWKSMinRefetch.
func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	k := genJWKSKeys(t)
	srv := newJWKSServer(t, jwkOf(t, "r1", "RS256", k.rsa1))
	clk := &manualClock{now: testNow}
	j := newJWT(t, middleware.JWTConfig{
		JWKSURL: srv.URL, Algorithms: []string{"RS256", "ES256", "EdDSA"},
		JWKSTTL: 10 * time.Minute, JWKSMinRefetch: 30 * time.Second, Now: clk.Now,
	})
	ctx := context.Background()
	auth := func(method jwt.SigningMethod, key any, kid string) error {
		_, err := j.Authenticate(ctx, sign(t, method, key, baseClaims(), kid))
		return err
	}

	// The first token fetches the set; the next ones use the cache.
	require.NoError(t, auth(jwt.SigningMethodRS256, k.rsa1, "r1"))
	require.NoError(t, auth(jwt.SigningMethodRS256, k.rsa1, "r1"))
	require.Equal(t, int64(1), srv.fetches.Load())

	// Rotation: r1 is retired, r2, e1 and d1 published. A token with a new
	// kid makes one fetch and is accepted, without a restart.
	srv.set(t, jwkOf(t, "r2", "RS256", k.rsa2), jwkOf(t, "e1", "ES256", k.ec), jwkOf(t, "d1", "", k.ed))
	clk.Advance(time.Minute)
	require.NoError(t, auth(jwt.SigningMethodRS256, k.rsa2, "r2"))
	require.Equal(t, int64(2), srv.fetches.Load())
	require.NoError(t, auth(jwt.SigningMethodES256, k.ec, "e1"))
	require.NoError(t, auth(jwt.SigningMethodEdDSA, k.ed, "d1"))
	require.Equal(t, int64(2), srv.fetches.Load())
	// The retired key is gone with the old set.
	require.ErrorIs(t, auth(jwt.SigningMethodRS256, k.rsa1, "r1"), middleware.ErrUnknownKey)

	// A storm of unknown kids right after a fetch makes no fetch at all.
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			assert.ErrorIs(t, auth(jwt.SigningMethodRS256, k.rsa2, "nowhere"), middleware.ErrUnknownKey)
		})
	}
	wg.Wait()
	require.Equal(t, int64(2), srv.fetches.Load())

	// Once the interval has passed, a concurrent storm makes exactly one.
	clk.Advance(31 * time.Second)
	for range 50 {
		wg.Go(func() {
			err := auth(jwt.SigningMethodRS256, k.rsa2, "nowhere")
			assert.ErrorIs(t, err, middleware.ErrUnknownKey)
			assert.ErrorIs(t, err, streamer.ErrUnauthorized)
		})
	}
	wg.Wait()
	require.Equal(t, int64(3), srv.fetches.Load())

	// Tokens with a new kid that arrive together all wait for the one
	// fetch, and are all accepted.
	srv.set(t, jwkOf(t, "r2", "RS256", k.rsa2), jwkOf(t, "e1", "ES256", k.ec), jwkOf(t, "r3", "RS256", k.rsa1))
	clk.Advance(31 * time.Second)
	for range 20 {
		wg.Go(func() { assert.NoError(t, auth(jwt.SigningMethodRS256, k.rsa1, "r3")) })
	}
	wg.Wait()
	require.Equal(t, int64(4), srv.fetches.Load())

	// After the TTL, a known kid fetches the set again once.
	clk.Advance(11 * time.Minute)
	require.NoError(t, auth(jwt.SigningMethodES256, k.ec, "e1"))
	require.NoError(t, auth(jwt.SigningMethodES256, k.ec, "e1"))
	require.Equal(t, int64(5), srv.fetches.Load())

	// An outage keeps the keys held (stale past the TTL), and is retried
	// at most once per interval.
	srv.fail(http.StatusInternalServerError)
	clk.Advance(11 * time.Minute)
	require.NoError(t, auth(jwt.SigningMethodES256, k.ec, "e1"))
	require.NoError(t, auth(jwt.SigningMethodES256, k.ec, "e1"))
	require.Equal(t, int64(6), srv.fetches.Load())
}

// Each algorithm of a key set is accepted only when the allow-list names
// it, and a key's own alg binds it.
func TestJWKSAlgorithms(t *testing.T) {
	t.Parallel()
	k := genJWKSKeys(t)
	srv := newJWKSServer(t, jwkOf(t, "r1", "RS256", k.rsa1), jwkOf(t, "e1", "ES256", k.ec), jwkOf(t, "d1", "", k.ed))
	ctx := context.Background()
	tokens := map[string]string{
		"RS256": sign(t, jwt.SigningMethodRS256, k.rsa1, baseClaims(), "r1"),
		"ES256": sign(t, jwt.SigningMethodES256, k.ec, baseClaims(), "e1"),
		"EdDSA": sign(t, jwt.SigningMethodEdDSA, k.ed, baseClaims(), "d1"),
	}
	for _, allowed := range [][]string{{"RS256"}, {"ES256"}, {"EdDSA"}, nil} {
		j := newJWT(t, middleware.JWTConfig{JWKSURL: srv.URL, Algorithms: allowed})
		if allowed == nil {
			allowed = []string{"RS256", "ES256"} // the default with a key set
		}
		for alg, tok := range tokens {
			_, err := j.Authenticate(ctx, tok)
			if contains(allowed, alg) {
				assert.NoError(t, err, "%s allowed by %v", alg, allowed)
			} else {
				assert.ErrorIs(t, err, middleware.ErrAlgorithmNotAllowed, "%s not allowed by %v", alg, allowed)
			}
		}
	}
	// r1 declares RS256: a PS256 token naming it is refused.
	j := newJWT(t, middleware.JWTConfig{JWKSURL: srv.URL, Algorithms: []string{"RS256", "PS256"}})
	_, err := j.Authenticate(ctx, sign(t, jwt.SigningMethodPS256, k.rsa1, baseClaims(), "r1"))
	assert.ErrorIs(t, err, middleware.ErrUnknownKey)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func TestJWKSConfigErrors(t *testing.T) {
	t.Parallel()
	for name, cfg := range map[string]middleware.JWTConfig{
		"http off loopback":    {JWKSURL: "http://idp.example.com/jwks.json"},
		"no host":              {JWKSURL: "https:///jwks.json"},
		"ftp":                  {JWKSURL: "ftp://idp.example.com/jwks.json"},
		"negative ttl":         {JWKSURL: "https://idp.example.com/jwks.json", JWKSTTL: -time.Second},
		"HS256 without secret": {JWKSURL: "https://idp.example.com/jwks.json", Algorithms: []string{"HS256"}},
	} {
		_, err := middleware.NewJWT(cfg)
		assert.Error(t, err, name)
	}
	_, err := middleware.NewJWT(middleware.JWTConfig{JWKSURL: "https://idp.example.com/.well-known/jwks.json"})
	assert.NoError(t, err)
}

// A key set that cannot be used refuses its tokens as ErrUnknownKey (401),
// never as a server error.
func TestJWKSBadSets(t *testing.T) {
	t.Parallel()
	k := genJWKSKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	require.NoError(t, err)
	bad := jwkOf(t, "e1", "ES256", k.ec)
	bad["x"] = bad["y"] // not on the curve
	for name, keys := range map[string][]map[string]string{
		"empty":           nil,
		"small RSA":       {jwkOf(t, "r1", "RS256", small)},
		"point off curve": {bad},
		"encryption key":  {func() map[string]string { m := jwkOf(t, "r1", "RS256", k.rsa1); m["use"] = "enc"; return m }()},
	} {
		srv := newJWKSServer(t, keys...)
		j := newJWT(t, middleware.JWTConfig{JWKSURL: srv.URL})
		for _, tok := range []string{
			sign(t, jwt.SigningMethodRS256, k.rsa1, baseClaims(), "r1"),
			sign(t, jwt.SigningMethodES256, k.ec, baseClaims(), "e1"),
		} {
			_, err := j.Authenticate(context.Background(), tok)
			assert.ErrorIs(t, err, middleware.ErrUnknownKey, name)
		}
	}
}

// A fetch serves every caller waiting for it, so it does not end with the
// context of the caller that started it: a client that hangs up at once
// cannot make the others' new kid unknown until the next allowed fetch.
func TestJWKSFetchOutlivesItsCaller(t *testing.T) {
	t.Parallel()
	k := genJWKSKeys(t)
	srv := newJWKSServer(t, jwkOf(t, "e1", "ES256", k.ec))
	j := newJWT(t, middleware.JWTConfig{JWKSURL: srv.URL})
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	tok := sign(t, jwt.SigningMethodES256, k.ec, baseClaims(), "e1")
	_, _ = j.Authenticate(gone, tok)
	require.Equal(t, int64(1), srv.fetches.Load())
	_, err := j.Authenticate(context.Background(), tok)
	require.NoError(t, err, "the key fetched for the canceled caller is held")
	require.Equal(t, int64(1), srv.fetches.Load())
}
