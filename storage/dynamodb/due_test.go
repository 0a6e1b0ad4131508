package dynamodb_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/stretchr/testify/require"

	"github.com/streamer-go/streamer/storage"
	"github.com/streamer-go/streamer/storage/dynamodb"
)

// indexAPI is a fake whose status index shows one request in two
// partitions, as an eventually consistent index may right after a status
// change, and whose BatchGetItem refuses duplicate keys as DynamoDB does.
type indexAPI struct {
	dynamodb.API // nil: calling anything else panics
	mu           sync.Mutex
	queried      []string
	consistent   bool // any index query asked for a consistent read
}

const dupPK = "REQ#t|s|dup"

func (f *indexAPI) Query(_ context.Context, in *ddb.QueryInput, _ ...func(*ddb.Options)) (*ddb.QueryOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if aws.ToString(in.IndexName) != dynamodb.IndexStatus {
		return nil, errors.New("not an index query")
	}
	if aws.ToBool(in.ConsistentRead) {
		f.consistent = true
	}
	var part string
	for _, v := range in.ExpressionAttributeValues {
		if s, ok := v.(*types.AttributeValueMemberS); ok {
			part = s.Value
		}
	}
	f.queried = append(f.queried, part)
	out := &ddb.QueryOutput{}
	if part == "queued#03" || part == "running#03" {
		out.Items = []map[string]types.AttributeValue{{
			dynamodb.AttrPK:          &types.AttributeValueMemberS{Value: dupPK},
			dynamodb.AttrSK:          &types.AttributeValueMemberS{Value: "REQ"},
			dynamodb.AttrStatusShard: &types.AttributeValueMemberS{Value: part},
			dynamodb.AttrStatusTime:  &types.AttributeValueMemberN{Value: "5"},
		}}
	}
	return out, nil
}

func (f *indexAPI) BatchGetItem(_ context.Context, in *ddb.BatchGetItemInput, _ ...func(*ddb.Options)) (*ddb.BatchGetItemOutput, error) {
	var items []map[string]types.AttributeValue
	for table, ka := range in.RequestItems {
		if !aws.ToBool(ka.ConsistentRead) {
			return nil, errors.New("want a consistent read")
		}
		seen := map[string]bool{}
		for _, k := range ka.Keys {
			pk := k[dynamodb.AttrPK].(*types.AttributeValueMemberS).Value
			if seen[pk] {
				return nil, errors.New("ValidationException: Provided list of item keys contains duplicates")
			}
			seen[pk] = true
			items = append(items, map[string]types.AttributeValue{
				dynamodb.AttrPK:  &types.AttributeValueMemberS{Value: pk},
				dynamodb.AttrSK:  &types.AttributeValueMemberS{Value: "REQ"},
				"status":         &types.AttributeValueMemberS{Value: "running"},
				"attempt":        &types.AttributeValueMemberN{Value: "1"},
				"lease_until":    &types.AttributeValueMemberN{Value: "5"},
				"not_before":     &types.AttributeValueMemberN{Value: "1"},
				dynamodb.AttrTTL: &types.AttributeValueMemberN{Value: "1"},
			})
		}
		return &ddb.BatchGetItemOutput{Responses: map[string][]map[string]types.AttributeValue{table: items}}, nil
	}
	return &ddb.BatchGetItemOutput{}, nil
}

// TestListDueDuplicateEntries: ListDue queries every live status and
// shard of the index (eventually consistent reads), lists a request found
// twice once, and reads the requests with one consistent BatchGetItem.
func TestListDueDuplicateEntries(t *testing.T) {
	t.Parallel()
	api := &indexAPI{}
	s, err := dynamodb.New(dynamodb.Config{Client: api, Table: "streamer"})
	require.NoError(t, err)
	due, err := s.ListDue(t.Context(), time.UnixMilli(1000), 0)
	require.NoError(t, err)
	require.Len(t, due, 1)
	require.Equal(t, storage.Key{Tenant: "t", Subject: "s", ID: "dup"}, due[0].Key)
	require.Equal(t, storage.StatusRunning, due[0].Status)

	require.False(t, api.consistent, "index queries cannot be consistent reads")
	require.Len(t, api.queried, 3*dynamodb.StatusShards)
	seen := map[string]bool{}
	for _, p := range api.queried {
		st, _, _ := strings.Cut(p, "#")
		require.Contains(t, []string{"queued", "running", "canceling"}, st, "only live statuses: %s", p)
		require.False(t, seen[p], "%s queried twice", p)
		seen[p] = true
	}
}
