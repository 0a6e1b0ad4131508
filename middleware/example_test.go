package middleware_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
)

func ExampleNewJWT() {
	secret := []byte("a-development-secret-of-32-bytes")
	auth, err := middleware.NewJWT(middleware.JWTConfig{Secret: secret, Issuer: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	token, err := middleware.SignHS256(secret, middleware.Claims{
		Subject: "alice", Tenant: "acme", Scopes: []string{"reports:read"}, TTL: time.Hour, Issuer: "example",
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	p, err := auth.Authenticate(context.Background(), token)
	fmt.Println(p.Subject, p.Tenant, p.Scopes, err)

	_, err = auth.Authenticate(context.Background(), token+"x")
	fmt.Println(errors.Is(err, streamer.ErrUnauthorized), errors.Is(err, middleware.ErrSignatureInvalid))
	// Output:
	// alice acme [reports:read] <nil>
	// true true
}

func ExampleTokenFromMaps() {
	// The headers and query of an API Gateway $connect event.
	headers := map[string]string{"authorization": "Bearer eyJ.header.token"}
	query := map[string]string{"token": "eyJ.query.token"}
	fmt.Println(middleware.TokenFromMaps(headers, query))
	// Output: eyJ.header.token
}

type greetRequest struct {
	Name string `json:"name" validate:"required"`
}

func Example_chain() {
	log := zerolog.Nop() // use your logger
	h := streamer.Chain(
		streamer.HandlerFunc(func(_ context.Context, req *streamer.Request, _ streamer.Reporter) (any, error) {
			var in greetRequest
			if err := json.Unmarshal(req.Payload, &in); err != nil {
				return nil, err
			}
			return "hello " + in.Name, nil
		}),
		// First declared is outermost.
		middleware.Logging(log),
		middleware.Recover(log),
		middleware.Auth(middleware.AuthOptions{}),
		middleware.Timeout(5*time.Second),
		middleware.Validate[greetRequest](),
	)

	alice := streamer.Principal{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour)}
	for _, payload := range []string{`{"name":"Ada"}`, `{}`} {
		req := &streamer.Request{ID: "r-1", Action: "greet", Payload: json.RawMessage(payload), Principal: alice, Stage: streamer.StageSync}
		res, err := h.Serve(context.Background(), req, streamer.Discard)
		if err != nil {
			fmt.Println("error:", streamer.CodeOf(err))
			continue
		}
		fmt.Println(res)
	}
	// Output:
	// hello Ada
	// error: VALIDATION_ERROR
}
