// Package lambdatest holds the fixtures of the Lambdas' tests: DynamoDB
// Local clients and throwaway tables, a local gateway whose Management API
// stands in for API Gateway's, WebSocket clients of it, and the table's
// stream records read from DynamoDB Local and written in the JSON shape
// Lambda delivers to stream-invoked functions.
package lambdatest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/middleware"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/transport/local"
)

// Wait bounds every wait of the tests for something to happen.
const Wait = 30 * time.Second

// Secret is the HS256 key of the tests' tokens.
const Secret = "lambdatest-secret-0123456789abcdef-0123456789"

// Token returns a valid HS256 token for subject, signed with [Secret].
func Token(t testing.TB, subject string) string {
	t.Helper()
	tok, err := middleware.SignHS256([]byte(Secret), middleware.Claims{Subject: subject, TTL: time.Hour})
	require.NoError(t, err)
	return tok
}

// AWS is a connection to DynamoDB Local.
type AWS struct {
	// Endpoint is DynamoDB Local's URL (AWS_ENDPOINT_URL_DYNAMODB).
	Endpoint string
	// Region is the configured region.
	Region  string
	DB      *awsdynamodb.Client
	Streams *dynamodbstreams.Client
}

// DynamoDBLocal returns clients of DynamoDB Local as `make test` configures
// it (AWS_ENDPOINT_URL_DYNAMODB, AWS_REGION and static credentials). When
// AWS_ENDPOINT_URL_DYNAMODB is unset it skips the test, or fails it when
// CI=true.
func DynamoDBLocal(t testing.TB) *AWS {
	t.Helper()
	endpoint := os.Getenv("AWS_ENDPOINT_URL_DYNAMODB")
	if endpoint == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("AWS_ENDPOINT_URL_DYNAMODB is not set: DynamoDB Local is required in CI (make test starts it)")
		}
		t.Skip("AWS_ENDPOINT_URL_DYNAMODB is not set; run make test, or scripts/dynamodb-local.sh")
	}
	cfg, err := config.LoadDefaultConfig(context.Background())
	require.NoError(t, err)
	db := awsdynamodb.NewFromConfig(cfg, func(o *awsdynamodb.Options) { o.DisableValidateResponseChecksum = true })
	// DynamoDB Local serves Streams on the same endpoint, which the client
	// would otherwise look for in AWS_ENDPOINT_URL_DYNAMODB_STREAMS.
	streams := dynamodbstreams.NewFromConfig(cfg, func(o *dynamodbstreams.Options) { o.BaseEndpoint = aws.String(endpoint) })
	return &AWS{Endpoint: endpoint, Region: cfg.Region, DB: db, Streams: streams}
}

var tableSeq atomic.Int64

// Table creates a table of Streamer's schema with dynamodb.CreateTable and
// deletes it when the test ends.
func (a *AWS) Table(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("lambdas-%d-%d", time.Now().UnixNano(), tableSeq.Add(1))
	require.NoError(t, dynamodb.CreateTable(context.Background(), a.DB, name))
	t.Cleanup(func() {
		_, _ = a.DB.DeleteTable(context.Background(), &awsdynamodb.DeleteTableInput{TableName: aws.String(name)})
	})
	return name
}

// StreamARN returns the table's latest stream.
func (a *AWS) StreamARN(t testing.TB, table string) string {
	t.Helper()
	out, err := a.DB.DescribeTable(context.Background(), &awsdynamodb.DescribeTableInput{TableName: aws.String(table)})
	require.NoError(t, err)
	arn := aws.ToString(out.Table.LatestStreamArn)
	require.NotEmpty(t, arn, "table %s has no stream", table)
	return arn
}

