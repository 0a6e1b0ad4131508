package lambdaapp_test

import (
	"encoding/json"
	"fmt"

	"github.com/aws/aws-lambda-go/events"

	"github.com/streamer-go/streamer/lambdas/lambdaapp"
)

func ExampleConfigFromEnv() {
	vars := map[string]string{
		"STREAMER_TABLE":      "streamer-prod",
		"STREAMER_JWT_SECRET": "0123456789abcdef0123456789abcdef",
		"STREAMER_RETENTION":  "48h",
	}
	getenv := func(k string) string { return vars[k] } // os.Getenv in a main package
	cfg, err := lambdaapp.ConfigFromEnv(lambdaapp.Connect, getenv)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Table, cfg.Retention, cfg.SyncThreshold, cfg.LogLevel)

	// The processor needs no key, but it needs its table, and its own
	// name (which Lambda sets) to invoke itself.
	_, err = lambdaapp.ConfigFromEnv(lambdaapp.Processor, func(string) string { return "" })
	fmt.Println(err)
	// Output:
	// streamer-prod 48h0m0s 5s info
	// lambdaapp: bad configuration of processor: STREAMER_TABLE is required: the DynamoDB table's name
	// AWS_LAMBDA_FUNCTION_NAME is required: the processor invokes itself by name (Lambda sets it)
}

func ExampleQueuedKey() {
	// A record as Lambda delivers it (abridged): a request item inserted in
	// status queued.
	const record = `{
		"eventName": "INSERT",
		"eventSource": "aws:dynamodb",
		"dynamodb": {
			"Keys": {"pk": {"S": "REQ#acme|alice|r-42"}, "sk": {"S": "REQ"}},
			"NewImage": {
				"pk": {"S": "REQ#acme|alice|r-42"}, "sk": {"S": "REQ"},
				"status": {"S": "queued"}, "action": {"S": "generate_report"},
				"payload": {"B": "eyJzdGFydERhdGUiOiIyMDI0LTAxLTAxIn0="}
			},
			"SequenceNumber": "4421584500000000017450439091",
			"StreamViewType": "NEW_AND_OLD_IMAGES"
		}
	}`
	var rec events.DynamoDBEventRecord
	if err := json.Unmarshal([]byte(record), &rec); err != nil {
		fmt.Println(err)
		return
	}
	k, ok, err := lambdaapp.QueuedKey(rec)
	fmt.Println(k.Tenant, k.Subject, k.ID, ok, err)

	// Anything else, such as the request moving on to running, is not for
	// the processor.
	rec.EventName = "MODIFY"
	rec.Change.NewImage["status"] = events.NewStringAttribute("running")
	_, ok, err = lambdaapp.QueuedKey(rec)
	fmt.Println(ok, err)
	// Output:
	// acme alice r-42 true <nil>
	// false <nil>
}
