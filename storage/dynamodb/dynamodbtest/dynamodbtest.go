// Package dynamodbtest connects tests to DynamoDB Local (started by make
// test, or by scripts/dynamodb-local.sh), so that each test package does
// not repeat how to find it and make a table.
package dynamodbtest

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	awsddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"

	"github.com/streamer-go/streamer/storage/dynamodb"
)

// Endpoint returns DynamoDB Local's URL, AWS_ENDPOINT_URL_DYNAMODB. When
// it is unset the test is skipped, or failed when CI=true: in CI a missing
// DynamoDB Local is an error, never a skip.
func Endpoint(tb testing.TB) string {
	tb.Helper()
	endpoint := os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")
	if endpoint == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("AWS_ENDPOINT_URL_DYNAMODB is not set: DynamoDB Local is required in CI (make test starts it)")
		}
		tb.Skip("AWS_ENDPOINT_URL_DYNAMODB is not set; run make test, or scripts/dynamodb-local.sh")
	}
	return endpoint
}

var tables atomic.Int64

// NewTable creates a Streamer table of a fresh name starting with prefix
// on DynamoDB Local (see [Endpoint]) and returns a client of it (from the
// AWS_* environment) and the table's name.
func NewTable(tb testing.TB, prefix string) (*awsddb.Client, string) {
	tb.Helper()
	Endpoint(tb)
	cfg, err := config.LoadDefaultConfig(tb.Context())
	if err != nil {
		tb.Fatalf("dynamodbtest: AWS configuration: %v", err)
	}
	client := awsddb.NewFromConfig(cfg)
	name := fmt.Sprintf("%s-%d-%d", strings.TrimSuffix(prefix, "-"), time.Now().UnixNano(), tables.Add(1))
	if err := dynamodb.CreateTable(tb.Context(), client, name); err != nil {
		tb.Fatalf("dynamodbtest: create table %s: %v", name, err)
	}
	return client, name
}
