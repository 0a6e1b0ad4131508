package awslocal

import (
	"encoding/json"
	"time"
)

// FailureRecord renders f as the message Lambda sends an asynchronous
// invocation's on-failure destination (on AWS, the processor's SQS failure
// queue): the invocation record, with the event as requestPayload and the
// last error as responsePayload. functionARN names the function; at is the
// record's timestamp. `streamer ops redrive` reads such records.
func FailureRecord(f Failure, functionARN string, at time.Time) ([]byte, error) {
	type requestContext struct {
		RequestID              string `json:"requestId"`
		FunctionArn            string `json:"functionArn"`
		Condition              string `json:"condition"`
		ApproximateInvokeCount int    `json:"approximateInvokeCount"`
	}
	type responseContext struct {
		StatusCode      int    `json:"statusCode"`
		ExecutedVersion string `json:"executedVersion"`
		FunctionError   string `json:"functionError,omitempty"`
	}
	rec := struct {
		Version         string          `json:"version"`
		Timestamp       string          `json:"timestamp"`
		RequestContext  requestContext  `json:"requestContext"`
		RequestPayload  json.RawMessage `json:"requestPayload"`
		ResponseContext responseContext `json:"responseContext"`
		ResponsePayload any             `json:"responsePayload,omitempty"`
	}{
		Version:   "1.0",
		Timestamp: at.UTC().Format("2006-01-02T15:04:05.000Z"),
		RequestContext: requestContext{
			RequestID: f.RequestID, FunctionArn: functionARN + ":$LATEST", Condition: f.Condition, ApproximateInvokeCount: f.Attempts,
		},
		RequestPayload:  json.RawMessage(f.Payload),
		ResponseContext: responseContext{StatusCode: 200, ExecutedVersion: "$LATEST"},
	}
	if !json.Valid(f.Payload) {
		raw, err := json.Marshal(string(f.Payload))
		if err != nil {
			return nil, err
		}
		rec.RequestPayload = raw
	}
	if f.Err != nil {
		rec.ResponseContext.FunctionError = "Unhandled"
		rec.ResponsePayload = map[string]string{"errorMessage": f.Err.Error(), "errorType": "error"}
	}
	return json.Marshal(rec)
}
