package awslocal_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsdynamodb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer"
	"github.com/streamer-go/streamer/lambdas/awslocal"
	"github.com/streamer-go/streamer/lambdas/internal/lambdatest"
	"github.com/streamer-go/streamer/plugins/demo"
	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
	"github.com/streamer-go/streamer/transport/local/devserver"
)

// dialRefused dials as subject and requires the handshake to be refused
// with HTTP 429, a Retry-After header and a body containing body.
func dialRefused(t *testing.T, info devserver.Info, subject, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lambdatest.Wait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, info.WebSocketURL+"?token="+url.QueryEscape(lambdatest.Token(t, subject)), nil)
	if c != nil {
		_ = c.CloseNow()
	}
	require.Error(t, err, "the handshake is refused")
	require.NotNil(t, resp)
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.NotEmpty(t, resp.Header.Get("Retry-After"))
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Contains(t, string(b), body)
}

// waitOpen polls until the table counts n open connections of subject.
func waitOpen(t *testing.T, store *dynamodb.Store, subject string, n int) {
	t.Helper()
	deadline := time.Now().Add(lambdatest.Wait)
	for {
		got, err := store.OpenConnections(context.Background(), "", subject)
		require.NoError(t, err)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d open connections, want %d", subject, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// On --aws-local, STREAMER_MAX_CONNECTIONS_PER_PRINCIPAL refuses the
// handshake of a principal's connection over the cap with HTTP 429 (the
// connect handler's answer); another principal still connects; a closed
// connection's $disconnect frees its place; and a connection whose
// $disconnect was lost (its item gone, the counter not decremented) stops
// counting at the next refusal.
func TestConnectionCapEndToEnd(t *testing.T) {
	t.Parallel()
	ddbLocal, table, info := startLocal(t, awslocal.Config{
		Plugins: []streamer.Plugin{demo.New()}, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
		MaxConnectionsPerPrincipal: 3,
	})
	store, err := dynamodb.New(dynamodb.Config{Client: ddbLocal.DB, Table: table})
	require.NoError(t, err)

	alice := []*websocket.Conn{dial(t, info, "alice"), dial(t, info, "alice"), dial(t, info, "alice")}
	dialRefused(t, info, "alice", "the limit is 3")
	bob := dial(t, info, "bob")
	send(t, bob, `{"action":"echo","id":"b1","payload":1}`)
	require.Equal(t, "b1", lambdatest.Read(t, bob).RequestID, "another principal connects and is served")
	waitOpen(t, store, "alice", 3)

	// A closed connection frees its place once its $disconnect ran.
	require.NoError(t, alice[1].Close(websocket.StatusNormalClosure, "bye"))
	waitOpen(t, store, "alice", 2)
	c := dial(t, info, "alice")
	send(t, c, `{"action":"echo","id":"a1","payload":1}`)
	require.Equal(t, "a1", lambdatest.Read(t, c).RequestID)
	dialRefused(t, info, "alice", "too many open connections")

	// A lost $disconnect: carol's connection item is gone (TTL deleted it,
	// say) but the counter was never decremented.
	for range 3 {
		dial(t, info, "carol")
	}
	waitOpen(t, store, "carol", 3)
	lost := carolConnection(t, ddbLocal.DB, table)
	_, err = ddbLocal.DB.DeleteItem(context.Background(), &awsdynamodb.DeleteItemInput{
		TableName: &table,
		Key: map[string]types.AttributeValue{
			dynamodb.AttrPK: &types.AttributeValueMemberS{Value: "CONN#" + lost},
			dynamodb.AttrSK: &types.AttributeValueMemberS{Value: "CONN"},
		},
	})
	require.NoError(t, err)
	c = dial(t, info, "carol") // refused by the counter, admitted after the recount
	send(t, c, `{"action":"echo","id":"c1","payload":1}`)
	require.Equal(t, "c1", lambdatest.Read(t, c).RequestID)
	waitOpen(t, store, "carol", 3)
}

// carolConnection returns the id of one of carol's counted connections,
// from her counter partition (PCONN#<principal>, CONN#<id>: see
// storage/dynamodb's doc).
func carolConnection(t *testing.T, db *awsdynamodb.Client, table string) string {
	t.Helper()
	out, err := db.Query(context.Background(), &awsdynamodb.QueryInput{
		TableName:              &table,
		KeyConditionExpression: aws.String("pk = :pk AND begins_with(sk, :m)"),
		ExpressionAttributeValues: map[string]types.AttributeValue{
			":pk": &types.AttributeValueMemberS{Value: "PCONN#" + storage.Key{Subject: "carol"}.String()},
			":m":  &types.AttributeValueMemberS{Value: "CONN#"},
		},
		ConsistentRead: aws.Bool(true),
	})
	require.NoError(t, err)
	require.Len(t, out.Items, 3)
	sk := out.Items[0]["sk"].(*types.AttributeValueMemberS).Value
	return strings.TrimPrefix(sk, "CONN#")
}
