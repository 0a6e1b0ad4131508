package lambdaapp

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/streamer-go/streamer"
)

// Main is the body of a Lambda's main package: it reads fn's configuration
// from the environment, builds the handlers with plugins, and starts the
// Lambda with the handler pick returns (such as (*Handlers).Route). Bad
// configuration is printed to standard error, naming the variable, and the
// process exits with status 1. Main does not return.
func Main(fn Function, plugins []streamer.Plugin, pick func(*Handlers) any) {
	cfg, err := ConfigFromEnv(fn, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	h, err := New(context.Background(), cfg, plugins, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lambda.Start(pick(h))
}
