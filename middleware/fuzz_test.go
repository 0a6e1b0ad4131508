package middleware_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
)

// fuzzSecret is the HS256 key of FuzzAuthenticate; the committed seeds in
// testdata/fuzz/FuzzAuthenticate are signed with it.
var fuzzSecret = []byte("fuzz-secret-0123456789abcdef-0123")

// FuzzAuthenticate feeds arbitrary tokens to the verifier: it never
// panics, every refusal wraps streamer.ErrUnauthorized, and an accepted
// token has a subject, an expiry after the clock minus the leeway, and an
// allowed alg (never "none").
func FuzzAuthenticate(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j, err := middleware.NewJWT(middleware.JWTConfig{
		Secret: fuzzSecret, Algorithms: []string{"HS256"}, Issuer: "fuzz", Audience: "streamer",
		Now: func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"", "a.b.c", "..", "e30.e30.", strings.Repeat(".", 100),
		b64(`{"alg":"none"}`) + "." + b64(`{"sub":"x","exp":9999999999}`) + ".",
		b64(`{"alg":"HS256","kid":{"a":1}}`) + "." + b64(`{"sub":"x"}`) + ".AAAA",
		b64(`{"alg":"RS256"}`) + "." + b64(`{"sub":"x","exp":1e309}`) + ".AAAA",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := j.Authenticate(context.Background(), token)
		if err != nil {
			if !errors.Is(err, streamer.ErrUnauthorized) {
				t.Fatalf("refusal %v does not wrap ErrUnauthorized", err)
			}
			if p.Subject != "" {
				t.Fatalf("refused token has principal %+v", p)
			}
			return
		}
		if p.Subject == "" || p.ExpiresAt.Before(now.Add(-middleware.DefaultLeeway)) {
			t.Fatalf("accepted token with principal %+v", p)
		}
		if p.Claims["iss"] != "fuzz" {
			t.Fatalf("accepted token with iss %v", p.Claims["iss"])
		}
		// the header of an accepted token names HS256
		head, _, _ := strings.Cut(strings.TrimSpace(token), ".")
		var h map[string]any
		if raw, err := base64.RawURLEncoding.DecodeString(head); err != nil || json.Unmarshal(raw, &h) != nil || h["alg"] != "HS256" {
			t.Fatalf("accepted token with header %q", head)
		}
	})
}

// FuzzParseJWKS feeds arbitrary documents to the key set parser: it never
// panics, and whatever it returns is a supported, strong enough key.
func FuzzParseJWKS(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{"keys":[]}`, `{"keys":null}`, `{"keys":[{}]}`, `[]`,
		`{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"d","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-256","kid":"e","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`,
		`{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`,
		`{"keys":[{"kty":"RSA","kid":"r","e":"AAAAAAE"}]}`,
		`{"keys":[{"kty":"EC","crv":"P-999"}]}`,
		`{"keys":[{"kty":"OKP","crv":"X25519","x":"AA"}]}`,
		`{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		kinds, err := middleware.ParseJWKSKinds(data)
		if err == nil && len(kinds) == 0 {
			t.Fatal("an empty key set was accepted")
		}
	})
}
