package dynamodb_test

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/config"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/streamer-go/streamer/ratelimit"
	"github.com/streamer-go/streamer/ratelimit/dynamodb"
)

// A limiter on the app's table, shared by every Lambda instance.
func ExampleNew() {
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		panic(err)
	}
	l, err := dynamodb.New(dynamodb.Config{Client: ddb.NewFromConfig(cfg), Table: "my-app-prod"})
	if err != nil {
		panic(err)
	}
	d, err := l.Take(ctx, "principal:alice", ratelimit.Rule{Rate: 10, Burst: 20}, 1)
	if err != nil {
		panic(err)
	}
	if !d.Allowed {
		fmt.Println("retry after", d.RetryAfter)
	}
}
