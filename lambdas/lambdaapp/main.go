package lambdaapp

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/streamer-go/streamer"
)

// PluginsFunc builds the plugins of a deployment from a function's
// configuration and its AWS configuration (for the plugins' own clients,
// such as an S3 bucket's). An error, naming the variable at fault, stops
// the function at start. lambdas/plugins.All is the deployment's.
type PluginsFunc func(ctx context.Context, cfg Config, awsCfg aws.Config) ([]streamer.Plugin, error)

// Main is the body of a Lambda's main package: it reads fn's configuration
// from the environment, loads the AWS configuration
// (config.LoadDefaultConfig), builds the plugins and the handlers, and
// starts the Lambda with the handler pick returns (such as
// (*Handlers).Route). Bad configuration is printed to standard error,
// naming the variable, and the process exits with status 1. Main does not
// return.
func Main(fn Function, plugins PluginsFunc, pick func(*Handlers) any) {
	ctx := context.Background()
	cfg, err := ConfigFromEnv(fn, os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lambdaapp: load the AWS configuration: %v\n", err)
		os.Exit(1)
	}
	ps, err := plugins(ctx, cfg, awsCfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lambdaapp: bad configuration of %s: %v\n", fn, err)
		os.Exit(1)
	}
	h, err := New(ctx, cfg, ps, Options{AWS: &awsCfg})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	lambda.Start(pick(h))
}
