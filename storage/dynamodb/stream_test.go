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

func TestNewlyQueued(t *testing.T) {
	t.Parallel()
	key := storage.Key{Subject: "sub", ID: "r-1"}
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	image := func(status string, kv ...string) map[string]types.AttributeValue {
		img := map[string]types.AttributeValue{"pk": s("REQ#" + key.String()), "sk": s("REQ"), "status": s(status),
			"created_at": n("1000"), "not_before": n("5000"), "subs_version": n("1")}
		for i := 0; i+1 < len(kv); i += 2 {
			img[kv[i]] = n(kv[i+1])
		}
		return img
	}
	for _, tc := range []struct {
		name     string
		old, new map[string]types.AttributeValue
		want     bool
	}{
		{"insert", nil, image("queued"), true},
		{"a subscription of a queued request", image("queued"), image("queued", "subs_version", "2"), false},
		{"requeued after a run", image("running", "attempt", "1"), image("queued", "attempt", "1"), true},
		{"continued", image("running", "attempt", "1"), image("queued", "attempt", "1", "continuations", "1"), true},
		{"created anew over an expired one", image("queued"), image("queued", "created_at", "9000"), true},
		{"queued with another not_before", image("queued"), image("queued", "not_before", "7000"), true},
		{"claimed", image("queued"), image("running", "attempt", "1"), false},
	} {
		got, ok, err := dynamodb.NewlyQueued(tc.old, tc.new)
		require.NoError(t, err, tc.name)
		require.Equal(t, tc.want, ok, tc.name)
		if ok {
			require.Equal(t, key, got, tc.name)
		}
	}
}
