package plugins_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/streamer-go/streamer/blob/localblob"
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

// New builds the same plugins on any blob store: here the directory that
// `streamer dev` serves.
func ExampleNew() {
	dir, err := os.MkdirTemp("", "plugins-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer func() { _ = os.RemoveAll(dir) }()
	store, err := localblob.New(localblob.Config{Dir: dir, BaseURL: "http://127.0.0.1:8080/blobs/"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ps, err := plugins.New(store, 24*time.Hour)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range ps {
		fmt.Println(p.Name)
	}
	// Output:
	// demo
	// report
}
