// Command fn is the test function of the RIE invoker's tests, built with
// -tags lambda.norpc as the repository's bootstraps are. Its event says
// what to do: return a value, fail, sleep, or block on its first call.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

type event struct {
	// Echo is returned as the result.
	Echo json.RawMessage `json:"echo,omitempty"`
	// Fail makes the function return an error with this message.
	Fail string `json:"fail,omitempty"`
	// SleepMS sleeps this long (or until the deadline) before answering.
	SleepMS int `json:"sleep_ms,omitempty"`
	// BlockOnce names a file: when it does not exist the function creates
	// it, writing the request ID and its PID ("ID PID"), and blocks until its
	// deadline; when it exists the function answers at once.
	BlockOnce string `json:"block_once,omitempty"`
}

type result struct {
	Echo      json.RawMessage `json:"echo,omitempty"`
	RequestID string          `json:"request_id"`
	PID       int             `json:"pid"`
}

func handle(ctx context.Context, ev event) (result, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	res := result{Echo: ev.Echo, PID: os.Getpid()}
	if lc != nil {
		res.RequestID = lc.AwsRequestID
	}
	if ev.BlockOnce != "" {
		f, err := os.OpenFile(ev.BlockOnce, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			_, _ = fmt.Fprintf(f, "%s %d", res.RequestID, res.PID)
			_ = f.Close()
			<-ctx.Done()
			return res, ctx.Err()
		}
	}
	if ev.SleepMS > 0 {
		select {
		case <-time.After(time.Duration(ev.SleepMS) * time.Millisecond):
		case <-ctx.Done():
			return res, ctx.Err()
		}
	}
	if ev.Fail != "" {
		return res, errors.New(ev.Fail)
	}
	return res, nil
}

func main() {
	lambda.Start(handle)
}
