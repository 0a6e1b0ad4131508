package middleware_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/streamer-go/streamer/middleware"
)

// Keys may come from an identity provider's JSON Web Key Set. Here a local
// server stands in for the provider: it publishes one Ed25519 key, and the
// verifier fetches it at the first token (and again, rate limited, when a
// token names a kid it has not seen: a rotated key).
func ExampleNewJWT_jwks() {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwks := fmt.Sprintf(`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"2026-11","use":"sig","x":%q}]}`,
		base64.RawURLEncoding.EncodeToString(pub))
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprint(w, jwks)
	}))
	defer idp.Close()

	auth, err := middleware.NewJWT(middleware.JWTConfig{
		JWKSURL:    idp.URL + "/.well-known/jwks.json", // https, or http on loopback
		Algorithms: []string{"EdDSA"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()})
	tok.Header["kid"] = "2026-11"
	signed, _ := tok.SignedString(priv)

	p, err := auth.Authenticate(context.Background(), signed)
	fmt.Println(p.Subject, err)
	// Output: alice <nil>
}
