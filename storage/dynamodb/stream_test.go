package dynamodb_test

import (
	"encoding/json"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

func TestQueuedRequest(t *testing.T) {
	t.Parallel()
	key := storage.Key{Tenant: "a|b", Subject: "sub%", ID: "r-1"}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	img := map[string]types.AttributeValue{"pk": s("REQ#" + key.String()), "sk": s("REQ"), "status": s("queued")}
	got, ok, err := dynamodb.QueuedRequest(img)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, key, got)

	img["status"] = s("running")
	_, ok, err = dynamodb.QueuedRequest(img)
	require.NoError(t, err)
	require.False(t, ok, "only queued requests")

	_, ok, err = dynamodb.QueuedRequest(map[string]types.AttributeValue{"pk": s("REQ#x"), "sk": s("EV#00000000000000000001")})
	require.NoError(t, err)
	require.False(t, ok, "events are not requests")

	_, _, err = dynamodb.QueuedRequest(map[string]types.AttributeValue{"pk": s("CONN#x"), "sk": s("REQ"), "status": s("queued")})
	require.Error(t, err)

	var pattern map[string]any
	require.NoError(t, json.Unmarshal([]byte(dynamodb.StreamFilterPattern), &pattern), "the filter pattern is JSON")
}
