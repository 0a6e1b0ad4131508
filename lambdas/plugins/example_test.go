package plugins_test

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/streamer-go/streamer/lambdas/lambdaapp"
	"github.com/streamer-go/streamer/lambdas/plugins"
)

func ExampleAll() {
	env := map[string]string{"STREAMER_TABLE": "streamer-prod", "STREAMER_BUCKET": "streamer-prod-files"}
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Processor, func(k string) string {
		if k == lambdaapp.EnvFunctionName {
			return "streamer-prod-processor"
		}
		return env[k]
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	awsCfg := aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("AKID", "SECRET", "")}
	ps, err := plugins.All(context.Background(), cfg, awsCfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range ps {
		fmt.Print(p.Name, ":")
		for _, a := range p.Actions {
			fmt.Print(" ", a.Name)
		}
		fmt.Println()
	}

	// Without a bucket, the functions refuse to start.
	cfg.Bucket = ""
	_, err = plugins.All(context.Background(), cfg, awsCfg)
	fmt.Println(err)
	// Output:
	// demo: echo delay fail blob
	// report: generate_report
	// STREAMER_BUCKET is required: the S3 bucket of the report plugin's files
}
