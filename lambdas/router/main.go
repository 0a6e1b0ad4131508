// Command router is the router ($default route) Lambda. Build it with scripts/package.sh
// (make package); it reads its settings from STREAMER_* variables.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/lambdas/plugins"
)

func main() {
	ctx := context.Background()
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Router, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	h, err := lambdaapp.New(ctx, cfg, plugins.All(), lambdaapp.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lambda.Start(h.Route)
}