// ReadStream reads the table's stream from TRIM_HORIZON (DescribeStream,
// GetShardIterator, GetRecords over every shard) until done accepts the
// records read so far, polling until [Wait] passes. It returns them in
// stream order per shard.
func (a *AWS) ReadStream(t testing.TB, table string, done func([]types.Record) bool) []types.Record {
	t.Helper()
	ctx := context.Background()
	arn := a.StreamARN(t, table)
	deadline := time.NewTimer(Wait)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		recs := a.readAll(t, ctx, arn)
		if done(recs) {
			return recs
		}
		select {
		case <-deadline.C:
			t.Fatalf("the stream of %s did not get the expected records within %v; it has %d", table, Wait, len(recs))
		case <-tick.C:
		}
	}
}

func (a *AWS) readAll(t testing.TB, ctx context.Context, arn string) []types.Record {
	t.Helper()
	var recs []types.Record
	var start *string
	for {
		desc, err := a.Streams.DescribeStream(ctx, &dynamodbstreams.DescribeStreamInput{StreamArn: aws.String(arn), ExclusiveStartShardId: start})
		require.NoError(t, err)
		for _, sh := range desc.StreamDescription.Shards {
			it, err := a.Streams.GetShardIterator(ctx, &dynamodbstreams.GetShardIteratorInput{
				StreamArn: aws.String(arn), ShardId: sh.ShardId, ShardIteratorType: types.ShardIteratorTypeTrimHorizon,
			})
			require.NoError(t, err)
			iter := it.ShardIterator
			for iter != nil {
				out, err := a.Streams.GetRecords(ctx, &dynamodbstreams.GetRecordsInput{ShardIterator: iter})
				require.NoError(t, err)
				recs = append(recs, out.Records...)
				if len(out.Records) == 0 {
					break // an open shard's end, for now
				}
				iter = out.NextShardIterator
			}
		}
		if start = desc.StreamDescription.LastEvaluatedShardId; start == nil {
			return recs
		}
	}
}

// EventJSON writes stream records as the event Lambda gives a function
// subscribed to the stream: {"Records": [{"eventID", "eventName",
// "eventVersion", "eventSource": "aws:dynamodb", "awsRegion", "dynamodb":
// {"ApproximateCreationDateTime", "Keys", "NewImage", "OldImage",
// "SequenceNumber", "SizeBytes", "StreamViewType"}, "eventSourceARN"}]},
// attribute values in DynamoDB's JSON ({"S": "..."}, {"N": "..."}, binary
// as base64, and so on). It is written from the SDK's types directly, not
// through aws-lambda-go, so that decoding it tests aws-lambda-go's reading
// of the real shape.
func EventJSON(t testing.TB, recs []types.Record, streamARN, region string) []byte {
	t.Helper()
	out := make([]map[string]any, 0, len(recs))
	for _, r := range recs {
		d := r.Dynamodb
		require.NotNil(t, d, "a stream record without its change")
		change := map[string]any{
			"Keys":           imageJSON(d.Keys),
			"SequenceNumber": aws.ToString(d.SequenceNumber),
			"SizeBytes":      aws.ToInt64(d.SizeBytes),
			"StreamViewType": string(d.StreamViewType),
		}
		if d.ApproximateCreationDateTime != nil {
			change["ApproximateCreationDateTime"] = d.ApproximateCreationDateTime.Unix()
		}
		if d.NewImage != nil {
			change["NewImage"] = imageJSON(d.NewImage)
		}
		if d.OldImage != nil {
			change["OldImage"] = imageJSON(d.OldImage)
		}
		out = append(out, map[string]any{
			"eventID":        aws.ToString(r.EventID),
			"eventName":      string(r.EventName),
			"eventVersion":   aws.ToString(r.EventVersion),
			"eventSource":    "aws:dynamodb",
			"awsRegion":      region,
			"dynamodb":       change,
			"eventSourceARN": streamARN,
		})
	}
	b, err := json.MarshalIndent(map[string]any{"Records": out}, "", "  ")
	require.NoError(t, err)
	return b
}

func imageJSON(m map[string]types.AttributeValue) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = valueJSON(v)
	}
	return out
}

