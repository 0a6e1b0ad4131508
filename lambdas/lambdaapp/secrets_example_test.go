package lambdaapp_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

// The connect function's HS256 secret may live in SSM Parameter Store
// (STREAMER_JWT_SECRET_SSM) or Secrets Manager (STREAMER_JWT_SECRET_ARN).
// New reads it once per cold start; here a local server stands in for SSM.
func ExampleResolveJWTSecret() {
	ssm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = fmt.Fprint(w, `{"Parameter":{"Name":"/app/jwt","Type":"SecureString","Value":"0123456789abcdef0123456789abcdef"}}`)
	}))
	defer ssm.Close()
	awsCfg := aws.Config{
		Region:       "eu-west-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		BaseEndpoint: aws.String(ssm.URL), // on Lambda: the real endpoint
	}
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, func(name string) string {
		return map[string]string{"STREAMER_TABLE": "streamer", "STREAMER_JWT_SECRET_SSM": "/app/jwt"}[name]
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := lambdaapp.ResolveJWTSecret(context.Background(), &cfg, awsCfg); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(cfg.JWTSecret), "bytes")
	// Output: 32 bytes
}
