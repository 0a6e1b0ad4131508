package sqsredrive_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/streamer-go/streamer/ops"
	"github.com/streamer-go/streamer/ops/sqsredrive"
	"github.com/streamer-go/streamer/ops/sqsredrive/sqslocal"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/memory"
)

// Redrive a failure queue: the job of a request that is still queued is
// run again (here the dispatcher only prints it; on AWS it invokes the
// processor function), and its message deleted.
func ExampleRun() {
	ctx := context.Background()
	srv, err := sqslocal.New(ctx) // a local SQS-compatible server
	if err != nil {
		panic(err)
	}
	defer srv.Close() //nolint:errcheck // example
	url, _ := srv.CreateQueue(ctx, "processor-dlq", 0)
	// With the environment's configuration: config.LoadDefaultConfig.
	q, _ := sqsredrive.NewQueue(sqsredrive.QueueConfig{URL: url, AWS: aws.Config{
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("key", "secret", ""),
	}})

	store := memory.New()
	k := storage.Key{Tenant: "acme", Subject: "alice", ID: "r1"}
	now := time.Now()
	_ = store.CreateRequest(ctx, storage.Request{Key: k, Action: "report", Status: storage.StatusQueued, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)})
	job, _ := json.Marshal(map[string]any{"streamer_job": map[string]string{"key": k.String()}})
	_, _ = q.Send(ctx, `{"requestContext":{"condition":"RetriesExhausted","approximateInvokeCount":3},"requestPayload":`+string(job)+`}`)

	sum, err := sqsredrive.Run(ctx, sqsredrive.Config{
		Queue: q, Ops: ops.New(store, nil),
		Dispatch: func(_ context.Context, f ops.Failure) error {
			fmt.Println("invoke the processor with", string(f.Job))
			return nil
		},
	})
	fmt.Println(sum.Results[0].Redrive.Outcome, sum.Results[0].Deleted, sum.Deleted, sum.Left, err)
	// Output:
	// invoke the processor with {"streamer_job":{"key":"acme|alice|r1"}}
	// redriven true 1 0 <nil>
}
