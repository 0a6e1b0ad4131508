package streamer_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage/memory"
	"github.com/streamer-go/streamer/transport/local"
)

// Hostile tokens are refused at the handshake with HTTP 401, before the
// upgrade, and no connection is stored: alg confusion (an RS256 public key
// used as an HS256 secret), alg none, a kid that points nowhere (even after
// the key set is fetched again), expired, not yet valid, wrong issuer and
// wrong audience. A good token of each kind is accepted by the same server.
func TestHostileTokensRefusedAtConnect(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: mustMarshalPKIX(t, &rsaKey.PublicKey)})
	enc := base64.RawURLEncoding.EncodeToString
	jwksBody, err := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": "idp-1", "alg": "RS256", "use": "sig",
		"n": enc(rsaKey.N.Bytes()), "e": enc(big.NewInt(int64(rsaKey.E)).Bytes()),
	}}})
	require.NoError(t, err)
	var fetches atomic.Int64
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fetches.Add(1)
		_, _ = w.Write(jwksBody)
	}))
	t.Cleanup(idp.Close)

	secret := []byte(strings.Repeat("s", 32))
	now := time.Now()
	auth, err := middleware.NewJWT(middleware.JWTConfig{
		Secret: secret, JWKSURL: idp.URL, Algorithms: []string{"HS256", "RS256"},
		Issuer: "https://idp.example", Audience: "streamer", JWKSMinRefetch: time.Nanosecond,
	})
	require.NoError(t, err)
	h := &expiryHandler{}
	gw, err := local.New(local.Config{Handler: h})
	require.NoError(t, err)
	app, err := streamer.New(streamer.Config{Store: memory.New(), Sender: gw, Authenticator: auth})
	require.NoError(t, err)
	h.app = app
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = gw.Close(ctx)
		srv.Close()
	})

	claims := func(kv ...any) jwt.MapClaims {
		c := jwt.MapClaims{"sub": "mallory", "iss": "https://idp.example", "aud": "streamer", "exp": now.Add(time.Hour).Unix()}
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	signed := func(m jwt.SigningMethod, key any, kid string, c jwt.MapClaims) string {
		tok := jwt.NewWithClaims(m, c)
		if kid != "" {
			tok.Header["kid"] = kid
		}
		s, err := tok.SignedString(key)
		require.NoError(t, err)
		return s
	}
	payload, err := json.Marshal(claims())
	require.NoError(t, err)
	algNone := enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc(payload) + "."

	hostile := []struct{ name, token string }{
		{"alg confusion: RS256 public key as HS256 secret", signed(jwt.SigningMethodHS256, pubPEM, "idp-1", claims())},
		{"alg confusion without kid", signed(jwt.SigningMethodHS256, pubPEM, "", claims())},
		{"alg none", algNone},
		{"alg none with kid", enc([]byte(`{"alg":"none","kid":"idp-1"}`)) + "." + enc(payload) + "."},
		{"kid that points nowhere", signed(jwt.SigningMethodRS256, rsaKey, "nowhere", claims())},
		{"expired", signed(jwt.SigningMethodRS256, rsaKey, "idp-1", claims("exp", now.Add(-time.Hour).Unix()))},
		{"not yet valid", signed(jwt.SigningMethodRS256, rsaKey, "idp-1", claims("nbf", now.Add(time.Hour).Unix()))},
		{"wrong issuer", signed(jwt.SigningMethodRS256, rsaKey, "idp-1", claims("iss", "https://evil.example"))},
		{"wrong audience", signed(jwt.SigningMethodRS256, rsaKey, "idp-1", claims("aud", "other"))},
		{"HS256 wrong issuer", signed(jwt.SigningMethodHS256, secret, "", claims("iss", "https://evil.example"))},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(srv.URL, "http")
	for _, tc := range hostile {
		t.Run(tc.name, func(t *testing.T) {
			before := fetches.Load()
			ws, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{
				HTTPHeader: http.Header{"Authorization": {"Bearer " + tc.token}},
			})
			if ws != nil {
				_ = ws.CloseNow()
			}
			require.Error(t, err, "the upgrade must be refused")
			require.NotNil(t, resp)
			require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
			require.Zero(t, gw.Connections())
			if tc.name == "kid that points nowhere" {
				require.Equal(t, before+1, fetches.Load(), "an unknown kid fetches the key set once")
			}
		})
	}

	// The same server accepts good tokens of both kinds.
	for name, tok := range map[string]string{
		"RS256 from the key set": signed(jwt.SigningMethodRS256, rsaKey, "idp-1", claims()),
		"HS256":                  signed(jwt.SigningMethodHS256, secret, "", claims()),
	} {
		ws, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}}})
		require.NoError(t, err, name)
		require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode, name)
		_ = ws.Close(websocket.StatusNormalClosure, "")
	}
}

func mustMarshalPKIX(t *testing.T, k any) []byte {
	t.Helper()
	b, err := x509.MarshalPKIXPublicKey(k)
	require.NoError(t, err, fmt.Sprintf("%T", k))
	return b
}
