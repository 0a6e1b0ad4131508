package sqsredrive_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/ops/sqsredrive"
)

// TestQueueSigns: requests are form POSTs signed with Signature Version 4
// for SQS, in the queue URL's region when they go to its host, else in the
// configured region.
func TestQueueSigns(t *testing.T) {
	var (
		mu   sync.Mutex
		auth []string
		form []string
	)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		mu.Lock()
		auth = append(auth, r.Header.Get("Authorization"))
		form = append(form, r.Host+" "+r.PostForm.Get("Action")+" "+r.PostForm.Get("QueueUrl"))
		mu.Unlock()
		_, _ = w.Write([]byte(`<ReceiveMessageResponse><ReceiveMessageResult></ReceiveMessageResult></ReceiveMessageResponse>`))
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	// Every host is this server.
	httpc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
	}}}
	t.Cleanup(httpc.CloseIdleConnections)
	creds := aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")}

	q, err := sqsredrive.NewQueue(sqsredrive.QueueConfig{URL: "http://sqs.eu-central-1.amazonaws.com/123456789012/dlq", AWS: creds, HTTPClient: httpc})
	require.NoError(t, err)
	msgs, err := q.Receive(t.Context(), 10, 0)
	require.NoError(t, err)
	require.Empty(t, msgs)
	q, err = sqsredrive.NewQueue(sqsredrive.QueueConfig{URL: "http://sqs.eu-central-1.amazonaws.com/123456789012/dlq", AWS: creds, HTTPClient: httpc,
		Endpoint: "http://sqs.local:9324"})
	require.NoError(t, err)
	_, err = q.Receive(t.Context(), 1, 0)
	require.NoError(t, err)

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, auth, 2)
	require.True(t, strings.HasPrefix(auth[0], "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"), auth[0])
	require.Contains(t, auth[0], "/eu-central-1/sqs/aws4_request", "the queue URL's region")
	require.Contains(t, auth[1], "/eu-west-1/sqs/aws4_request", "the configured region, for another endpoint")
	require.Equal(t, "sqs.eu-central-1.amazonaws.com ReceiveMessage http://sqs.eu-central-1.amazonaws.com/123456789012/dlq", form[0])
	require.Equal(t, "sqs.local:9324 ReceiveMessage http://sqs.eu-central-1.amazonaws.com/123456789012/dlq", form[1])
}
