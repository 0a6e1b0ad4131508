package dynamodb_test

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// Example creates the table (as `streamer dev --aws-local` does against
// DynamoDB Local) and a store on it. It needs a DynamoDB endpoint, so it has
// no Output comment: `go test` compiles it but does not run it. The
// package's tests run the same calls against DynamoDB Local.
func Example() {
	ctx := context.Background()
	// Region, credentials and AWS_ENDPOINT_URL_DYNAMODB come from the
	// environment.
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	client := ddb.NewFromConfig(cfg, func(o *ddb.Options) {
		// Only for DynamoDB Local, which sends no response checksums.
		o.DisableValidateResponseChecksum = true
	})
	if err := dynamodb.CreateTable(ctx, client, "streamer-dev"); err != nil {
		fmt.Println(err)
		return
	}
	s, err := dynamodb.New(dynamodb.Config{Client: client, Table: "streamer-dev"})
	if err != nil {
		fmt.Println(err)
		return
	}

	now := time.Now()
	k := storage.Key{Tenant: "acme", Subject: "alice", ID: "r-42"}
	err = s.CreateRequest(ctx, storage.Request{
		Key: k, Action: "generate_report", Status: storage.StatusQueued,
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	r, err := s.ClaimRequest(ctx, k, storage.Claim{Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Status, r.Attempt)
	// One TransactWriteItems, no read.
	err = s.AppendEvent(ctx, k, r.Attempt, storage.Event{Seq: 1, Type: "progress", Percentage: 50, CreatedAt: now}, 0)
	fmt.Println(err)
}
