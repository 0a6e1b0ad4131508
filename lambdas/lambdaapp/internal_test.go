package lambdaapp

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"
)

// Every attribute type converts, inside lists and maps too, from the JSON
// Lambda delivers.
func TestFromEventImageAllTypes(t *testing.T) {
	t.Parallel()
	const image = `{
		"s": {"S": "text"},
		"n": {"N": "-12.5"},
		"b": {"B": "AAEC/w=="},
		"t": {"BOOL": true},
		"f": {"BOOL": false},
		"null": {"NULL": true},
		"ss": {"SS": ["a", "b"]},
		"ns": {"NS": ["1", "2.5"]},
		"bs": {"BS": ["AQ==", "AgM="]},
		"empty_l": {"L": []},
		"empty_m": {"M": {}},
		"l": {"L": [{"S": "x"}, {"N": "1"}, {"L": [{"BOOL": true}, {"NULL": true}]}, {"M": {"k": {"B": "/w=="}}}]},
		"m": {"M": {"inner": {"M": {"deep": {"SS": ["z"]}, "list": {"L": [{"NS": ["7"]}]}}}, "bs": {"BS": ["AA=="]}}}
	}`
	var img map[string]events.DynamoDBAttributeValue
	require.NoError(t, json.Unmarshal([]byte(image), &img))
	got, err := FromEventImage(img)
	require.NoError(t, err)
	want := map[string]types.AttributeValue{
		"s":       &types.AttributeValueMemberS{Value: "text"},
		"n":       &types.AttributeValueMemberN{Value: "-12.5"},
		"b":       &types.AttributeValueMemberB{Value: []byte{0, 1, 2, 255}},
		"t":       &types.AttributeValueMemberBOOL{Value: true},
		"f":       &types.AttributeValueMemberBOOL{Value: false},
		"null":    &types.AttributeValueMemberNULL{Value: true},
		"ss":      &types.AttributeValueMemberSS{Value: []string{"a", "b"}},
		"ns":      &types.AttributeValueMemberNS{Value: []string{"1", "2.5"}},
		"bs":      &types.AttributeValueMemberBS{Value: [][]byte{{1}, {2, 3}}},
		"empty_l": &types.AttributeValueMemberL{Value: []types.AttributeValue{}},
		"empty_m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{}},
		"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{
			&types.AttributeValueMemberS{Value: "x"},
			&types.AttributeValueMemberN{Value: "1"},
			&types.AttributeValueMemberL{Value: []types.AttributeValue{
				&types.AttributeValueMemberBOOL{Value: true},
				&types.AttributeValueMemberNULL{Value: true},
			}},
			&types.AttributeValueMemberM{Value: map[string]types.AttributeValue{"k": &types.AttributeValueMemberB{Value: []byte{255}}}},
		}},
		"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			"inner": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
				"deep": &types.AttributeValueMemberSS{Value: []string{"z"}},
				"list": &types.AttributeValueMemberL{Value: []types.AttributeValue{&types.AttributeValueMemberNS{Value: []string{"7"}}}},
			}},
			"bs": &types.AttributeValueMemberBS{Value: [][]byte{{0}}},
		}},
	}
	require.Equal(t, want, got)
}

// Values built in Go convert the same way, and the zero value, which holds
// nothing, is an error naming where it is rather than a panic.
func TestFromEventValueBuiltInGo(t *testing.T) {
	t.Parallel()
	v := events.NewMapAttribute(map[string]events.DynamoDBAttributeValue{
		"list": events.NewListAttribute([]events.DynamoDBAttributeValue{events.NewBinaryAttribute([]byte("hi")), events.NewBinarySetAttribute([][]byte{[]byte("a")})}),
	})
	got, err := FromEventValue(v)
	require.NoError(t, err)
	require.Equal(t, &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
		"list": &types.AttributeValueMemberL{Value: []types.AttributeValue{
			&types.AttributeValueMemberB{Value: []byte("hi")},
			&types.AttributeValueMemberBS{Value: [][]byte{[]byte("a")}},
		}},
	}}, got)

	bad := map[string]events.DynamoDBAttributeValue{
		"outer": events.NewMapAttribute(map[string]events.DynamoDBAttributeValue{
			"list": events.NewListAttribute([]events.DynamoDBAttributeValue{events.NewStringAttribute("ok"), {}}),
		}),
	}
	_, err = FromEventImage(bad)
	require.ErrorIs(t, err, errEmptyValue)
	require.ErrorContains(t, err, `attribute "outer": attribute "list": [1]`)
}

func TestBody(t *testing.T) {
	t.Parallel()
	data, binary, err := body(events.APIGatewayWebsocketProxyRequest{Body: `{"action":"ping"}`})
	require.NoError(t, err)
	require.False(t, binary)
	require.Equal(t, `{"action":"ping"}`, string(data))

	raw := []byte{0, 1, 2, 0xff, 'x'}
	data, binary, err = body(events.APIGatewayWebsocketProxyRequest{Body: base64.StdEncoding.EncodeToString(raw), IsBase64Encoded: true})
	require.NoError(t, err)
	require.True(t, binary)
	require.Equal(t, raw, data)

	// Text sent base64-encoded is still a binary frame.
	data, binary, err = body(events.APIGatewayWebsocketProxyRequest{Body: base64.StdEncoding.EncodeToString([]byte(`{"action":"ping"}`)), IsBase64Encoded: true})
	require.NoError(t, err)
	require.True(t, binary)
	require.Equal(t, `{"action":"ping"}`, string(data))

	_, _, err = body(events.APIGatewayWebsocketProxyRequest{Body: "not base64!", IsBase64Encoded: true})
	require.ErrorContains(t, err, "base64")
}

func TestEndpoint(t *testing.T) {
	t.Parallel()
	rc := events.APIGatewayWebsocketProxyRequestContext{DomainName: "abc.execute-api.eu-west-1.amazonaws.com", Stage: "prod"}
	h := &Handlers{}
	require.Equal(t, "https://abc.execute-api.eu-west-1.amazonaws.com/prod", h.endpoint(rc))
	require.Empty(t, h.endpoint(events.APIGatewayWebsocketProxyRequestContext{}))
	h.cfg.Endpoint = "http://127.0.0.1:9999"
	require.Equal(t, "http://127.0.0.1:9999", h.endpoint(rc))
}

func TestFirst(t *testing.T) {
	t.Parallel()
	require.Equal(t, map[string]string{"a": "1"}, first(map[string][]string{"a": {"1", "2"}, "b": {}}))
	require.Empty(t, first(nil))
}
