package dynamodb

import (
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/streamer-go/streamer/storage"
)

// StreamFilterPattern is the DynamoDB Streams event filter that passes only
// records of newly queued requests: an insert, or a modification (a retry's
// re-queue), whose new image is a request item in status queued. The
// processor's event source mapping in serverless.yml declares this pattern,
// and the local stream poller applies [QueuedRequest] to the same effect.
const StreamFilterPattern = `{"eventName":["INSERT","MODIFY"],"dynamodb":{"NewImage":{"sk":{"S":["REQ"]},"status":{"S":["queued"]}}}}`

// QueuedRequest reads a stream record's new image. It returns the request's
// key and true when the image is a request item in status queued, and false
// for any other item. An image that claims to be a request but cannot be
// read is an error.
func QueuedRequest(image map[string]types.AttributeValue) (storage.Key, bool, error) {
	sk, _ := image[AttrSK].(*types.AttributeValueMemberS)
	if sk == nil || sk.Value != sortRequest {
		return storage.Key{}, false, nil
	}
	status, _ := image[attrStatus].(*types.AttributeValueMemberS)
	if status == nil || status.Value != string(storage.StatusQueued) {
		return storage.Key{}, false, nil
	}
	pk, _ := image[AttrPK].(*types.AttributeValueMemberS)
	if pk == nil || !strings.HasPrefix(pk.Value, prefixRequest) {
		return storage.Key{}, false, fmt.Errorf("dynamodb: request image has no %s attribute of the form %s<key>", AttrPK, prefixRequest)
	}
	k, err := storage.ParseKey(strings.TrimPrefix(pk.Value, prefixRequest))
	if err != nil {
		return storage.Key{}, false, fmt.Errorf("dynamodb: request image: %w", err)
	}
	return k, true, nil
}