// valueJSON writes one attribute value as DynamoDB's JSON; []byte values
// marshal as base64, as DynamoDB writes them.
func valueJSON(v types.AttributeValue) map[string]any {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		return map[string]any{"S": v.Value}
	case *types.AttributeValueMemberN:
		return map[string]any{"N": v.Value}
	case *types.AttributeValueMemberB:
		return map[string]any{"B": v.Value}
	case *types.AttributeValueMemberBOOL:
		return map[string]any{"BOOL": v.Value}
	case *types.AttributeValueMemberNULL:
		return map[string]any{"NULL": true}
	case *types.AttributeValueMemberSS:
		return map[string]any{"SS": v.Value}
	case *types.AttributeValueMemberNS:
		return map[string]any{"NS": v.Value}
	case *types.AttributeValueMemberBS:
		return map[string]any{"BS": v.Value}
	case *types.AttributeValueMemberL:
		l := make([]any, len(v.Value))
		for i, e := range v.Value {
			l[i] = valueJSON(e)
		}
		return map[string]any{"L": l}
	case *types.AttributeValueMemberM:
		return map[string]any{"M": imageJSON(v.Value)}
	default:
		panic(fmt.Sprintf("lambdatest: unknown attribute value %T", v))
	}
}

// Str is the string attribute name of an image, or "".
func Str(img map[string]types.AttributeValue, name string) string {
	s, _ := img[name].(*types.AttributeValueMemberS)
	if s == nil {
		return ""
	}
	return s.Value
}

// Gateway is a local gateway serving WebSocket clients at /ws and the
// Management API at its root, on 127.0.0.1. Its handler only accepts
// connections: the Lambda handlers under test are invoked separately, with
// the ids of its connections, and reply through its Management API (URL).
type Gateway struct {
	// URL is the gateway's http://127.0.0.1:PORT, the Management API
	// endpoint (STREAMER_ENDPOINT).
	URL string
	ids chan string
}

// StartGateway starts a gateway, closed when the test ends.
func StartGateway(t testing.TB) *Gateway {
	t.Helper()
	h := &acceptAll{ids: make(chan string, 64)}
	gw, err := local.New(local.Config{Handler: h})
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.Handle("/ws", gw)
	mux.Handle("/", gw.Management())
	srv := httptest.NewServer(mux) // binds 127.0.0.1
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Wait)
		defer cancel()
		_ = gw.Close(ctx)
		srv.Close()
	})
	return &Gateway{URL: srv.URL, ids: h.ids}
}

// Dial opens a WebSocket client of the gateway and returns it with the
// connection id the gateway gave it. The client is closed when the test
// ends.
func (g *Gateway) Dial(t testing.TB) (*websocket.Conn, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(g.URL, "http")+"/ws", nil) //nolint:bodyclose // coder/websocket closes it
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.CloseNow() })
	select {
	case id := <-g.ids:
		return c, id
	case <-ctx.Done():
		t.Fatal("the gateway did not report the connection")
		return nil, ""
	}
}

// acceptAll accepts every connection and reports its id.
type acceptAll struct{ ids chan string }

func (a *acceptAll) Connect(_ context.Context, c *local.Conn) error {
	a.ids <- c.ID
	return nil
}

func (a *acceptAll) Message(context.Context, *local.Conn, local.Inbound) {}
func (a *acceptAll) Disconnect(context.Context, *local.Conn)             {}

// Read returns the next message the client receives, failing the test when
// none comes within [Wait].
func Read(t testing.TB, c *websocket.Conn) streamer.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	typ, data, err := c.Read(ctx)
	require.NoError(t, err, "no message within %v", Wait)
	require.Equal(t, websocket.MessageText, typ)
	var m streamer.Message
	require.NoError(t, json.Unmarshal(data, &m), "message %s", data)
	return m
}

// ReadUntil reads messages until one of type typ arrives and returns all
// of them, that one last.
func ReadUntil(t testing.TB, c *websocket.Conn, typ string) []streamer.Message {
	t.Helper()
	var got []streamer.Message
	for {
		m := Read(t, c)
		got = append(got, m)
		if m.Type == typ {
			return got
		}
	}
}
