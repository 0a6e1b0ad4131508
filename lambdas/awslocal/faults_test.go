package awslocal

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/internal/awsretry"
)

// okHTTP answers every request with an empty JSON object, as DynamoDB
// answers a GetItem of a missing item, and counts the requests.
type okHTTP struct{ n atomic.Int64 }

func (h *okHTTP) Do(r *http.Request) (*http.Response, error) {
	h.n.Add(1)
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		_ = r.Body.Close()
	}
	return &http.Response{
		StatusCode: http.StatusOK, Request: r, ContentLength: 2,
		Header: http.Header{"Content-Type": {"application/x-amz-json-1.0"}},
		Body:   io.NopCloser(strings.NewReader("{}")),
	}, nil
}

func testClients(thr *throttler, h *okHTTP, retryer aws.Retryer) (*awsdynamodb.Client, *dynamodbstreams.Client) {
	cfg := aws.Config{
		Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("local", "local", ""),
		HTTPClient: h, BaseEndpoint: aws.String("http://127.0.0.1:1"),
		Retryer: func() aws.Retryer { return retryer },
	}
	cfg.APIOptions = append(cfg.APIOptions, thr.addTo)
	db := awsdynamodb.NewFromConfig(cfg, func(o *awsdynamodb.Options) { o.DisableValidateResponseChecksum = true })
	return db, dynamodbstreams.NewFromConfig(cfg)
}

func getItem(ctx context.Context, db *awsdynamodb.Client) error {
	_, err := db.GetItem(ctx, &awsdynamodb.GetItemInput{
		TableName: aws.String("t"), Key: map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "k"}},
	})
	return err
}

// The injected error is a throttle to the SDK: the retryer retries it, so
// every call succeeds, and the throttled attempts never reach the wire.
func TestThrottlerIsRetriedAsAThrottle(t *testing.T) {
	t.Parallel()
	thr := newThrottler(Faults{DynamoDBThrottle: 0.5, Seed: 7})
	h := &okHTTP{}
	retryer := awsretry.New(awsretry.Options{MaxAttempts: 40, ThrottleBaseDelay: time.Microsecond, BaseDelay: time.Microsecond, MaxBackoff: time.Millisecond})
	db, _ := testClients(thr, h, retryer)
	ctx := context.Background()
	const n = 200
	for range n {
		require.NoError(t, getItem(ctx, db))
	}
	calls, throttled := thr.counts()
	require.Positive(t, throttled)
	require.Equal(t, int64(n), h.n.Load(), "one request on the wire per call")
	require.Equal(t, n+throttled, calls)
}

func TestThrottlerEveryCall(t *testing.T) {
	t.Parallel()
	thr := newThrottler(Faults{DynamoDBThrottle: 1})
	h := &okHTTP{}
	retryer := awsretry.New(awsretry.Options{MaxAttempts: 3, ThrottleBaseDelay: time.Microsecond, MaxBackoff: time.Millisecond})
	db, streams := testClients(thr, h, retryer)
	err := getItem(context.Background(), db)
	var pte *types.ProvisionedThroughputExceededException
	require.ErrorAs(t, err, &pte)
	calls, throttled := thr.counts()
	require.Equal(t, int64(3), calls, "the retryer made all its attempts")
	require.Equal(t, int64(3), throttled)
	require.Zero(t, h.n.Load())

	// Other services built from the same configuration are left alone.
	_, err = streams.ListStreams(context.Background(), &dynamodbstreams.ListStreamsInput{})
	require.NoError(t, err)
	calls, _ = thr.counts()
	require.Equal(t, int64(3), calls)
}

func TestThrottlerIsReproducible(t *testing.T) {
	t.Parallel()
	seq := func(seed uint64) []bool {
		thr := newThrottler(Faults{DynamoDBThrottle: 0.2, Seed: seed})
		out := make([]bool, 100)
		for i := range out {
			out[i] = thr.rnd.Float64() < thr.rate
		}
		return out
	}
	require.Equal(t, seq(1), seq(1))
	require.NotEqual(t, seq(1), seq(2))
}

func TestFaultsValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, Faults{}.validate())
	require.NoError(t, Faults{DynamoDBThrottle: 0.2}.validate())
	require.Error(t, Faults{DynamoDBThrottle: -0.1}.validate())
	require.Error(t, Faults{DynamoDBThrottle: 1.5}.validate())
}
